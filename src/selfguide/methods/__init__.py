"""Methods: each one a file in this folder that composes the shared stages into training data.

A method file ends with `register(ItsConfig, run=run, plan=plan, title="Its Name")`; the name is its config's
`method` literal. Every module here is imported on the first lookup, so adding a method is adding
a file (see README.md in this folder). `RunConfig.synth` is the union of the registered configs,
told apart by `method`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from selfguide import layout
from selfguide.backends.cache import CachedModel
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.io import append_jsonl, read_records, write_json, write_text
from selfguide.plan import Calls
from selfguide.stages.funnel import summary_markdown
from selfguide.tasks.spec import TaskSpec

DEFAULT_METHOD = "self-guide"  # a synth section without `method` (every config before methods existed)


class MethodConfig(BaseModel):
    """Base of every method's config; a method narrows `method` to `Literal["its-name"]`."""

    model_config = ConfigDict(extra="forbid")

    method: str


@dataclass
class MethodContext:
    """What a method works with. It writes every file into `out_dir` (`<run>/synth`)."""

    task: TaskSpec | None  # None for general-purpose methods (their rows carry their own instruction)
    model: CachedModel  # the student: the model that is finetuned and evaluated
    out_dir: Path
    seed: int = 0
    teacher: CachedModel | None = None  # writes and/or labels the data when given
    eval_texts: tuple[str, ...] = ()  # evaluation inputs the synthetic data must not reproduce
    progress: bool = True
    weights: str | None = None  # the weights the run finetunes (backends/resolve.py): where a method trains models of its own

    @property
    def writer(self) -> CachedModel:
        """The model that writes and labels data: the teacher if there is one, else the student."""
        return self.teacher or self.model

    def models(self) -> list[CachedModel]:
        return [self.model] if self.teacher is None else [self.model, self.teacher]


def require_task(ctx: MethodContext) -> TaskSpec:
    """The task of a task-specific method; a missing one is the caller's mistake, told in one line."""
    if ctx.task is None:
        raise SelfGuideError("this method makes data for one task: give a task file or a SuperNI task name")
    return ctx.task


Run = Callable[[MethodContext, MethodConfig], dict]
Plan = Callable[[MethodContext, MethodConfig], dict[str, Calls]]


@dataclass(frozen=True)
class Method:
    name: str
    config: type[MethodConfig]
    run: Run  # writes <out_dir>/dataset.jsonl and its accounting; returns the summary
    plan: Plan  # the model calls `run` will make, by stage
    general: bool = False  # rows carry their own instruction; needs no task
    # Inference-time methods (no finetuning) answer the eval set their own way with the untrained
    # student: evaluate(ctx, config, eval_config, out_dir, name) -> metrics, and its calls
    # evaluate_plan(ctx, config, eval_config) -> Calls.
    evaluate: Callable | None = None
    evaluate_plan: Callable | None = None
    title: str = ""  # how reports and cards name it ("Self-Instruct"); unset: its name
    paper: str = ""  # a Markdown link to the paper it follows, for the cards

    @property
    def display_name(self) -> str:
        return self.title or self.name

    @property
    def description(self) -> str:
        """The first line of the config's docstring, else of the method file's."""
        doc = (self.config.__doc__ or sys.modules[self.run.__module__].__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_registry: dict[str, Method] = {}
_discovered = False


def register(
    config: type[MethodConfig],
    *,
    run: Run,
    plan: Plan,
    general: bool = False,
    evaluate: Callable | None = None,
    evaluate_plan: Callable | None = None,
    title: str = "",
    paper: str = "",
) -> Method:
    """Add a method under the name its config's `method` field allows (its one Literal value)."""
    if (evaluate is None) != (evaluate_plan is None):
        raise TypeError(f"{config.__name__}: an inference-time method gives both evaluate and evaluate_plan")
    method = Method(method_name(config), config, run, plan, general, evaluate, evaluate_plan, title, paper)
    _registry[method.name] = method
    return method


def method_name(config: type[MethodConfig]) -> str:
    field = config.model_fields["method"]
    values = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
    if len(values) != 1 or field.default != values[0]:
        raise TypeError(f"{config.__name__}.method must be Literal['name'] = 'name', got {field.annotation} = {field.default!r}")
    return values[0]


def discover() -> None:
    """Import every module of this package once: each registers its method."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def known_methods() -> list[str]:
    discover()
    return sorted(_registry)


def get_method(name: str, source: str = "synth.method") -> Method:
    """The registered method; `source` names where the name came from, for the error."""
    if name not in known_methods():
        raise BadInputError(source, "method", f"one of {', '.join(known_methods())}", repr(name))
    return _registry[name]


def method_config(value: object) -> MethodConfig:
    """The synth section as its method's config; without `method` it is SELF-GUIDE's (old configs)."""
    if isinstance(value, MethodConfig):
        return value
    if value is not None and not isinstance(value, dict):
        raise ValueError("expected a mapping of synthesis settings")
    data = {"method": DEFAULT_METHOD, **(value or {})}
    if data["method"] not in known_methods():
        raise ValueError(f"unknown method {data['method']!r}: expected one of {', '.join(known_methods())}")
    return _registry[data["method"]].config.model_validate(data)


def synthesize(method: Method, ctx: MethodContext, config: MethodConfig) -> dict:
    """Run `method`, add what it cost to its summary (this invocation's calls and all earlier
    ones'), and write summary.json and summary.md beside its files."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    before = [(model.stats, model.stats.as_dict()) for model in unique_stats(ctx)]
    summary_path = ctx.out_dir / layout.SUMMARY
    earlier = previous_invocations(summary_path, ctx.out_dir / layout.SYNTH_CALLS)
    try:
        summary = {"method": method.name, **method.run(ctx, config)}
    except BaseException:
        # An interrupted or failed invocation writes no summary: its calls go on record apart, so
        # the finished run's totals still count them (Ctrl-C, a crash, --max-calls).
        with contextlib.suppress(OSError):
            append_jsonl(ctx.out_dir / layout.SYNTH_CALLS, [calls_since(before)])
        raise
    summary.setdefault("models", models_summary(ctx))  # a method that splits the roles says so itself
    summary["model_calls"] = calls_since(before)
    # Earlier invocations' calls stay on record, so a resumed synthesis still shows what it cost.
    summary["model_calls_by_invocation"] = earlier + [summary["model_calls"]]
    summary["model_calls_total"] = {k: sum(c.get(k, 0) for c in summary["model_calls_by_invocation"]) for k in summary["model_calls"]}
    write_json(summary_path, summary)
    (ctx.out_dir / layout.SYNTH_CALLS).unlink(missing_ok=True)  # the summary holds those calls now
    write_text(ctx.out_dir / layout.SUMMARY_MD, summary_markdown(summary))
    return summary


def models_summary(ctx: MethodContext) -> dict:
    """Which model wrote the data (inputs, instructions), which labelled it (wrote the outputs) and
    which is finetuned on it: the teacher writes and labels when there is one."""
    writer = ctx.writer.info.model
    return {"wrote": writer, "labelled": writer, "trained": ctx.model.info.model}


def unique_stats(ctx: MethodContext) -> list[CachedModel]:
    """One model per stats object: a student and a teacher may share one (a run's budget)."""
    seen: dict[int, CachedModel] = {}
    for model in ctx.models():
        seen.setdefault(id(model.stats), model)
    return list(seen.values())


def calls_since(before: list[tuple]) -> dict:
    calls = [stats.since(snapshot) for stats, snapshot in before]
    return {key: sum(c[key] for c in calls) for key in calls[0]}


def previous_invocations(summary_path: Path, unfinished_path: Path) -> list[dict]:
    """The calls of every earlier invocation: those the last summary counted, then those that
    ended without one (recorded in `unfinished_path`, written after that summary)."""
    try:
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
        counted = list(previous.get("model_calls_by_invocation") or [previous["model_calls"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        counted = []
    return counted + read_records(unfinished_path)

"""The run engine: one column of a comparison. A method makes its data, the model is finetuned on
it and the finetuned model evaluated, or an inference-time method evaluates the untrained model its
own way. `selfguide run` (api.run) and both benchmarks run their columns through these steps, each
in folders of its own; in a dry run (an engine with a `Tally`) each step counts the model calls and
trainings it would make instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from selfguide import layout
from selfguide.backends.cache import CachedModel
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.resolve import RunModels
from selfguide.config import RunConfig
from selfguide.eval.evaluate import evaluate, planned_calls
from selfguide.io import read_jsonl
from selfguide.summary import read_summary
from selfguide.methods import Method, MethodContext, synthesize
from selfguide.plan import Calls
from selfguide.prompts.task import Pair
from selfguide.tasks.spec import TaskSpec
from selfguide.train.reuse import TrainOutput, train_once


@dataclass
class Tally:
    """What a dry run counts: model calls (at least / at most) and training runs."""

    calls: int = 0  # certain
    calls_upper: int = 0  # at most, when some stage sizes depend on what the filters keep
    tokens_upper: int = 0
    training_runs: int = 0
    by_stage: dict = field(default_factory=dict)

    def add(self, stage: str, calls: Calls) -> None:
        self.calls += calls.at_least
        self.calls_upper += calls.at_most
        self.tokens_upper += calls.tokens
        row = self.by_stage.setdefault(stage, [0, 0])
        row[0] += calls.at_least
        row[1] += calls.at_most

    def as_dict(self) -> dict:
        return {"model_calls_at_least": self.calls, "model_calls_at_most": self.calls_upper, "generated_tokens_at_most": self.tokens_upper, "training_runs": self.training_runs, "by_stage": self.by_stage}


@dataclass(frozen=True)
class Folders:
    """Where a column's steps write: the method's data, the training, the finetuned model's eval."""

    data: Path
    train: Path
    eval: Path


@dataclass
class Engine:
    """What the steps run with: the run's models, how to open one (behind which call cache, counting
    into which stats and budget), and in a dry run the tally that counts instead, with the open base
    model whose abilities decide how many calls an eval makes."""

    models: RunModels
    open_model: Callable[[ModelConfig], CachedModel]
    progress: bool = True
    tally: Tally | None = None
    base: CachedModel | None = None


def make_data(engine: Engine, method: Method, ctx: MethodContext, config: RunConfig, *, count: bool = True) -> list[dict] | None:
    """The method's dataset rows, made in `ctx.out_dir`. A dry run counts its calls (unless `count`
    is off: another column makes the same calls) and finds rows only where an earlier run made them."""
    if engine.tally is None:
        synthesize(method, ctx, config.synth)
        return read_jsonl(ctx.out_dir / layout.DATASET)
    if count:
        for stage, calls in method.plan(ctx, config.synth).items():
            engine.tally.add(f"synthesis: {stage}", calls)
    return read_jsonl(ctx.out_dir / layout.DATASET) if (ctx.out_dir / layout.SUMMARY).exists() else None


def finetune_evaluate(
    engine: Engine,
    task: TaskSpec,
    config: RunConfig,
    pairs: list[Pair] | None,
    folders: Folders,
    name: str,
    *,
    also: Callable[[CachedModel], None] | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[TrainOutput | None, dict | None]:
    """Finetune on the method's pairs, then evaluate the finetuned model on `task`, where its
    prompting baseline ran. `also(model)` evaluates
    it further while it is loaded; `timings` gets "train" and "eval_<name>". No pairs: no model
    (None, None). A dry run counts a training and its eval, unless the data is known to be empty."""
    if engine.tally is not None:
        if pairs is None or pairs:
            engine.tally.training_runs += 1
            count_eval(engine, task, config, name)
        return None, None
    if not pairs:
        return None, None
    timings = {} if timings is None else timings
    started = time.perf_counter()
    trained = train(engine, task, config, pairs, folders.data, folders.train)
    timings["train"] = time.perf_counter() - started
    started = time.perf_counter()
    metrics = with_trained(engine, trained, lambda model: evaluated(model, task, config, folders.eval, name, also))
    timings[f"eval_{name}"] = time.perf_counter() - started
    return trained, metrics


def train(engine: Engine, task: TaskSpec | None, config: RunConfig, pairs: list[Pair], data_folder: Path, out: Path) -> TrainOutput:
    """Finetune the run's weights on `pairs` in `out`, with the training settings the method asked
    for in its summary (few-shot finetuning: 3 epochs), or reuse that training done."""
    summary = read_summary(data_folder / layout.SUMMARY)
    settings = summary.train if summary else {}
    config = config.model_copy(update={"train": config.train.model_copy(update=settings)})
    return train_once(task, pairs, engine.models.trainable(), out, config.training(), engine.progress)


def count_eval(engine: Engine, task: TaskSpec, config: RunConfig, name: str) -> None:
    """A dry run's count of an eval of a finetuned model on `task`."""
    assert engine.tally is not None and engine.base is not None
    engine.tally.add(f"eval: {name}", planned_calls(task, engine.base, config.eval))


def evaluated(model: CachedModel, task: TaskSpec, config: RunConfig, out: Path, name: str, also: Callable[[CachedModel], None] | None) -> dict:
    metrics = evaluate(task, model, config.eval, out, name=name)
    if also is not None:
        also(model)
    return metrics


def with_trained(engine: Engine, trained: TrainOutput, work: Callable[[CachedModel], object]):
    """`work(model)` with the finetuned model loaded, then freed."""
    model = engine.open_model(engine.models.finetuned(trained))
    try:
        return work(model)
    finally:
        model.close()


def evaluate_untrained(engine: Engine, method: Method, ctx: MethodContext, config: RunConfig, out: Path, name: str) -> dict | None:
    """An inference-time method's own evaluation of the untrained model in `out` (counted in a dry run)."""
    if engine.tally is not None:
        engine.tally.add(f"eval: {name}", method.evaluate_plan(ctx, config.synth, config.eval))
        return None
    return method.evaluate(ctx, config.synth, config.eval, out, name)

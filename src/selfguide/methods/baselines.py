"""The baselines SELF-GUIDE is compared with in the paper (docs/methods.md), each a method of its own.

    prompting               the task prompt with the gold demos, greedy; no data, no training
    few-shot-finetune       finetune on the gold demos only, 3 epochs
    gold-finetune           the ceiling: finetune on gold pairs from outside the eval set
    synthetic-in-context    SELF-GUIDE's data, its first floor(|D|/3) pairs put in the prompt instead of finetuning
    prompting-with-filters  n samples per eval item, the output filters at inference, the first survivor

The three that do not finetune register an `evaluate` of their own: the untrained model answers
the eval set their way. The benchmark runs each like any other method.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from pydantic import Field

from selfguide import layout
from selfguide.backends.cache import derive_seed
from selfguide.eval.evaluate import EvalConfig, eval_items, evaluate, planned_calls
from selfguide.io import read_jsonl, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, register, require_task
from selfguide.methods import self_guide
from selfguide.methods.self_guide import SelfGuideConfig
from selfguide.plan import Calls
from selfguide.stages.annotate import OutputGenConfig, annotation_requests, check_sample
from selfguide.stages.filters import length_window, noise_terms_for, normalize_label
from selfguide.tasks.spec import TaskSpec


def no_data(ctx: MethodContext, config: MethodConfig) -> dict:
    """A method without training data still leaves an (empty) dataset, so every run folder reads alike."""
    write_jsonl(ctx.out_dir / layout.DATASET, [])
    return {"stages": [], "pairs": 0, "models": {}}  # no model wrote or labelled anything


def gold_data(ctx: MethodContext, source: str) -> dict:
    """The funnel's "written by" for gold data: the task file wrote and labelled it, not a model."""
    return {"wrote": source, "labelled": source, "trained": ctx.model.info.model}


def no_calls(ctx: MethodContext, config: MethodConfig) -> dict[str, Calls]:
    return {}


# ---- prompting -------------------------------------------------------------------------------


class PromptingConfig(MethodConfig):
    """The task prompt with the gold demos, greedy: the model as it is."""

    method: Literal["prompting"] = "prompting"


def prompting_evaluate(ctx: MethodContext, config: PromptingConfig, eval_config: EvalConfig, out_dir: Path | None, name: str) -> dict:
    return evaluate(require_task(ctx), ctx.model, eval_config, out_dir, name=name)


def prompting_evaluate_plan(ctx: MethodContext, config: PromptingConfig, eval_config: EvalConfig) -> Calls:
    return planned_calls(require_task(ctx), ctx.model, eval_config)


register(PromptingConfig, run=no_data, plan=no_calls, evaluate=prompting_evaluate, evaluate_plan=prompting_evaluate_plan, title="Prompting")


# ---- few-shot finetuning ---------------------------------------------------------------------


class FewShotFinetuneConfig(MethodConfig):
    """Finetune on the gold demos only."""

    method: Literal["few-shot-finetune"] = "few-shot-finetune"
    epochs: float = Field(3, gt=0, description="Training epochs over the demos (the paper: 3).")


def few_shot_run(ctx: MethodContext, config: FewShotFinetuneConfig) -> dict:
    task = require_task(ctx)
    rows = [{"id": f"demo{i}", "input": e.input, "output": e.output, "provenance": {"source": "demo"}} for i, e in enumerate(task.examples)]
    write_jsonl(ctx.out_dir / layout.DATASET, rows)
    return {"task": task.name, "type": task.type, "stages": [], "pairs": len(rows), "train": {"epochs": config.epochs}, "models": gold_data(ctx, "the task's gold demos")}


register(FewShotFinetuneConfig, run=few_shot_run, plan=no_calls, title="Few-shot finetuning")


# ---- gold finetuning -------------------------------------------------------------------------


class GoldFinetuneConfig(MethodConfig):
    """The ceiling: finetune on gold pairs from outside the eval set."""

    method: Literal["gold-finetune"] = "gold-finetune"
    pairs: int | None = Field(None, ge=0, description="Gold pairs to draw (the benchmark: as many as SELF-GUIDE made); unset: every gold item outside the eval set.")


def gold_run(ctx: MethodContext, config: GoldFinetuneConfig) -> dict:
    task = require_task(ctx)
    chosen = gold_items(task, len(task.dev) if config.pairs is None else config.pairs, ctx.seed)
    rows = [{"id": str(item.id), "input": item.input, "output": item.references[0], "provenance": {"source": "gold"}} for item in chosen]
    write_jsonl(ctx.out_dir / layout.DATASET, rows)
    return {"task": task.name, "type": task.type, "stages": [], "pairs": len(rows), "gold_available": len(task.dev), "models": gold_data(ctx, "the task's gold instances")}


def gold_items(task: TaskSpec, count: int, seed: int) -> list:
    """`count` gold items from outside the eval set, a seeded sample (fewer if the task has fewer)."""
    rng = random.Random(derive_seed(seed, "gold", task.name))
    return rng.sample(task.dev, min(count, len(task.dev)))


def gold_pairs(task: TaskSpec, count: int, seed: int) -> list[tuple[str, str]]:
    """The (input, first reference) pairs of `gold_items`."""
    return [(item.input, item.references[0]) for item in gold_items(task, count, seed)]


register(GoldFinetuneConfig, run=gold_run, plan=no_calls, title="Gold finetuning")


# ---- synthetic data in context ---------------------------------------------------------------


class SyntheticInContextConfig(SelfGuideConfig):
    """SELF-GUIDE's synthetic data in the prompt instead of finetuning: the first floor(|D|/3) pairs after the gold demos."""

    method: Literal["synthetic-in-context"] = "synthetic-in-context"


def in_context_evaluate(ctx: MethodContext, config: SyntheticInContextConfig, eval_config: EvalConfig, out_dir: Path | None, name: str) -> dict:
    pairs = [(r["input"], r["output"]) for r in read_jsonl(ctx.out_dir / layout.DATASET)]
    return evaluate(require_task(ctx), ctx.model, eval_config, out_dir, name=name, extra_demos=pairs[: len(pairs) // 3])


def in_context_evaluate_plan(ctx: MethodContext, config: SyntheticInContextConfig, eval_config: EvalConfig) -> Calls:
    """Under 3 pairs the prompt is prompting's own (cached): no call; unknown before synthesis."""
    calls = planned_calls(require_task(ctx), ctx.model, eval_config)
    if not (ctx.out_dir / layout.SUMMARY).exists():
        return Calls(0, calls.at_most, calls.tokens)
    return calls if len(read_jsonl(ctx.out_dir / layout.DATASET)) >= 3 else Calls(0, 0)


register(SyntheticInContextConfig, run=self_guide.run, plan=self_guide.plan, evaluate=in_context_evaluate, evaluate_plan=in_context_evaluate_plan, title="Synthetic in-context")


# ---- prompting with filters ------------------------------------------------------------------


class PromptingWithFiltersConfig(MethodConfig):
    """Prompting with SELF-GUIDE's output filters at inference: n samples, the first that survives."""

    method: Literal["prompting-with-filters"] = "prompting-with-filters"
    outputs: OutputGenConfig = Field(default_factory=OutputGenConfig, description="Samples per item and the output filters (SELF-GUIDE's annotation settings).")


def filtered_evaluate(ctx: MethodContext, config: PromptingWithFiltersConfig, eval_config: EvalConfig, out_dir: Path | None, name: str) -> dict:
    """The first sample that passes the filters (a label, for classification); the first sample when none does."""
    task, outputs = require_task(ctx), config.outputs
    requests = annotation_requests(task, [item.input for item in eval_items(task, eval_config)], outputs, ctx.seed, salt="filtered")
    window = length_window([len(e.output) for e in task.examples], outputs.degenerate_width)
    terms = noise_terms_for(outputs.noise, task.is_classification)
    predictions = []
    for completions in ctx.model.generate(requests, desc="eval prompting+filters"):
        texts = [c.text.strip() for c in completions]
        survivors = [t for t in texts if check_sample(t, task, outputs, window, terms) is None]
        if task.is_classification and task.labels:
            survivors = [label for t in survivors if (label := normalize_label(t, task.labels))]
        predictions.append(survivors[0] if survivors else (texts[0] if texts else ""))
    return evaluate(task, ctx.model, eval_config, out_dir, name=name, predictions=predictions)


def filtered_evaluate_plan(ctx: MethodContext, config: PromptingWithFiltersConfig, eval_config: EvalConfig) -> Calls:
    n = len({item.input for item in eval_items(require_task(ctx), eval_config)})
    return Calls.exact(n, n * config.outputs.n * config.outputs.max_new_tokens)


register(PromptingWithFiltersConfig, run=no_data, plan=no_calls, evaluate=filtered_evaluate, evaluate_plan=filtered_evaluate_plan, title="Prompting with filters")

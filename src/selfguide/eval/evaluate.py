"""Greedy decoding on a task's eval set with the task prompt, then both metric families.

Predictions go through the same call cache as synthesis, so re-evaluating a model (or a run
interrupted mid-eval) redoes nothing finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfguide import layout
from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CachedModel
from selfguide.eval.label_scores import label_probabilities
from selfguide.eval.metrics import aggregate, aggregate_by, category_key, exact_match, reported_metric, score_instances
from selfguide.io import write_json, write_jsonl
from selfguide.plan import Calls
from selfguide.prompts.task import task_messages
from selfguide.tasks.spec import EvalItem, TaskSpec


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(None, ge=1, description="Evaluate on the first N eval items only.")
    max_new_tokens: int = Field(128, ge=1, description="Upper bound per prediction; greedy answers end at the end of the turn.")
    label_scoring: bool = Field(
        True,
        description="Classification on an in-process model: also predict the label whose log-likelihood as the answer is "
        "highest (one forward pass per label), reported apart as 'label_scored' beside the generated answers.",
    )
    reported: Literal["generated", "label_scored"] = Field(
        "generated",
        description="Which classification predictions give the headline number: the greedy generated answer (SuperNI's "
        "protocol) or the label-scored one.",
    )


def eval_requests(task: TaskSpec, inputs: list[str], max_new_tokens: int, extra_demos: list[tuple[str, str]] = ()) -> list[Request]:
    """Greedy requests with the gold demos (and optional extra in-context pairs after them)."""
    demos = [(e.input, e.output) for e in task.examples] + list(extra_demos)
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, n=1, seed=0)
    return [Request(task_messages(task.instruction, demos, text), params) for text in inputs]


def eval_items(task: TaskSpec, config: EvalConfig) -> list[EvalItem]:
    return task.eval[: config.limit] if config.limit else task.eval


def planned_calls(task: TaskSpec, model: CachedModel, config: EvalConfig, *, decoded: bool = True) -> Calls:
    """The calls of `evaluate`: one per distinct eval input (identical requests are made once),
    and as many again for label scoring where it applies; none to decode when `decoded` is False
    (predictions chosen another way)."""
    n = len({item.input for item in eval_items(task, config)})
    scored = decoded and task.is_classification and bool(task.labels) and config.label_scoring and model.supports_scoring
    return Calls.exact(2 * n if scored else n, n * config.max_new_tokens)


def evaluate(
    task: TaskSpec,
    model: CachedModel,
    config: EvalConfig,
    out_dir: Path | None = None,
    *,
    name: str = "prompting",
    extra_demos: list[tuple[str, str]] = (),
    predictions: list[str] | None = None,
) -> dict:
    """Score `model` on the task's eval set; write predictions.jsonl and metrics.json to `out_dir`.

    `predictions` skips decoding (a baseline that chose its answers another way)."""
    items = eval_items(task, config)
    if not items:
        from selfguide.errors import SelfGuideError

        raise SelfGuideError(f"task {task.name} has no eval set: give it an 'eval' JSONL file (see README)")
    decoded = predictions is None  # answers chosen another way have no label-scored twin
    calls_before = model.stats.as_dict()
    if predictions is None:
        completions = model.generate(eval_requests(task, [i.input for i in items], config.max_new_tokens, extra_demos), desc=f"eval {name}")
        predictions = [c[0].text.strip() for c in completions]
    rows = [
        {"id": item.id, "task": task.name, "category": category_key(task.category), "input": item.input, "references": item.references, "prediction": pred}
        for item, pred in zip(items, predictions)
    ]
    scored = score_instances(rows, task.type, task.labels)
    label_scored = None
    if decoded and task.is_classification and task.labels and config.label_scoring and model.supports_scoring:
        inputs = [item.input for item in items]
        probabilities = label_probabilities(model, task, inputs, calibrate=False, desc=f"eval {name} (label scores)", extra_demos=extra_demos)
        for row, probs in zip(scored, probabilities):
            row["label_scored_prediction"] = max(probs, key=lambda label: (probs[label], label))
            row["label_scored_exact_match"] = exact_match(row["label_scored_prediction"], row["references"])
        label_scored = {"exact_match": 100 * sum(r["label_scored_exact_match"] for r in scored) / len(scored)}
    metrics = {
        "name": name,
        "task": task.name,
        "n": len(scored),
        "superni": {k: v for k, v in aggregate(scored).items() if k in ("exact_match", "rougeL")},
        "paper": {k: v for k, v in aggregate(scored).items() if k.startswith("paper_")},
        "label_scored": label_scored,
        "reported_metric": reported_metric(task.category),
        "by_category": aggregate_by(scored, ["category"]),
    }
    metrics["reported"] = metrics["superni"][metrics["reported_metric"]]
    if label_scored is not None and config.reported == "label_scored":
        metrics["reported_metric"], metrics["reported"] = "label_scored_exact_match", label_scored["exact_match"]
    metrics["model_calls"] = model.stats.since(calls_before)  # the report's cost table
    if out_dir is not None:
        write_jsonl(out_dir / layout.PREDICTIONS, scored)
        write_json(out_dir / layout.METRICS, metrics)
    return metrics

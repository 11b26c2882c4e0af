"""Evaluation on Self-Instruct's 252 user-oriented instructions: greedy answers to each instruction
(and its input), scored by ROUGE-L against the reference answer. The paper rated these by hand;
the automatic score here is the one Self-Instruct reported on SuperNI: rouge-score's ROUGE-L
F-measure with stemming (`selfguide.eval.metrics.rouge_l`), mean x 100.

The prompt is `instruction_messages`, the one general-purpose data is trained with.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from selfguide import layout
from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CachedModel
from selfguide.eval.metrics import rouge_l
from selfguide.io import write_json, write_jsonl
from selfguide.prompts.task import instruction_messages
from selfguide.tasks.self_instruct import load_user_oriented


class UserOrientedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="Evaluate on the user-oriented instructions in `selfguide run`; unset: for general-purpose methods (self-instruct, alpaca).")
    path: str | None = Field(None, description="The user-oriented instructions JSONL (or its folder); unset: $SELFGUIDE_SELF_INSTRUCT or ../shared/self_instruct.")
    limit: int | None = Field(None, ge=1, description="Evaluate on the first N instructions only.")
    max_new_tokens: int = Field(256, ge=1, description="Upper bound per answer; greedy answers end at the end of the turn.")


def user_oriented_texts(config: UserOrientedConfig) -> list[str]:
    """The instructions and inputs synthetic data must not reproduce while this is an eval target."""
    return [text for task in load_user_oriented(config.path) for text in (task.instruction, task.instances[0].input) if text.strip()]


def evaluate_user_oriented(model: CachedModel, config: UserOrientedConfig, out_dir: Path | None = None, *, name: str = "prompting") -> dict:
    """Score `model`; write predictions.jsonl and metrics.json to `out_dir`. Returns the metrics:
    `rougeL` overall and per motivating app (0-100), `n`, and the model calls."""
    tasks = load_user_oriented(config.path)
    tasks = tasks[: config.limit] if config.limit else tasks
    params = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens, seed=0)
    requests = [Request(instruction_messages(t.instruction, t.instances[0].input), params) for t in tasks]
    calls_before = model.stats.as_dict()
    completions = model.generate(requests, desc=f"user-oriented {name}")
    rows = []
    for task, [completion] in zip(tasks, completions):
        prediction = completion.text.strip()
        references = [instance.output for instance in task.instances]
        rows.append(
            {
                "id": task.id,
                "app": task.motivation_app,
                "instruction": task.instruction,
                "input": task.instances[0].input,
                "references": references,
                "prediction": prediction,
                "rougeL": rouge_l(prediction, references),
            }
        )
    by_app: dict[str, list[float]] = {}
    for row in rows:
        by_app.setdefault(row["app"] or "unknown", []).append(row["rougeL"])
    metrics = {
        "name": name,
        "eval": "user-oriented",
        "n": len(rows),
        "rougeL": 100 * sum(r["rougeL"] for r in rows) / len(rows),
        "by_app": {app: 100 * sum(scores) / len(scores) for app, scores in sorted(by_app.items())},
        "model_calls": model.stats.since(calls_before),
    }
    if out_dir is not None:
        write_jsonl(out_dir / layout.PREDICTIONS, rows)
        write_json(out_dir / layout.METRICS, metrics)
    return metrics

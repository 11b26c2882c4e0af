"""`Task`: a task built in Python rather than read from a file.

    Task(instruction="Is the review positive or negative?",
         examples=[("A joy.", "positive"), {"input": "Dull.", "output": "negative"}],
         eval=[("Loved it.", "positive"), ...])

Examples and eval items may be (input, output) tuples, dicts or `Example`/`EvalItem`s; an eval
output may be a list of references. `type` and `labels` are inferred as for a task file. The API
saves such a task as task.yaml (+ task_eval.jsonl) in the run folder, so the run can be repeated
from its files alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import model_validator

from selfguide import layout
from selfguide.io import write_text
from selfguide.tasks.spec import EvalItem, Example, TaskSpec, infer_type


def as_example(item: object) -> object:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return {"input": item[0], "output": item[1]}
    return item


def as_eval_item(item: object, i: int) -> object:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        item = {"input": item[0], "output": item[1]}
    if isinstance(item, dict) and "references" not in item and "output" in item:
        output = item["output"]
        item = {"input": item.get("input"), "references": [output] if isinstance(output, str) else output, "id": item.get("id", f"eval-{i}")}
    return item


class Task(TaskSpec):
    """A TaskSpec with defaults for everything but the instruction and the examples."""

    name: str = "task"
    type: str | None = None  # type: ignore[assignment]  # inferred below

    @model_validator(mode="before")
    @classmethod
    def fill_in(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["examples"] = [as_example(e) for e in data.get("examples") or []]
        data["eval"] = [as_eval_item(e, i) for i, e in enumerate(data.get("eval") or [])]
        if not data["examples"]:
            raise ValueError("a Task needs at least one example: examples=[(input, output), ...]")
        return data

    @model_validator(mode="after")
    def infer(self) -> Task:
        if self.type is None:
            outputs = [item.references[0] for item in self.eval]
            self.type = "classification" if self.labels else infer_type(outputs)
        if self.type not in ("classification", "generation"):
            raise ValueError(f"type: expected 'classification' or 'generation', got {self.type!r}")
        if self.type == "classification" and not self.labels:
            self.labels = sorted({item.references[0].strip() for item in self.eval} | {e.output.strip() for e in self.examples})
        return self


def save_task(task: TaskSpec, folder: Path) -> Path:
    """Write `task` as a task file (and its eval set as JSONL) in `folder`; return the task file."""
    data: dict = {
        "name": task.name,
        "instruction": task.instruction,
        "examples": [{"input": e.input, "output": e.output} for e in task.examples],
        "type": task.type,
    }
    if task.labels:
        data["labels"] = task.labels
    if task.category:
        data["category"] = task.category
    if task.eval:
        write_text(folder / layout.TASK_EVAL_FILE, "".join(json.dumps({"id": i.id, "input": i.input, "output": i.references}, ensure_ascii=False) + "\n" for i in task.eval))
        data["eval"] = layout.TASK_EVAL_FILE
    path = folder / layout.TASK_FILE
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


__all__ = ["EvalItem", "Example", "Task", "save_task"]

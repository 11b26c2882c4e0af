"""The Self-Instruct data (Wang et al. 2022, Apache-2.0): the 175 human-written seed tasks that
bootstrapping starts from, and the 252 user-oriented instructions it is evaluated on.

Both files are JSONL, one task per line: {id, instruction, instances: [{input, output}], ...};
seed tasks also say `is_classification`. The folder is `$SELFGUIDE_SELF_INSTRUCT`, else
../shared/self_instruct next to the working directory (as SuperNI data is found).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from selfguide.errors import BadInputError
from selfguide.io import describe, read_jsonl_objects

SEED_TASKS_FILE = "seed_tasks.jsonl"
USER_ORIENTED_FILE = "user_oriented_instructions.jsonl"


class Instance(BaseModel):
    input: str
    output: str


class SeedTask(BaseModel):
    id: str
    instruction: str
    instances: list[Instance]
    is_classification: bool = False
    motivation_app: str | None = None  # user-oriented instructions: the app that inspired it


def self_instruct_root_default() -> Path:
    """`$SELFGUIDE_SELF_INSTRUCT` or ../shared/self_instruct next to the working directory."""
    return Path(os.environ.get("SELFGUIDE_SELF_INSTRUCT", "../shared/self_instruct"))


def data_file(path: str | Path | None, name: str) -> Path:
    """`path` itself when given (a file, or a folder holding `name`), else `name` in the default folder."""
    where = Path(path) if path else self_instruct_root_default()
    return where / name if where.is_dir() or not path else where


def load_seed_tasks(path: str | Path | None = None) -> list[SeedTask]:
    """The seed tasks (175 in the published file)."""
    return _load(data_file(path, SEED_TASKS_FILE), "Self-Instruct seed tasks file (set SELFGUIDE_SELF_INSTRUCT)")


def load_user_oriented(path: str | Path | None = None) -> list[SeedTask]:
    """The 252 user-oriented instructions, each with one reference instance."""
    return _load(data_file(path, USER_ORIENTED_FILE), "Self-Instruct user-oriented instructions file (set SELFGUIDE_SELF_INSTRUCT)")


def _load(path: Path, what: str) -> list[SeedTask]:
    expected = "an object with string 'id', 'instruction' and 'instances': [{input, output}]"
    tasks = []
    for lineno, row in read_jsonl_objects(path, what, expected):
        instances = row.get("instances")
        ok = isinstance(row.get("instruction"), str) and isinstance(instances, list) and instances
        ok = ok and all(isinstance(i, dict) and isinstance(i.get("input"), str) and isinstance(i.get("output"), str) for i in instances)
        if not ok:
            raise BadInputError(path, f"line {lineno}", expected, describe(row.get("instruction")))
        tasks.append(
            SeedTask(
                id=str(row.get("id", f"line_{lineno}")),
                instruction=row["instruction"],
                instances=[Instance(input=i["input"], output=i["output"]) for i in instances],
                is_classification=bool(row.get("is_classification", False)),
                motivation_app=row.get("motivation_app"),
            )
        )
    if not tasks:
        raise BadInputError(path, "file", f"a non-empty {what}", "no tasks")
    return tasks

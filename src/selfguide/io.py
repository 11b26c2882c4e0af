"""Small file helpers: every file is written whole to a temporary name and then renamed, so a
crash never leaves a half-written result behind. The temporary name carries the process id, so
several processes (ranks under `accelerate launch`) writing the same file never collide."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_jsonl_objects(path: Path, what: str, expected_object: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSONL file the user gave; anything else
    is one clear error naming the file and the line. `what` names the file in the "no such file"
    error; `expected_object` says what each line must be."""
    from selfguide.errors import BadInputError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BadInputError(path, "file", f"an existing {what}", "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInputError(path, "file", "a readable UTF-8 JSONL file", str(err)) from None
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BadInputError(path, f"line {lineno}", "one JSON object per line", err.msg) from None
        if not isinstance(row, dict):
            raise BadInputError(path, f"line {lineno}", expected_object, repr(row)[:60])
        rows.append((lineno, row))
    return rows

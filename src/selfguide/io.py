"""Small file helpers: every file is written whole to a temporary name and then renamed, so a
crash never leaves a half-written result behind. The temporary name carries the process id, so
several processes (ranks under `accelerate launch`) writing the same file never collide."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import yaml


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


def read_records(path: Path) -> list[dict]:
    """The objects of a JSONL record the program appends to (invocations, calls): a missing file is
    empty, and a line a crash cut short, or one that is no object, is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return [row for row in rows if isinstance(row, dict)]


def read_jsonl_objects(path: Path, what: str, expected_object: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSONL file the user gave; anything else
    is one clear error naming the file and the line. `what` names the file in the "no such file"
    error; `expected_object` says what each line must be."""
    from selfguide.errors import BadInputError

    lines = read_user_text(path, what).splitlines()
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = parse_structured(line, path, is_json=True)
        except BadInputError as err:
            raise BadInputError(path, f"line {lineno}", "one JSON object per line" if err.expected == "valid JSON" else err.expected, err.got) from None
        if not isinstance(row, dict):
            raise BadInputError(path, f"line {lineno}", expected_object, describe(row))
        rows.append((lineno, row))
    return rows


def read_dataset_rows(path: Path) -> list[dict]:
    """The rows of a dataset.jsonl (from `synthesize`, or the user's): each an object with string
    `input` and `output`, and optionally a string `instruction`; one clear error otherwise."""
    from selfguide.errors import BadInputError

    expected = "an object with string 'input' and 'output' (and optionally 'instruction')"
    rows = []
    for lineno, row in read_jsonl_objects(path, "dataset.jsonl of {input, output} (from `selfguide synthesize`)", expected):
        for key in ("input", "output", "instruction"):
            if (row.get(key) is not None or key != "instruction") and not isinstance(row.get(key), str):
                raise BadInputError(path, f"line {lineno} field {key!r}", "a string", describe(row.get(key)))
        rows.append(row)
    return rows


# Bounds on what a user's task, config or JSONL file may hold: far above any real file, far below
# what would exhaust memory or the stack (an alias bomb of a few hundred bytes expands to billions).
MAX_FILE_BYTES = 64 * 2**20
MAX_DEPTH = 64
MAX_NODES = 2_000_000


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {describe(key)} given twice", key_node.start_mark)
            seen.add(key) if isinstance(key, (str, int, float, bool)) else None
        return super().construct_mapping(node, deep=deep)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    data = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {describe(key)} given twice")
        data[key] = value
    return data


def parse_structured(text: str, source: str | Path, *, is_json: bool) -> object:
    """`text` as JSON or YAML, bounded: one clear BadInputError for bad syntax, a repeated key,
    nesting deeper than MAX_DEPTH, more than MAX_NODES values once aliases are expanded, or a
    string that is not valid Unicode (a lone surrogate escape)."""
    from selfguide.errors import BadInputError

    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys) if is_json else yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader)
    except json.JSONDecodeError as err:
        raise BadInputError(source, f"line {err.lineno} column {err.colno}", "valid JSON", err.msg) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "content"
        raise BadInputError(source, where, "valid YAML", str(getattr(err, "problem", None) or "not valid YAML")[:200]) from None
    except RecursionError:
        raise BadInputError(source, "content", f"at most {MAX_DEPTH} levels of nesting", "far more") from None
    except ValueError as err:  # a repeated JSON key, or an integer too long to convert
        raise BadInputError(source, "content", "valid JSON" if is_json else "valid YAML", str(err)[:200]) from None
    check_bounds(data, source)
    return data


def check_bounds(data: object, source: str | Path) -> None:
    """Walk `data` once per distinct container (aliases share theirs), counting the values it
    expands to, its depth, and every string's encodability."""
    from selfguide.errors import BadInputError

    sizes: dict[int, int] = {}

    def size(node: object, depth: int) -> int:
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise BadInputError(source, "content", "valid Unicode text", f"a lone surrogate escape in {describe(node)}") from None
            return 1
        if not isinstance(node, (dict, list)):
            return 1
        if depth > MAX_DEPTH:
            raise BadInputError(source, "content", f"at most {MAX_DEPTH} levels of nesting", "more")
        if id(node) not in sizes:
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            total = 1
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise BadInputError(source, "content", f"at most {MAX_NODES:,} values (YAML aliases expanded)", "more")
            sizes[id(node)] = total
        return sizes[id(node)]

    size(data, 0)


def read_structured(path: Path, what: str) -> object:
    """A YAML or JSON file the user gave (by suffix: .json is JSON, anything else YAML), read through
    `parse_structured`'s bounds. `what` names the file in the "no such file" error."""
    from selfguide.errors import BadInputError

    if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
        raise BadInputError(path, "file", f"a {what} of at most {MAX_FILE_BYTES // 2**20} MB", f"{path.stat().st_size // 2**20} MB")
    return parse_structured(read_user_text(path, what), path, is_json=path.suffix.lower() == ".json")


def read_user_text(path: Path, what: str) -> str:
    """A UTF-8 file the user gave, or one clear error naming it: missing, a folder, not UTF-8,
    unreadable. `what` names the file in the error."""
    from selfguide.errors import BadInputError

    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(path, "file", f"an existing {what}", "no such file") from None
    except IsADirectoryError:
        raise BadInputError(path, "file", f"a {what}", "a folder") from None
    except UnicodeDecodeError as err:
        raise BadInputError(path, "file", "UTF-8 text", f"byte {err.start} is not UTF-8") from None
    except OSError as err:
        raise BadInputError(path, "file", f"a readable {what}", err.strerror or type(err).__name__) from None


def describe(value: object) -> str:
    """A short description of a user's value for an error message: never the whole value, which
    may be huge (an alias bomb's repr alone exhausts memory)."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value[:57]) + ("..." if len(value) > 57 else "")
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, (bool, float)) or (isinstance(value, int) and abs(value) < 10**40):
        return repr(value)
    return type(value).__name__

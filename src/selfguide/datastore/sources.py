"""Where datastore rows come from: SuperNI task files, local JSONL files, and `datasets` datasets
read as a stream. Each source yields rows (group, input, output) and describes its groups.

A group is the unit a row belongs to: a SuperNI task, a JSONL file, a dataset. Its description
(a SuperNI task's Definition, or what the user wrote) is what retrieval matches the instruction
against, as ReBase matches the instruction against dataset descriptions; and a group can be left
out of retrieval whole, as the task's own file is by default.

Each source also has a fingerprint: what it reads, and for local files their content hashes, so a
datastore is rebuilt when a file changes and reused when nothing did.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from selfguide.errors import BadInputError


@dataclass(frozen=True)
class SourceRow:
    group: str
    input: str
    output: str


@dataclass(frozen=True)
class Group:
    name: str
    description: str
    source: str  # which source config it came from, e.g. "superni", "jsonl:data/x.jsonl"


class SuperNISource(BaseModel):
    """Every instance of SuperNI task files: input, first reference; group = task name (task190)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["superni"] = "superni"
    root: str | None = Field(None, description="SuperNI folder holding tasks/; unset: $SELFGUIDE_SUPERNI or ../shared/superni.")
    tasks: list[str] = Field(default_factory=list, description="Task names (task190) to include; empty: every task file under root/tasks.")

    def files(self) -> list[Path]:
        from selfguide.tasks.superni import superni_root_default

        folder = Path(self.root or superni_root_default()) / "tasks"
        found = sorted(folder.glob("task*.json"))
        if not found:
            raise BadInputError(folder, "folder", "SuperNI task files (task*.json)", "none found (set datastore root or $SELFGUIDE_SUPERNI)")
        if not self.tasks:
            return found
        by_name = {path.stem.split("_")[0]: path for path in found}
        missing = [name for name in self.tasks if name not in by_name]
        if missing:
            raise BadInputError(folder, f"task {missing[0]!r}", "a SuperNI task present in the folder")
        return [by_name[name] for name in self.tasks]

    def fingerprint(self) -> dict:
        return {"kind": self.kind, "files": {path.name: file_digest(path) for path in self.files()}}

    def read(self, groups: list[Group]) -> Iterator[SourceRow]:
        for path in self.files():
            data = json.loads(path.read_text(encoding="utf-8"))
            name = path.stem.split("_")[0]
            groups.append(Group(name, " ".join(d.strip() for d in data.get("Definition") or []), "superni"))
            for instance in data.get("Instances") or []:
                references = instance.get("output") or [""]
                yield SourceRow(name, str(instance.get("input", "")), str(references[0]))


class JsonlSource(BaseModel):
    """JSON objects one a line; the field names are configurable. Group = a field, or the file name."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["jsonl"] = "jsonl"
    path: str = Field(..., description="A .jsonl file, a folder of them, or a glob.")
    input_field: str = Field("input", description="Field holding a row's input.")
    output_field: str = Field("output", description="Field holding a row's output (a list: its first item).")
    group_field: str | None = Field(None, description="Field naming each row's group (dataset, task); unset: the file name.")
    description: str | None = Field(None, description="What the rows are, matched against a task's instruction; unset: the group name.")

    def files(self) -> list[Path]:
        path = Path(self.path)
        found = sorted(path.glob("*.jsonl")) if path.is_dir() else sorted(Path(p) for p in glob.glob(self.path))
        if not found:
            raise BadInputError(self.path, "datastore source", "a JSONL file, a folder of .jsonl files or a glob matching some", "no such file")
        return found

    def fingerprint(self) -> dict:
        fields = self.model_dump(exclude={"path"})
        return {**fields, "files": {str(path): file_digest(path) for path in self.files()}}

    def read(self, groups: list[Group]) -> Iterator[SourceRow]:
        seen: set[str] = set()
        for path in self.files():
            with path.open(encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise BadInputError(path, f"line {lineno}", "one JSON object per line", err.msg) from None
                    if not isinstance(row, dict):
                        raise BadInputError(path, f"line {lineno}", "a JSON object", repr(row)[:60])
                    group = str(row.get(self.group_field, path.stem)) if self.group_field else path.stem
                    if group not in seen:
                        seen.add(group)
                        groups.append(Group(group, self.description or group, f"jsonl:{path}"))
                    yield SourceRow(group, field_text(row, self.input_field, path, lineno), field_text(row, self.output_field, path, lineno))


class DatasetSource(BaseModel):
    """A `datasets` dataset read as a stream (never whole in memory): a Hub name, a local folder of
    data files, or a parquet/JSON/CSV file; `shard_index` of `num_shards` reads one shard of it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["dataset"] = "dataset"
    name: str = Field(..., description="Hub dataset id, local folder of data files, or a .parquet/.jsonl/.json/.csv file.")
    config: str | None = Field(None, description="Dataset configuration (subset) name.")
    split: str = Field("train", description="Split to read.")
    revision: str | None = Field(None, description="Hub revision; pin it so the datastore's fingerprint names fixed content.")
    input_column: str = Field(..., description="Column holding a row's input.")
    output_column: str = Field(..., description="Column holding a row's output (class labels give their names, lists their first item).")
    group: str | None = Field(None, description="Group name of every row; unset: the dataset name.")
    description: str | None = Field(None, description="What the dataset is, matched against a task's instruction; unset: the group name.")
    limit: int | None = Field(None, ge=1, description="Read at most this many rows.")
    num_shards: int = Field(1, ge=1, description="Split the stream into this many shards (by its data files) ...")
    shard_index: int = Field(0, ge=0, description="... and read this one.")

    def group_name(self) -> str:
        return self.group or (self.name if not self.config else f"{self.name}:{self.config}")

    def fingerprint(self) -> dict:
        spec = self.model_dump()
        path = Path(self.name)
        if path.is_file():
            spec["files"] = {str(path): file_digest(path)}
        elif path.is_dir():
            spec["files"] = {str(p): file_digest(p) for p in sorted(path.rglob("*")) if p.is_file()}
        return spec

    def open(self):
        import datasets

        builders = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
        suffix = Path(self.name).suffix.lower()
        try:
            if Path(self.name).is_file() and suffix in builders:
                stream = datasets.load_dataset(builders[suffix], data_files=self.name, split=self.split, streaming=True)
            else:
                stream = datasets.load_dataset(self.name, self.config, split=self.split, streaming=True, revision=self.revision)
        except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
            raise BadInputError(self.name, "datastore dataset", "a loadable dataset (Hub id, data folder or data file) and split", str(err).splitlines()[0][:200]) from None
        if self.num_shards > 1:
            if self.shard_index >= self.num_shards or self.num_shards > stream.num_shards:
                raise BadInputError(self.name, f"shard {self.shard_index} of {self.num_shards}", f"a shard index below num_shards, and num_shards <= the stream's {stream.num_shards} data shards")
            stream = stream.shard(num_shards=self.num_shards, index=self.shard_index)
        return stream

    def read(self, groups: list[Group]) -> Iterator[SourceRow]:
        stream = self.open()
        features = stream.features or {}
        for column in (self.input_column, self.output_column):
            if features and column not in features:
                raise BadInputError(self.name, f"column {column!r}", f"one of the columns {sorted(features)}")
        name = self.group_name()
        groups.append(Group(name, self.description or name, f"dataset:{self.name}"))
        to_input, to_output = column_text(features.get(self.input_column)), column_text(features.get(self.output_column))
        for count, row in enumerate(stream):
            if self.limit is not None and count >= self.limit:
                break
            yield SourceRow(name, to_input(row[self.input_column]), to_output(row[self.output_column]))


Source = Annotated[SuperNISource | JsonlSource | DatasetSource, Field(discriminator="kind")]


def field_text(row: dict, field: str, path: Path, lineno: int) -> str:
    value = row.get(field)
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, (str, int, float, bool)):
        raise BadInputError(path, f"line {lineno} field {field!r}", "a string (or a list whose first item is one)", repr(value)[:60])
    return str(value)


def column_text(feature):
    """row value -> text: a class label's name, a list's first item, anything else as str."""
    from datasets import ClassLabel

    if isinstance(feature, ClassLabel):
        return feature.int2str
    return lambda value: str(value[0]) if isinstance(value, list) and value else str(value)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]

"""The row-level datastore: rows from every source in SQLite on disk, a BM25 index over them, built
once per content and reused by every task and run.

A datastore lives in `<cache>/datastores/<key>/`, where the key hashes the sources' fingerprints
(local files by content) and the index settings: the same sources give the same folder, whichever
task or run asks, and a changed file gives a new one. Building writes a temporary folder and
renames it, under a file lock, so a killed build leaves nothing half made and two processes never
build the same store twice.

Files:
  rows.sqlite        rows(id, grp, input, output) and groups(id, name, description, source); a row's
                     id is its document number in the indexes
  row_groups.npy     each row's group id, memory-mapped: group masks without touching SQLite
  bm25/              BM25 over each row's input and output (see lexical.py)
  bm25_groups/       BM25 over the group descriptions, for matching a task instruction
  dense/<model>/     optional sentence embeddings, added on first dense retrieval (see dense.py)
  manifest.json      sources, counts and build time; written last, so its presence means complete
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from selfguide.datastore.lexical import BM25Config, LexicalIndex, build_lexical
from selfguide.datastore.sources import Group, Source, SuperNISource
from selfguide.errors import SelfGuideError
from selfguide.io import write_json

FORMAT = 1  # bump when the files change shape: old stores are then rebuilt, not misread
MANIFEST = "manifest.json"
BATCH = 10_000  # rows per SQLite transaction while building


class DatastoreConfig(BaseModel):
    """Which rows the datastore holds and how they are indexed."""

    model_config = ConfigDict(extra="forbid")

    sources: list[Source] = Field(
        default_factory=lambda: [SuperNISource()],
        description="Row sources: superni (task files), jsonl (local files), dataset (a `datasets` dataset, streamed).",
    )
    bm25: BM25Config = Field(default_factory=BM25Config)
    cache_dir: str | None = Field(None, description="Folder of built datastores; unset: <user cache>/datastores ($SELFGUIDE_CACHE).")


@dataclass(frozen=True)
class Row:
    id: int
    group: str
    input: str
    output: str

    @property
    def text(self) -> str:
        return row_text(self.input, self.output)


def row_text(source_input: str, output: str) -> str:
    """What the indexes see of a row: its input and its output."""
    return f"{source_input}\n{output}"


def datastore_key(config: DatastoreConfig) -> str:
    payload = {"format": FORMAT, "sources": [source.fingerprint() for source in config.sources], "bm25": config.bm25.model_dump()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def datastore_root(config: DatastoreConfig) -> Path:
    from selfguide.model_source import user_cache_dir

    return Path(config.cache_dir).expanduser() if config.cache_dir else user_cache_dir() / "datastores"


def open_datastore(config: DatastoreConfig, progress: bool = False) -> Datastore:
    """The datastore of these sources: the one already built, or built now."""
    from filelock import FileLock

    root = datastore_root(config)
    root.mkdir(parents=True, exist_ok=True)
    key = datastore_key(config)
    folder = root / key
    with FileLock(str(root / f"{key}.lock")):
        if not (folder / MANIFEST).is_file():
            build_datastore(config, folder, progress)
    return Datastore(folder)


def build_datastore(config: DatastoreConfig, folder: Path, progress: bool = False) -> None:
    started = time.perf_counter()
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    db = sqlite3.connect(tmp / "rows.sqlite")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, grp INTEGER, input TEXT, output TEXT)")
    db.execute("CREATE TABLE groups (id INTEGER PRIMARY KEY, name TEXT UNIQUE, description TEXT, source TEXT)")
    groups: list[Group] = []
    group_ids: dict[str, int] = {}
    row_groups: list[int] = []

    def texts() -> Iterator[str]:
        """Every row's index text in order, writing the rows to SQLite on the way (one pass over the sources)."""
        batch: list[tuple] = []
        announced = 0
        for source in config.sources:
            for row in source.read(groups):
                for group in groups[announced:]:  # groups the source announced since the last row
                    group_ids.setdefault(group.name, len(group_ids))
                announced = len(groups)
                grp = group_ids[row.group]
                batch.append((len(row_groups), grp, row.input, row.output))
                row_groups.append(grp)
                if len(batch) >= BATCH:
                    db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", batch)
                    batch.clear()
                yield row_text(row.input, row.output)
        db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", batch)

    try:
        n_rows = build_lexical(texts(), tmp / "bm25", config.bm25, progress)
        if n_rows == 0:
            raise SelfGuideError("datastore: the sources gave no rows")
        unique = {}
        for group in groups:
            unique.setdefault(group.name, group)  # a group named twice keeps its first description
        ordered = sorted(unique.values(), key=lambda g: group_ids[g.name])
        db.executemany("INSERT INTO groups VALUES (?, ?, ?, ?)", [(group_ids[g.name], g.name, g.description, g.source) for g in ordered])
        db.commit()
        db.close()
        np.save(tmp / "row_groups.npy", np.asarray(row_groups, dtype=np.int32))
        build_lexical([g.description or g.name for g in ordered], tmp / "bm25_groups", config.bm25)
        write_json(
            tmp / MANIFEST,
            {
                "format": FORMAT,
                "rows": n_rows,
                "groups": len(ordered),
                "sources": [source.model_dump() for source in config.sources],
                "bm25": config.bm25.model_dump(),
                "build_seconds": round(time.perf_counter() - started, 2),
            },
        )
        shutil.rmtree(folder, ignore_errors=True)  # a folder without a manifest is an interrupted build
        os.replace(tmp, folder)
    except BaseException:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class Datastore:
    """A built datastore, read-only: rows by id, groups, and the indexes (loaded on first use)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        self._db = sqlite3.connect(f"file:{self.folder / 'rows.sqlite'}?mode=ro", uri=True, check_same_thread=False)
        self.groups = [Group(name, description, source) for name, description, source in self._db.execute("SELECT name, description, source FROM groups ORDER BY id")]
        self.group_index = {group.name: i for i, group in enumerate(self.groups)}
        self.row_groups = np.load(self.folder / "row_groups.npy", mmap_mode="r")

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    @property
    def key(self) -> str:
        return self.folder.name

    @cached_property
    def lexical(self) -> LexicalIndex:
        return LexicalIndex(self.folder / "bm25")

    @cached_property
    def group_lexical(self) -> LexicalIndex:
        return LexicalIndex(self.folder / "bm25_groups")

    def rows(self, ids: Sequence[int]) -> list[Row]:
        """The rows with these ids, in the order asked."""
        found: dict[int, Row] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row_id, grp, source_input, output in self._db.execute(f"SELECT id, grp, input, output FROM rows WHERE id IN ({marks})", chunk):
                found[row_id] = Row(row_id, self.groups[grp].name, source_input, output)
        missing = [i for i in ids if i not in found]
        if missing:
            raise IndexError(f"datastore {self.key}: no row {missing[0]} (it has {len(self)})")
        return [found[i] for i in ids]

    def group_mask(self, names: Sequence[str]) -> np.ndarray:
        """True for every row of the named groups (names the store lacks match nothing)."""
        ids = [self.group_index[name] for name in names if name in self.group_index]
        return np.isin(self.row_groups, np.asarray(ids, dtype=np.int32))

    def close(self) -> None:
        self._db.close()

"""One writer per SQLite file: a worker writes the calls it makes to a shard of its own and reads
the run's cache without writing it; the driver alone merges shards into the run's cache.

SQLite's WAL mode needs shared memory, which a network filesystem does not give, so many writers
on one file there corrupt it; a shard has one writer. Keys are content hashes (backends/cache.py),
so `INSERT OR IGNORE` merges are safe in any order and any number of times.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from selfguide.backends.cache import CallCache, cache_error


class ShardCache(CallCache):
    """A CallCache writing to `shard` that also finds the calls of the run's cache at `base`."""

    def __init__(self, shard: str | Path, base: str | Path):
        super().__init__(shard)
        self.base = Path(base)
        self._base_db = None
        if self.base.exists():
            try:  # read-only: the driver is this file's one writer
                self._base_db = sqlite3.connect(f"{self.base.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=60)
            except sqlite3.Error as err:
                raise cache_error(self.base, "opening", err) from None

    def _get(self, keys: Sequence[str]) -> dict[str, list[dict]]:
        found = self._read(self._base_db, self.base, keys) if self._base_db is not None else {}
        return found | super()._get([k for k in keys if k not in found])

    def _read(self, db: sqlite3.Connection, path: Path, keys: Sequence[str]) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        with self._lock:
            try:
                for start in range(0, len(keys), 500):
                    chunk = list(keys[start : start + 500])
                    marks = ",".join("?" * len(chunk))
                    for key, results in db.execute(f"SELECT key, completions FROM calls WHERE key IN ({marks})", chunk):
                        found[key] = json.loads(results)
            except sqlite3.Error as err:
                raise cache_error(path, "reading", err) from None
        return found

    def close(self) -> None:
        if self._base_db is not None:
            self._base_db.close()
        super().close()


def merge_caches(sources: Sequence[str | Path], into: str | Path) -> int:
    """Add every call of `sources` that `into` lacks; returns how many were added."""
    target = CallCache(into)  # makes the file and its tables when new
    target.close()
    added = 0
    try:
        with contextlib.closing(sqlite3.connect(into, timeout=60)) as db:
            for source in sources:
                if not Path(source).is_file():
                    raise cache_error(Path(source), "reading", FileNotFoundError("no such file"))
                db.execute("ATTACH DATABASE ? AS src", (str(source),))
                try:
                    before = db.total_changes
                    db.execute("INSERT OR IGNORE INTO calls SELECT key, model, request, completions, created FROM src.calls")
                    added += db.total_changes - before
                    if db.execute("SELECT 1 FROM src.sqlite_master WHERE name = 'identities'").fetchone():
                        db.execute("INSERT OR IGNORE INTO identities SELECT name, identity FROM src.identities")
                    db.commit()
                finally:
                    db.execute("DETACH DATABASE src")
    except sqlite3.Error as err:
        raise cache_error(Path(into), "merging into", err) from None
    return added


def shard_folder(cache: Path) -> Path:
    """Where the workers of a run on `cache` keep their shards until the driver merges them."""
    return cache.with_name(cache.name + ".shards")


def merge_shards(cache: Path, shards: Sequence[Path]) -> int:
    """Merge finished shards into the run's cache, then delete them (with their WAL files)."""
    shards = [s for s in shards if s.is_file()]
    added = merge_caches(shards, cache) if shards else 0
    for shard in shards:
        for path in (shard, shard.with_name(shard.name + "-wal"), shard.with_name(shard.name + "-shm")):
            path.unlink(missing_ok=True)
    return added

"""Datastore speed: build time of the row store and its BM25 index, and retrieval latency per query.

    python bench/datastore.py                      # all 45 SuperNI task files: 160,182 rows, ~2 min on 2 cores
    python bench/datastore.py --dense-rows 5000    # also dense retrieval over the first 5,000 rows

The rows are real: every instance of every SuperNI task file in ../shared/superni (input, first
reference), 160,182 rows in 45 groups; nothing is synthesised. The store is built in a fresh
temporary cache folder, so the build is measured from nothing, then opened again (the reuse path).

Latency, each over many queries, reported as p50/p95 in milliseconds:
  - one BM25 query: scores for every row plus the top 100, for each task's instruction, demo
    inputs and demo outputs (the queries ReBase issues);
  - one task's ReBase ranking: instruction + every demo input and output, combined, own task
    excluded, top 3,000 rows;
  - fetching those 3,000 rows from SQLite.

Measured here (2 CPU cores shared with other jobs, nice 19, OMP_NUM_THREADS=1):
  160,182 rows, 71 MB on disk; build 16.9 s (9,452 rows/s); reopen 105 ms (hashing the task
  files for the key); first index load 180 ms; peak memory of the whole script 1.3 GB.
  one BM25 query: p50 0.6 ms, p95 4.9 ms (355 queries)
  one task's ReBase ranking, top 3,000: p50 13.7 ms, p95 23.4 ms (45 tasks)
  fetching 3,000 rows: p50 13.3 ms, p95 20.5 ms
  dense, 5,000 rows: embedding 37 rows/s (CPU, contended); one query p50 26.5 ms, p95 63.8 ms
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from selfguide.datastore.search import rank_rows
from selfguide.datastore.sources import JsonlSource, SuperNISource
from selfguide.datastore.store import DatastoreConfig, open_datastore
from selfguide.tasks.load import load_task

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms over {len(ms)}"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--superni", type=Path, default=SHARED / "superni")
    parser.add_argument("--k", type=int, default=3000, help="rows a ReBase ranking keeps")
    parser.add_argument("--dense-rows", type=int, default=0, help="also time dense retrieval over this many rows (0: skip)")
    args = parser.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="selfguide-bench-datastore-"))
    config = DatastoreConfig(sources=[SuperNISource(root=str(args.superni))], cache_dir=str(cache))
    build_s, store = timed(open_datastore, config)
    reopen_s, store = timed(open_datastore, config)
    load_s, _ = timed(lambda: (store.lexical, store.group_lexical))
    size_mb = sum(p.stat().st_size for p in store.folder.rglob("*") if p.is_file()) / 1e6
    print(f"datastore: {len(store):,} rows in {len(store.groups)} groups (SuperNI instances), {size_mb:.0f} MB on disk")
    print(f"build (rows to SQLite + BM25 index, from nothing): {build_s:.1f} s ({len(store) / build_s:,.0f} rows/s)")
    print(f"reopen (reuse): {reopen_s * 1000:.1f} ms; first index load (memory-mapped): {load_s * 1000:.1f} ms")

    tasks = [load_task(path) for path in sorted((args.superni / "tasks").glob("task*.json"))]
    queries = [q for task in tasks for q in [task.instruction] + [e.input for e in task.examples] + [e.output for e in task.examples]]
    single = [timed(store.lexical.top, q, 100)[0] for q in queries]
    print(f"one BM25 query (scores over all rows + top 100): {percentiles(single)}")

    ranking, fetching = [], []
    for task in tasks:
        seconds, hits = timed(rank_rows, store, task.instruction, [(e.input, e.output) for e in task.examples], args.k, exclude_groups=[task.name])
        ranking.append(seconds)
        fetching.append(timed(store.rows, [h.row_id for h in hits])[0])
    print(f"one task's ReBase ranking (instruction + demos, own task excluded, top {args.k}): {percentiles(ranking)}")
    print(f"fetching the {args.k} ranked rows from SQLite: {percentiles(fetching)}")

    if args.dense_rows:
        subset = cache / "dense_rows.jsonl"
        rows = store.rows(range(min(args.dense_rows, len(store))))
        subset.write_text("".join(json.dumps({"input": r.input, "output": r.output, "group": r.group}) + "\n" for r in rows))
        dense_store = open_datastore(DatastoreConfig(sources=[JsonlSource(path=str(subset), group_field="group")], cache_dir=str(cache)))
        from selfguide.datastore.dense import DenseIndex

        embed_s, index = timed(DenseIndex, dense_store)
        per_query = [timed(index.scores, q)[0] for q in queries[:200]]
        print(f"dense: embedding {len(dense_store):,} rows with all-MiniLM-L6-v2 took {embed_s:.1f} s ({len(dense_store) / embed_s:,.0f} rows/s)")
        print(f"one dense query (encode + exact cosine over {len(dense_store):,} rows): {percentiles(per_query)}")


if __name__ == "__main__":
    main()

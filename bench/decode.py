"""Our decoder side by side with a baseline, in one process.

    python bench/decode.py --model /work/smollm2 --calls runs/task1622/cache.sqlite
    python bench/decode.py --model M --calls C --per-kind 20 --device cuda
    python bench/decode.py --model M --calls C --compare refill
    python bench/decode.py --model M --calls C --compare kv_room
    python bench/decode.py --model M --calls C --compare share_samples

A finished run's call cache holds the real requests of its stages: input writing (one sampled
input per prompt), annotation (n sampled answers per input) and evaluation (greedy answers).
Each kind of request (grouped by its sampling settings) is replayed twice through one HFBackend:

* ours: the scheduler (backends/hf/scheduler.py), which drops rows from the batch as they finish (EOS or stop string),
  lets waiting rows join as soon as a quarter of the batch is free, writes each step's keys
  and values in place (backends/decode_cache.py), and decodes a request's samples as one row
  until their tokens part;
* base, `--compare generate` (the default): `drop_finished=False`, i.e. `model.generate`, which
  runs every row of a batch until the batch's longest row ends;
* base, `--compare refill`: `refill=False`: the next batch starts when this one's last row ends;
* base, `--compare kv_room`: `kv_room=False`: the cache grows by concatenation (a copy of the
  whole cache per step), as transformers' DynamicCache does;
* base, `--compare share_samples`: `share_samples=False`: each of a request's n samples is a
  batch row of its own from the start, rather than one row until their tokens part.

Prefix reuse is on in both. Prints generated tokens/s and the ratio per kind, and checks that
both ways gave the same texts (a mismatch count otherwise; 0 expected in float32). Model loading
and a warm-up call are not timed. Each kind runs ours, base, base, ours (times summed), with the
prefix KV cache emptied before each replay, so that neither way inherits the other's work or
gets the machine's quieter half.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections import defaultdict

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.hf import HFBackend


def recorded_requests(path: str, per_kind: int) -> dict[str, list[Request]]:
    """The first `per_kind` requests of each sampling setting in a call cache, in call order."""
    kinds: dict[str, list[Request]] = defaultdict(list)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for (text,) in db.execute("SELECT request FROM calls ORDER BY created"):
            request = json.loads(text)
            if "params" not in request:  # a label-scoring call
                continue
            params = SamplingParams(**{**request["params"], "stop": tuple(request["params"]["stop"])})
            kind = f"T={params.temperature:g} n={params.n} max={params.max_new_tokens}"
            if len(kinds[kind]) < per_kind:
                kinds[kind].append(Request(tuple(request["messages"]), params))
    return dict(kinds)


def replay(backend: HFBackend, requests: list[Request]) -> tuple[float, list[list[str]], int]:
    backend.prefiller.prefix_kv.clear()
    started = time.perf_counter()
    out = dict(backend.generate(requests))
    seconds = time.perf_counter() - started
    texts = [[c.text for c in out[i]] for i in range(len(requests))]
    tokens = sum(c.completion_tokens for i in range(len(requests)) for c in out[i])
    return seconds, texts, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the run's model folder (e.g. /work/smollm2) or hub id")
    parser.add_argument("--calls", required=True, help="a finished run's cache.sqlite")
    parser.add_argument("--per-kind", type=int, default=20, help="requests replayed per sampling setting")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--compare", choices=("generate", "refill", "kv_room", "share_samples"), default="generate", help="the baseline (see above)")
    args = parser.parse_args()
    flag = {"generate": "drop_finished", "refill": "refill", "kv_room": "kv_room", "share_samples": "share_samples"}[args.compare]
    base_name = {"generate": "generate", "refill": "no refill", "kv_room": "concatenate", "share_samples": "row per sample"}[args.compare]

    kinds = recorded_requests(args.calls, args.per_kind)
    backend = HFBackend(args.model, device=args.device, dtype=args.dtype)
    warm = next(iter(kinds.values()))[:1]
    replay(backend, warm)
    print(f"{'requests':<28}{'ours':>16}{base_name:>16}{'ratio':>8}  same texts")
    total = {"ours": 0.0, "base": 0.0}
    for kind, requests in kinds.items():
        seconds = {True: 0.0, False: 0.0}
        texts = {}
        for on in (True, False, False, True):
            setattr(backend, flag, on)
            elapsed, texts[on], tokens = replay(backend, requests)
            seconds[on] += elapsed
        ours, base = seconds[True] / 2, seconds[False] / 2
        ours_texts, base_texts = texts[True], texts[False]
        total["ours"] += ours
        total["base"] += base
        mismatches = sum(a != b for a, b in zip(ours_texts, base_texts))
        label = f"{len(requests)} x {kind}"
        print(
            f"{label:<28}{tokens / ours:>10.1f} tok/s{tokens / base:>10.1f} tok/s{base / ours:>7.2f}x  "
            + ("yes" if not mismatches else f"NO: {mismatches} of {len(requests)} requests differ")
        )
    print(f"{'all':<28}{total['ours']:>12.1f} s  {total['base']:>12.1f} s  {total['base'] / total['ours']:>7.2f}x")
    backend.close()


if __name__ == "__main__":
    main()

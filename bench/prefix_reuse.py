"""Shared-prefix KV reuse and label scoring in HFBackend, side by side in one process.

    python bench/prefix_reuse.py --model /work/smollm2                 # task1612, CPU
    python bench/prefix_reuse.py --model M --task task190 --items 100 --inputs 20 --device cuda

Three lines, each the same work done two ways:

* evaluation: `--items` greedy eval requests of one classification task (`eval_requests`, the
  evaluation defaults), with prefix reuse and without (every prompt prefilled whole);
* annotation: `--inputs` inputs x n samples at the annotation defaults (`annotation_requests`,
  n=10, T=0.2), with prefix reuse and without;
* label scoring: the same inputs, each label scored by log-likelihood (one forward per label
  set), against sampling n answers (with prefix reuse both, and the n samples sharing a batch
  row while they agree: HFBackend's `share_samples`, on in all three lines).

The task's eval inputs stand in for synthesized inputs. Model loading and a warm-up call are not
timed. Checks that both ways gave the same outputs and prints a mismatch count if not.
"""

from __future__ import annotations

import argparse
import time

from selfguide.backends.base import ScoreRequest
from selfguide.backends.hf import HFBackend
from selfguide.eval.evaluate import EvalConfig, eval_requests
from selfguide.prompts.task import task_messages
from selfguide.stages.annotate import OutputGenConfig, annotation_requests
from selfguide.tasks.load import load_task


def timed(call) -> tuple[float, dict]:
    started = time.perf_counter()
    out = dict(call())
    return time.perf_counter() - started, out


def texts(out: dict) -> dict:
    return {i: [c.text for c in completions] for i, completions in out.items()}


def line(name: str, unit: str, count: int, ours: float, base: float, ours_name: str, base_name: str) -> None:
    print(f"{name:<12}{count / ours:>10.2f} {unit}/s {ours_name:<16}{count / base:>10.2f} {unit}/s {base_name:<22}{base / ours:>7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (e.g. /work/smollm2) or hub id")
    parser.add_argument("--task", default="task1612", help="a classification task file or SuperNI task name")
    parser.add_argument("--items", type=int, default=20, help="greedy evaluation items (the paper evaluates 100)")
    parser.add_argument("--inputs", type=int, default=4, help="inputs to annotate (n samples each) and to score")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-batch-tokens", type=int, default=16384, help="HFBackend's batch budget, rows x (prompt + new tokens)")
    args = parser.parse_args()

    task = load_task(args.task)
    if not task.labels:
        parser.error(f"--task {args.task}: expected a classification task (one with labels)")
    inputs = [item.input for item in task.eval]
    evaluation = eval_requests(task, inputs[: args.items], EvalConfig().max_new_tokens)
    annotation_config = OutputGenConfig()
    annotation = annotation_requests(task, inputs[: args.inputs], annotation_config, seed=0)
    demos = [(e.input, e.output) for e in task.examples]
    scoring = [ScoreRequest(task_messages(task.instruction, demos, text), tuple(task.labels)) for text in inputs[: args.inputs]]

    sizes = {"device": args.device, "dtype": args.dtype, "max_batch_tokens": args.max_batch_tokens}
    reuse = HFBackend(args.model, **sizes)
    whole = HFBackend(args.model, **sizes, reuse_prefix=False)
    for backend in (reuse, whole):  # warm-up: first-call costs out of the timings
        dict(backend.generate(evaluation[:2]))

    eval_reuse, eval_out = timed(lambda: reuse.generate(evaluation))
    eval_whole, eval_base = timed(lambda: whole.generate(evaluation))
    annotate_reuse, annotate_out = timed(lambda: reuse.generate(annotation))
    annotate_whole, annotate_base = timed(lambda: whole.generate(annotation))
    score_seconds, scores = timed(lambda: reuse.score(scoring))

    prompt_tokens = [c[0].prompt_tokens for c in eval_out.values()]
    print(
        f"{task.name}, {args.model}, {reuse.info.extra['dtype']} on {reuse.info.extra['device']}; "
        f"prompts {min(prompt_tokens)}-{max(prompt_tokens)} tokens; labels {task.labels}"
    )
    line("evaluation", "items", len(evaluation), eval_reuse, eval_whole, "prefix reuse", "whole prompts")
    samples = len(annotation) * annotation_config.n
    line("annotation", "inputs", len(annotation), annotate_reuse, annotate_whole, "prefix reuse", "whole prompts")
    line("labels", "inputs", len(scoring), score_seconds, annotate_reuse, "label scoring", f"sampling n={annotation_config.n}")
    print(f"(annotation: {samples} samples, {sum(c.completion_tokens for cs in annotate_out.values() for c in cs)} tokens generated)")
    mismatched = sum(texts(eval_out)[i] != texts(eval_base)[i] for i in eval_out)
    mismatched += sum(texts(annotate_out)[i] != texts(annotate_base)[i] for i in annotate_out)
    print(f"outputs differing between prefix reuse and whole prompts: {mismatched} of {len(eval_out) + len(annotate_out)} requests")
    assert len(scores) == len(scoring)
    reuse.close()
    whole.close()


if __name__ == "__main__":
    main()

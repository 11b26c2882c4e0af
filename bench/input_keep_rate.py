"""How many written inputs survive, per input-writing prompt style, on the benchmark's tuning tasks.

For each task and style: candidates written, the share the paper's input filters keep (empty,
length, noise, duplicates, copies), the share of all candidates in the demos' form (every field
marker the demo inputs share, such as 'Premise:' and 'Hypothesis:'), and the share kept once the
demo-field filter is on as well (the product default).

    python bench/input_keep_rate.py --model /path/to/SmolLM2 --rounds 2
    python bench/input_keep_rate.py --styles prefill,published --tasks task1612,task036
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from selfguide.backends.cache import CallCache
from selfguide.backends.factory import cached_model
from selfguide.backends.model_config import ModelConfig
from selfguide.benchmark.grid import TUNING
from selfguide.model_source import resolve_model
from selfguide.stages.filters import InputFilterConfig, check_fields, demo_field_markers
from selfguide.stages.write_inputs import InputGenConfig, generate_inputs
from selfguide.tasks.load import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model folder, hub id or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--tasks", default=",".join(TUNING["classification"] + TUNING["generation"]))
    parser.add_argument("--styles", default="prefill,published")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 10 prompts per task and style")
    parser.add_argument("--cache", default=None, help="SQLite call cache to reuse between runs (default: a temporary one)")
    args = parser.parse_args()

    cache = CallCache(args.cache or Path(tempfile.mkdtemp()) / "cache.sqlite")
    model = cached_model(ModelConfig(name=resolve_model(args.model), device="cpu"), cache, progress=False)
    totals: dict[str, list[int]] = {}
    print("| task | style | candidates | kept (paper filters) | in demo form | kept (+ demo-field filter) | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.tasks.split(","):
        task = load_task(name)
        fields = demo_field_markers([e.input for e in task.examples])
        for style in args.styles.split(","):
            started = time.perf_counter()
            gen = InputGenConfig(rounds=args.rounds, prompt=style, max_new_tokens=160)
            paper = generate_inputs(task, model, gen, InputFilterConfig(require_demo_fields=False), seed=0)
            product = generate_inputs(task, model, gen, InputFilterConfig(require_demo_fields=True), seed=0)
            seconds = time.perf_counter() - started
            kept = sum(r["status"] == "kept" for r in paper)
            in_form = sum(check_fields(r["text"], fields) is None for r in paper) if fields else None
            kept_product = sum(r["status"] == "kept" for r in product)
            row = totals.setdefault(style, [0, 0, 0, 0, 0])
            row[0] += len(paper)
            row[1] += kept
            row[2] += in_form or 0
            row[3] += len(paper) if fields else 0
            row[4] += kept_product
            form = "n/a (no markers)" if fields == [] else f"{in_form}/{len(paper)}"
            print(f"| {name} | {style} | {len(paper)} | {kept}/{len(paper)} | {form} | {kept_product}/{len(product)} | {seconds:.0f} |", flush=True)
    for style, (n, kept, in_form, with_fields, kept_product) in totals.items():
        print(
            f"{style}: kept {100 * kept / n:.0f}% by the paper's filters, {100 * in_form / max(with_fields, 1):.0f}% in the demos' form "
            f"(tasks with field markers), {100 * kept_product / n:.0f}% kept with the demo-field filter"
        )
    cache.close()


if __name__ == "__main__":
    main()

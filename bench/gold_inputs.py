"""The inputs of a task's gold items outside its eval set, without their answers, as a JSONL file for
`synth.inputs.file`: what a user with unlabelled inputs of the task would bring. The items are the
ones the gold ceiling trains on (`methods.baselines.gold_items`, the same seeded draw), so a run on
them sits between SELF-GUIDE (written inputs, self-labels) and the ceiling (gold inputs, gold labels).

    python bench/gold_inputs.py task1195 0 40 /tmp/q/inputs/task1195-s0.jsonl --eval-split selfguide-validation
    selfguide run task1195 --config configs/cpu.yaml --seed 0 --eval-split selfguide-validation \\
        --set synth.inputs.file=/tmp/q/inputs/task1195-s0.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfguide.methods.baselines import gold_items
from selfguide.tasks.load import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", help="SuperNI task name or task file")
    parser.add_argument("seed", type=int, help="the run's seed (the gold ceiling's draw)")
    parser.add_argument("count", type=int, help="how many inputs")
    parser.add_argument("out", type=Path, help="JSONL file to write")
    parser.add_argument("--eval-split", default="official", help="the run's eval split: its items are never drawn")
    args = parser.parse_args()
    task = load_task(args.task, args.eval_split)
    items = gold_items(task, args.count, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps({"input": item.input}) + "\n" for item in items), encoding="utf-8")
    print(f"{len(items)} inputs of {len(task.dev)} gold items outside the eval set -> {args.out}")


if __name__ == "__main__":
    main()

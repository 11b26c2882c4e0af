"""The held-out table of docs/quality.md: prompting, two recipes and their gold ceilings, per task.

Each argument is LABEL=FOLDER[,FOLDER...]: `selfguide bench superni` folders
run with the same --setting, eval split and limit, one recipe per label. A task's gain is
SELF-GUIDE minus prompting, and the gold ceiling's is gold_finetune (as many gold pairs as that
recipe made) minus prompting; mean ± SD over the seeds found.

    python bench/heldout_table.py old=/tmp/ho/old-H1,/tmp/ho/old-H2 new=/tmp/ho/new-H1,/tmp/ho/new-H2
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml


def collect(folders: list[Path]) -> dict[str, dict[int, dict]]:
    """task -> seed -> {prompting, self_guide, gold_finetune, pairs} (reported metric), read from
    each task's folders (seed-N/heldout/TASK/..., or heldout/TASK/... for one seed), so benches of
    the same recipe over other seeds or tasks, in folders of their own, add up."""
    found: dict[str, dict[int, dict]] = defaultdict(dict)
    for folder in folders:
        for task_dir in sorted([*folder.glob("seed-*/heldout/task*"), *folder.glob("heldout/task*")]):
            bench_dir = task_dir.parent.parent  # seed-N/ of --seeds, else the bench folder of one seed
            seed = int(bench_dir.name.removeprefix("seed-")) if bench_dir.name.startswith("seed-") else yaml.safe_load((bench_dir / "config.yaml").read_text())["seed"]
            run = {"prompting": task_dir / "prompting", "self_guide": next(task_dir.glob("T*/eval"), None), "gold_finetune": next(task_dir.glob("T*/gold/eval"), None)}
            scores = {name: json.loads((d / "metrics.json").read_text())["reported"] for name, d in run.items() if d and (d / "metrics.json").is_file()}
            synth = next(task_dir.glob("synth-*/summary.json"), None)
            if "self_guide" in scores and "prompting" in scores and synth:
                found[task_dir.name][seed] = scores | {"pairs": json.loads(synth.read_text())["pairs"]}
    return found


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:+.2f}"
    return f"{statistics.fmean(values):+.2f} ± {statistics.stdev(values):.2f}"


def table(recipes: dict[str, dict[str, dict[int, dict]]]) -> str:
    labels = list(recipes)
    tasks = sorted({task for found in recipes.values() for task in found})
    header = "| task | seeds | prompting | " + " | ".join(f"{label}: pairs / gain / gold gain / share of gold" for label in labels) + " |"
    lines = [header, "|---|---|---:|" + "---|" * len(labels)]
    for task in tasks:
        cells, seeds, prompting = [], set(), None
        for label in labels:
            runs = recipes[label].get(task, {})
            seeds |= set(runs)
            if not runs:
                cells.append("-")
                continue
            prompting = next(iter(runs.values()))["prompting"]
            gains = [run["self_guide"] - run["prompting"] for run in runs.values()]
            gold = [run["gold_finetune"] - run["prompting"] for run in runs.values() if "gold_finetune" in run]
            pairs = sorted(run["pairs"] for run in runs.values())
            share = f"{statistics.fmean(gains) / statistics.fmean(gold):.2f}" if gold and statistics.fmean(gold) > 0 else "-"
            cells.append(f"{pairs[0]}-{pairs[-1]} / {spread(gains)} / {spread(gold)} / {share}")
        lines.append(f"| {task} | {', '.join(map(str, sorted(seeds)))} | {prompting:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    recipes = {}
    for argument in sys.argv[1:]:
        label, _, folders = argument.partition("=")
        recipes[label] = collect([Path(folder) for folder in folders.split(",")])
    print(table(recipes))

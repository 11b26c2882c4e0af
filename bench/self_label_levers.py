"""The label levers' effect on the labels themselves, before any training: the self-label diagnostic
(stages/self_label.py) on each task's gold items outside its eval set, under each vote and filter
setting of configs/cpu.yaml. The samples are drawn once per (task, seed) and cached; a lever only
votes again, so the levers cost nothing beyond the first.

    nice -n 10 python bench/self_label_levers.py task036,task039,task121,task1195 0,1,2 /tmp/q/levers.sqlite >> levers.jsonl
    python bench/self_label_levers.py task1195 0 /tmp/q/levers.sqlite "majority (cpu.yaml),T0.7 n10 consensus 0.5"  # some levers
    python bench/self_label_levers.py --table levers.jsonl     # the Markdown table of docs/quality.md
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict

from selfguide.arguments import run_config
from selfguide.backends.cache import CallCache
from selfguide.backends.factory import cached_model
from selfguide.backends.resolve import require_model
from selfguide.run_task import load_run_task
from selfguide.stages.self_label import self_label_accuracy

LEVERS = {
    "majority (cpu.yaml)": {},
    "consensus 0.3": {"vote": "consensus", "min_consensus": 0.3},
    "consensus 0.5": {"vote": "consensus", "min_consensus": 0.5},
    "consensus 0.7": {"vote": "consensus", "min_consensus": 0.7},
    "rewrite filter": {"rewrite_filter": True},
    "rewrite filter + consensus 0.5": {"rewrite_filter": True, "vote": "consensus", "min_consensus": 0.5},
    # More, more varied samples for the consensus (minimum Bayes risk): its pick can beat greedy decoding.
    "T0.7 n10 consensus 0.5": {"temperature": 0.7, "n": 10, "vote": "consensus", "min_consensus": 0.5},
    "T1.0 n10 consensus 0.5": {"temperature": 1.0, "n": 10, "vote": "consensus", "min_consensus": 0.5},
}


def main(tasks: list[str], seeds: list[int], cache_path: str, levers: list[str]) -> None:
    cache = CallCache(cache_path)
    model = None
    for seed in seeds:  # every task once before the next seed
        for name in tasks:
            config = require_model(run_config(name, config="configs/cpu.yaml", eval_split="selfguide-validation"))
            task = load_run_task(config)
            model = model or cached_model(config.model, cache, progress=False)
            started = time.perf_counter()
            for lever in levers:
                update = LEVERS[lever]
                outputs = config.synth.outputs.model_copy(update=update)
                result = self_label_accuracy(task, model, outputs, config.synth.self_label, seed)
                print(json.dumps({"task": name, "seed": seed, "lever": lever, "seconds": round(time.perf_counter() - started, 1), **result}), flush=True)


def table(rows: list[dict]) -> str:
    """One line per task and lever: each measure's mean (± SD over seeds where there are several)."""
    measures = ["pass_rate", "passed_accuracy", "accuracy", "prompting_accuracy", "prompting_on_passed", "label_gain"]
    groups = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["lever"])].append(row)

    def cell(values: list) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        return f"{statistics.fmean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")

    lines = ["| task | lever | seeds | pass rate % | passed labels | all items (dropped = 0) | prompting, all items | prompting on passed | label gain |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (task, lever), group in groups.items():
        lines.append(f"| {task} | {lever} | {len(group)} | " + " | ".join(cell([r.get(m) for r in group]) for m in measures) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        print(table([json.loads(line) for line in open(sys.argv[2], encoding="utf-8") if line.strip()]))
    else:
        main(sys.argv[1].split(","), [int(s) for s in sys.argv[2].split(",")], sys.argv[3], sys.argv[4].split(",") if len(sys.argv) > 4 else list(LEVERS))

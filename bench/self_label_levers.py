"""The label levers' effect on the labels themselves, before any training: the self-label diagnostic
(stages/self_label.py) on each task's gold items outside its eval set, under each vote and filter
setting of configs/cpu.yaml. The samples are drawn once per (task, seed) and cached; a lever only
votes again, so the levers cost nothing beyond the first.

    nice -n 10 python bench/self_label_levers.py task036,task039,task121,task1195 0,1,2 /tmp/q/levers.sqlite >> levers.jsonl
"""

from __future__ import annotations

import json
import sys
import time

from selfguide.api import require_model
from selfguide.arguments import run_config
from selfguide.backends.cache import CallCache
from selfguide.backends.factory import cached_model
from selfguide.run_task import load_run_task
from selfguide.stages.self_label import self_label_accuracy

LEVERS = {
    "majority (cpu.yaml)": {},
    "consensus 0.3": {"vote": "consensus", "min_consensus": 0.3},
    "consensus 0.5": {"vote": "consensus", "min_consensus": 0.5},
    "consensus 0.7": {"vote": "consensus", "min_consensus": 0.7},
    "rewrite filter": {"rewrite_filter": True},
    "rewrite filter + consensus 0.5": {"rewrite_filter": True, "vote": "consensus", "min_consensus": 0.5},
}


def main(tasks: list[str], seeds: list[int], cache_path: str) -> None:
    cache = CallCache(cache_path)
    model = None
    for seed in seeds:  # every task once before the next seed
        for name in tasks:
            config = require_model(run_config(name, config="configs/cpu.yaml", eval_split="selfguide-validation"))
            task = load_run_task(config)
            model = model or cached_model(config.model, cache, progress=False)
            started = time.perf_counter()
            for lever, update in LEVERS.items():
                outputs = config.synth.outputs.model_copy(update=update)
                result = self_label_accuracy(task, model, outputs, config.synth.self_label, seed)
                print(json.dumps({"task": name, "seed": seed, "lever": lever, "seconds": round(time.perf_counter() - started, 1), **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1].split(","), [int(s) for s in sys.argv[2].split(",")], sys.argv[3])

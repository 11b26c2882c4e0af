"""Bench parts per second: `bench superni` on the tiny model, local executor against Ray.

    python bench/scale_out.py                       # 4 held-out tasks, a local Ray on this machine's CPUs
    python bench/scale_out.py --tasks task1562,task1622 --cpus 2
    python bench/scale_out.py --ray-address auto    # an existing cluster (its --out must be shared)

Each executor runs the same bench (one setting, prompting and SELF-GUIDE per task: one part per
task) from an empty folder, in float32 on the CPU. Prints wall time and parts/s for both, the
ratio, and whether the two gave the same results.json. Ray's start is timed apart (it is paid once
per driver). On a machine with few cores expect little: the local executor runs one part at a
time with torch on every core, Ray runs parts side by side, one thread each (Ray sets
OMP_NUM_THREADS to a task's CPUs), each loading its own model. On a machine shared with other
work the thread count matters more than the executor: compare with OMP_NUM_THREADS=1 for the local run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SETTING = "temperature=1.0,input_length_filter=false,output_length_filter=false,epochs=1"


def without(value, keys=("seconds",)):
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    return value


def run_bench(model: Path, tasks: str, out: Path, limit: int, *extra: str) -> float:
    from selfguide.cli import app

    args = [
        "bench", "superni", "--model", str(model), "--tasks", tasks, "--limit", str(limit), "--setting", SETTING, "--baselines", "prompting",
        "--config", str(REPO / "configs" / "tiny.yaml"), "--set", "synth.inputs.rounds=1", "--set", "synth.outputs.n=2",
        "--set", "model.device=cpu", "--set", "model.dtype=float32", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        sys.exit(f"bench failed: {result.output[-2000:]} {result.exception!r}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="task1562,task1622,task281,task1345", help="held-out SuperNI tasks: one part each")
    parser.add_argument("--limit", type=int, default=2, help="eval items per task")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (not with --ray-address)")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one")
    args = parser.parse_args()

    import ray

    from selfguide.tinymodel import build_tiny_model

    import torch

    parts = len(args.tasks.split(","))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny")
        local = run_bench(model, args.tasks, Path(tmp) / "local", args.limit)
        started = time.perf_counter()
        if args.ray_address:
            ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=args.cpus, num_gpus=0, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        on_ray = run_bench(model, args.tasks, Path(tmp) / "ray", args.limit, "--executor", "ray")
        cpus = ray.cluster_resources().get("CPU", 0)
        ray.shutdown()
        same = without(json.loads((Path(tmp) / "local" / "results.json").read_text())) == without(json.loads((Path(tmp) / "ray" / "results.json").read_text()))
    print(f"{parts} parts (tasks {args.tasks}, {args.limit} eval items each), tiny model, float32, CPU; load average {load:.1f} on {os.cpu_count()} cores at the start")
    print(f"local: {local:7.1f} s  {parts / local:.3f} parts/s  (one part at a time, torch on {torch.get_num_threads()} threads)")
    print(f"ray:   {on_ray:7.1f} s  {parts / on_ray:.3f} parts/s  ({cpus:g} Ray CPUs, a part per CPU, torch on 1 thread each as Ray sets it; Ray's own start {ray_start:.1f} s, not included)")
    print(f"ray/local parts/s: {local / on_ray:.2f}x; same results.json (wall times aside): {same}")


if __name__ == "__main__":
    main()

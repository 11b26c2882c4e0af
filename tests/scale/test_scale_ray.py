"""`bench superni --executor ray` on a real local Ray (2 CPUs, started once for this file): the
same results and calls as the local executor, a worker killed mid-part, a driver killed mid-run,
and the cache shards merged by `selfguide cache merge`. The tiny model in float32, where batch
layout leaves the numbers alone, so the parts run anywhere give the same tokens."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.conftest import REPO, SUPERNI, without_seconds
from typer.testing import CliRunner

from selfguide.cli import app

pytest.importorskip("ray")
runner = CliRunner()
SETTING = "temperature=1.0,input_length_filter=false,output_length_filter=false,epochs=1"


def bench_args(tiny_model_dir: Path, out: Path, *extra: str) -> list[str]:
    """Two held-out tasks, one setting (no tuning), prompting and SELF-GUIDE: two parts a seed."""
    return [
        "bench", "superni", "--model", str(tiny_model_dir), "--tasks", "task1562,task1622", "--limit", "1", "--setting", SETTING,
        "--baselines", "prompting", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", "synth.inputs.rounds=1",
        "--set", "synth.outputs.n=2", "--set", "eval.max_new_tokens=4",
        "--set", "model.device=cpu", "--set", "model.dtype=float32", "--out", str(out), "--quiet", *extra,
    ]


def bench(tiny_model_dir: Path, out: Path, *extra: str):
    result = runner.invoke(app, bench_args(tiny_model_dir, out, *extra), env={"SELFGUIDE_SUPERNI": str(SUPERNI)})
    assert result.exit_code == 0, result.output
    return without_seconds(json.loads((out / "results.json").read_text()))


def calls_of(cache: Path) -> dict[str, tuple[str, str, str]]:
    """key -> (model, request, completions) of every cached call."""
    with sqlite3.connect(cache) as db:
        return {key: (model, request, completions) for key, model, request, completions in db.execute("SELECT key, model, request, completions FROM calls")}


def same_calls(a: Path, b: Path, base_model: Path) -> None:
    """The same calls with the same answers. Calls to the base model have the same keys; a
    finetuned model's key holds its adapter's file times (backends/fingerprint.py), new in every
    training, so those calls are compared by request and answer."""
    from selfguide.backends.base import Request, SamplingParams
    from selfguide.backends.cache import request_key
    from selfguide.backends.factory import backend_info
    from selfguide.backends.model_config import ModelConfig

    info = backend_info(ModelConfig(name=str(base_model), device="cpu", dtype="float32"))

    def base_keys(calls: dict) -> set[str]:
        keys = set()
        for key, (_, request, _) in calls.items():
            request = json.loads(request)
            if "params" in request and request_key(info, Request(request["messages"], SamplingParams(**request["params"]))) == key:
                keys.add(key)
        return keys

    calls_a, calls_b = calls_of(a), calls_of(b)
    assert base_keys(calls_a) == base_keys(calls_b) and base_keys(calls_a)
    assert sorted(v[1:] for v in calls_a.values()) == sorted(v[1:] for v in calls_b.values())


def without_calls(value):
    """Results without their call counts, which a rerun finds partly cached."""
    if isinstance(value, dict):
        return {k: without_calls(v) for k, v in value.items() if k != "model_calls"}
    return value


def answered(results: dict) -> int:
    """Requests answered, made or found in the cache: a rerun finds some cached, the sum stays."""
    return results["model_calls"]["calls"] + results["model_calls"]["cached"]


def made_calls(results: dict) -> int:
    runs = results["per_seed"].values() if "per_seed" in results else [results]
    return sum(run["model_calls"]["calls"] for run in runs)


def part_pids() -> list[int]:
    """Ray worker processes running a bench part (Ray titles them after the task's function)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ray::run_part" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def shard_rows(out: Path, before: float | None = None) -> int:
    """Calls in the workers' shards not yet merged (those made before `before`, if given)."""
    total = 0
    for shard in (out / "cache.sqlite.shards").glob("*.sqlite"):
        try:
            with sqlite3.connect(shard) as db:
                total += db.execute("SELECT COUNT(*) FROM calls WHERE created <= ?", (before or time.time() + 3600,)).fetchone()[0]
        except sqlite3.OperationalError:  # a shard its worker is still creating
            continue
    return total


def wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.time() < deadline:
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "bench"
    return out, bench(tiny_model_dir, out, "--seeds", "0,1")


def test_ray_executor_gives_the_local_results_and_calls(tiny_model_dir, tmp_path, ray_cluster, local_run):
    local_out, local = local_run
    assert all(task["pairs"] for run in local["per_seed"].values() for task in run["heldout"].values())  # the parts train too
    out = tmp_path / "bench"
    on_ray = bench(tiny_model_dir, out, "--seeds", "0,1", "--executor", "ray")
    assert on_ray == local  # every score, pair count and call count, per seed and summed
    same_calls(out / "cache.sqlite", local_out / "cache.sqlite", tiny_model_dir)
    assert (out / "seed-1" / "results.md").read_text() == (local_out / "seed-1" / "results.md").read_text()
    assert not list((out / "cache.sqlite.shards").glob("*"))  # every shard merged


def test_a_worker_killed_mid_part_is_retried_without_redoing_its_calls(tiny_model_dir, tmp_path, ray_cluster, local_run):
    out = tmp_path / "bench"
    killed: dict = {}

    def kill_once_calls_are_cached():
        deadline = time.time() + 300
        while time.time() < deadline:
            pids = part_pids()
            if pids and (out / "cache.sqlite.shards").is_dir() and shard_rows(out):
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed["at"], killed["pids"] = time.time(), pids
                wait_gone(pids)
                killed["calls"] = shard_rows(out, before=killed["at"])  # the retry's own calls come after
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_once_calls_are_cached)
    killer.start()
    results = bench(tiny_model_dir, out, "--seeds", "0", "--executor", "ray")
    killer.join()
    assert killed.get("pids") and killed["calls"] > 0
    local = local_run[1]["per_seed"]["0"]
    assert without_calls(results) == without_calls(local)  # nothing lost
    assert made_calls(results) + killed["calls"] == len(calls_of(out / "cache.sqlite"))  # the retries' calls and the dead workers': each call once
    assert answered(results) == answered(local)


def test_a_driver_killed_mid_run_then_rerun_repeats_no_call(tiny_model_dir, tmp_path, ray_cluster, local_run):
    out = tmp_path / "bench"
    command = [sys.executable, "-c", "from selfguide.cli import main; main()", *bench_args(tiny_model_dir, out, "--seeds", "0", "--executor", "ray", "--ray-address", ray_cluster)]
    driver = subprocess.Popen(command, env={**os.environ, "SELFGUIDE_SUPERNI": str(SUPERNI)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while driver.poll() is None and time.time() < deadline and not ((out / "cache.sqlite.shards").is_dir() and shard_rows(out)):
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    wait_gone(part_pids())  # Ray ends the dead driver's tasks
    assert not (out / "results.json").exists(), "the kill came after the bench had finished"
    before = shard_rows(out) + (len(calls_of(out / "cache.sqlite")) if (out / "cache.sqlite").exists() else 0)
    assert before > 0

    results = bench(tiny_model_dir, out, "--seeds", "0", "--executor", "ray")
    local = local_run[1]["per_seed"]["0"]
    assert without_calls(results) == without_calls(local)
    assert before + made_calls(results) == len(calls_of(out / "cache.sqlite"))  # no finished call made again
    assert answered(results) == answered(local)


def test_cache_merge_adds_only_missing_calls(tmp_path, local_run):
    local_out, _ = local_run
    source = local_out / "cache.sqlite"
    n = len(calls_of(source))
    first = runner.invoke(app, ["cache", "merge", str(source), "-o", str(tmp_path / "merged.sqlite")])
    assert first.exit_code == 0 and f"{n} calls added" in first.output, first.output
    again = runner.invoke(app, ["cache", "merge", str(source), str(source), "-o", str(tmp_path / "merged.sqlite")])
    assert "0 calls added" in again.output and calls_of(tmp_path / "merged.sqlite") == calls_of(source)


def test_part_resources():
    from selfguide.backends.model_config import ModelConfig
    from selfguide.scale.ray_executor import part_resources

    assert part_resources(ModelConfig(device="cuda"), cluster_gpus=2) == {"num_gpus": 1, "num_cpus": 1}
    assert part_resources(ModelConfig(device="auto"), cluster_gpus=2) == {"num_gpus": 1, "num_cpus": 1}
    assert part_resources(ModelConfig(device="auto"), cluster_gpus=0) == {"num_cpus": 1}
    assert part_resources(ModelConfig(device="cpu"), cluster_gpus=2) == {"num_cpus": 1}


def test_default_run_never_imports_ray(tiny_model_dir, tmp_path):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from selfguide.cli import app\n"
        f"r = CliRunner().invoke(app, {bench_args(tiny_model_dir, tmp_path / 'b', '--dry-run')!r})\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SELFGUIDE_SUPERNI": str(SUPERNI)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

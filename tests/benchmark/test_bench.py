"""`selfguide bench superni` on the tiny model: the selection rule, the results files, the dry
run's count against the calls made, and a stopped bench that resumes without redoing work."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import threading
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import REPO, SUPERNI, without_seconds
from typer.testing import CliRunner

from selfguide.benchmark.grid import Setting, parse_grid, parse_setting, select_setting
from selfguide.cli import app
from selfguide.errors import BadInputError, BudgetExceeded

runner = CliRunner()


def test_max_min_rule_on_a_constructed_example():
    gains = {
        "best_on_average": {"a": 30.0, "b": -5.0, "c": 20.0},  # mean 15, but hurts task b
        "steady": {"a": 4.0, "b": 3.0, "c": 5.0},  # min 3: the max-min choice
        "never_hurts_but_flat": {"a": 1.0, "b": 1.0, "c": 1.0},
    }
    assert select_setting(gains) == ("steady", 3.0)
    assert select_setting({"x": {"a": -2.0}, "y": {"a": -1.0}}) == ("y", -1.0)


def test_grid_parsing():
    assert len(parse_grid(None)) == 5 * 2 * 2 * 3
    grid = parse_grid(["temperature=0.7, 1.0", "epochs=1", "input_length_filter=off", "output_length_filter=true"])
    assert grid == [Setting(0.7, False, True, 1), Setting(1.0, False, True, 1)]
    assert parse_setting("temperature=0.8,epochs=3") == Setting(0.8, True, True, 3)
    assert Setting(0.8, True, True, 3).for_task("classification") == Setting(0.8, True, False, 3)
    for bad in (["temp=1"], ["epochs=0"], ["temperature=hot"], ["input_length_filter=maybe"], ["epochs"]):
        with pytest.raises(BadInputError):
            parse_grid(bad)


def bench_args(tiny_model_dir: Path, out: Path, *extra: str) -> list[str]:
    tuned = "--setting" not in extra  # with --setting nothing is tuned: no grid, no tuning task
    grid = ["--grid", "temperature=1.0", "--grid", "input_length_filter=false", "--grid", "output_length_filter=false", "--grid", "epochs=1,2"] if tuned else []
    return [
        "bench", "superni", "--model", str(tiny_model_dir), "--tasks", "task190,task1562" if tuned else "task1562", "--limit", "5", *grid,
        "--config", str(REPO / "configs" / "tiny.yaml"), "--set", "synth.inputs.rounds=2",
        "--set", "synth.outputs.n=3", "--out", str(out), "--quiet", *extra,
    ]


def bench(tiny_model_dir: Path, out: Path, *extra: str):
    return runner.invoke(app, bench_args(tiny_model_dir, out, *extra), env={"SELFGUIDE_SUPERNI": str(SUPERNI)})


def plan_of(output: str) -> tuple[int, int]:
    line = next(line for line in output.splitlines() if line.startswith("model calls:"))
    numbers = [int(word) for word in line.replace("(", " ").split() if word.isdigit()]
    return numbers[0], numbers[-1] if len(numbers) > 1 else numbers[0]


def done_stamps(out: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in out.rglob("done.json")}


def test_bench_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "bench"
    dry = bench(tiny_model_dir, out, "--dry-run")
    assert dry.exit_code == 0, dry.output
    low, high = plan_of(dry.output)
    assert "training runs: 5" in dry.output  # 2 tuning settings + self-guide + few-shot + gold ceiling on the held-out task

    # Stop at a budget partway, then continue: the two runs together make every call once.
    stopped = bench(tiny_model_dir, out, "--max-calls", "30")
    assert isinstance(stopped.exception, BudgetExceeded), stopped.output  # the CLI's main() exits 3 on it
    first_calls = 30
    finished = bench(tiny_model_dir, out)
    assert finished.exit_code == 0, finished.output
    results = json.loads((out / "results.json").read_text())
    second_calls = results["model_calls"]["calls"]
    total = first_calls + second_calls
    assert low <= total <= high

    # The dry run now knows every stage's size: its count is the calls actually made.
    exact = bench(tiny_model_dir, out, "--dry-run")
    assert plan_of(exact.output) == (total, total), exact.output

    # Results: the table, CSV and JSON, the chosen setting, the paper's averages beside ours.
    table = (out / "results.md").read_text()
    assert "task1562" in table and "average (generation)" in table and "+17.9" in table
    held_out = results["heldout"]["task1562"]
    for column in ("prompting", "few_shot_finetune", "synthetic_in_context", "prompting_with_filters", "self_guide", "gold_finetune"):
        assert column in table and held_out["metrics"][column] is not None
    if held_out["untrained"]:  # no synthetic pair: Self-Guide and its gold twin are the unchanged model
        assert held_out["metrics"]["self_guide"] == held_out["metrics"]["gold_finetune"] == held_out["metrics"]["prompting"]
    else:  # the ceiling trains on as many gold pairs as Self-Guide made (fewer if the task has fewer outside its eval set)
        gold_dataset = next(out.rglob("heldout/task1562/*/gold/train/done.json"))
        assert 0 < json.loads(gold_dataset.read_text())["n_train"] <= held_out["pairs"]
    assert held_out["eval_split"] == "selfguide-test" and held_out["eval_items"] == 5
    assert "| task1562 | rougeL | selfguide-test |" in table
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["family"] for r in rows} == {"superni", "paper"} and any(r["task"] == "task1562" for r in rows)
    chosen = json.loads((out / "chosen_setting.json").read_text())
    assert chosen["setting"]["key"] in results["tuning"]["gains"] and chosen["setting"]["epochs"] in (1, 2)
    assert results["tuning"]["chosen"] == select_setting(results["tuning"]["gains"])[0]
    assert set(results["tuning"]["tasks"]) == {"task190"}
    assert results["heldout"]["task1562"]["pairs"] is not None

    # Rerunning redoes nothing: no model call, every training reused.
    stamps = done_stamps(out)
    again = bench(tiny_model_dir, out)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["model_calls"]["calls"] == 0
    assert done_stamps(out) == stamps


def test_killed_bench_redoes_no_finished_stage(tiny_model_dir, tmp_path):
    """SIGKILL the bench once its first training is done; the rerun reuses that training and every
    finished call, and the calls of both runs add up to the dry run's exact count."""
    out = tmp_path / "bench"
    command = [sys.executable, "-c", "from selfguide.cli import main; main()", *bench_args(tiny_model_dir, out)]
    env = {**os.environ, "SELFGUIDE_SUPERNI": str(SUPERNI), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list(out.rglob("done.json")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "results.json").exists(), "the kill came after the bench had finished"
    stamps = done_stamps(out)
    assert len(stamps) == 1
    with sqlite3.connect(out / "cache.sqlite") as conn:
        calls_before = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    resumed = bench(tiny_model_dir, out)
    assert resumed.exit_code == 0, resumed.output
    calls_after = json.loads((out / "results.json").read_text())["model_calls"]["calls"]
    exact = bench(tiny_model_dir, out, "--dry-run")
    assert plan_of(exact.output) == (calls_before + calls_after,) * 2
    assert all(done_stamps(out)[path] == stamp for path, stamp in stamps.items())


def test_bench_setting_skips_tuning(tiny_model_dir, tmp_path):
    result = bench(tiny_model_dir, tmp_path / "b", "--setting", "temperature=1.0,input_length_filter=false,output_length_filter=false,epochs=1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "training runs: 3" in result.output  # self-guide + few-shot + gold ceiling on task1562, no tuning
    assert "setting: T1-in0-out0-e1 (--setting; no tuning)" in result.output and "grid:" not in result.output


def test_seeds_repeat_the_protocol_and_report_mean_and_spread(tiny_model_dir, tmp_path):
    setting = "temperature=1.0,input_length_filter=false,output_length_filter=false,epochs=1"
    dry = bench(tiny_model_dir, tmp_path / "b", "--setting", setting, "--dry-run", "--seeds", "0,1")
    assert dry.exit_code == 0, dry.output
    assert "training runs: 6" in dry.output
    result = bench(tiny_model_dir, tmp_path / "b", "--setting", setting, "--seeds", "0,1", "--baselines", "gold_finetune")
    assert result.exit_code == 0, result.output
    table = (tmp_path / "b" / "results.md").read_text()
    assert "seeds 0, 1" in table and " ± " in table and "| **average (generation)** |" in table
    assert "gold_finetune" in table and "few_shot_finetune" not in table  # only the columns asked for
    per_seed = json.loads((tmp_path / "b" / "results.json").read_text())["per_seed"]
    assert set(per_seed) == {"0", "1"} and (tmp_path / "b" / "seed-1" / "results.md").is_file()
    for flag, value in (("--seeds", "0,x"), ("--baselines", "gold")):
        bad = bench(tiny_model_dir, tmp_path / "b", "--setting", setting, flag, value)
        assert isinstance(bad.exception, BadInputError), bad.output


def test_the_cache_setting_applies_to_a_bench(tiny_model_dir, tmp_path):
    """`cache:` (or --set cache=...) shares one call cache between benches and runs, as it does for `run`."""
    shared = tmp_path / "shared.sqlite"
    setting = "temperature=1.0,input_length_filter=false,output_length_filter=false,epochs=1"
    result = bench(tiny_model_dir, tmp_path / "b", "--setting", setting, "--baselines", "prompting", "--set", f"cache={shared}")
    assert result.exit_code == 0, result.output
    assert shared.is_file() and not list((tmp_path / "b").rglob("cache.sqlite"))


def test_tasks_at_once_by_default_only_where_the_model_has_room():
    from selfguide.backends.model_config import ModelConfig
    from selfguide.benchmark.runner import default_parallel

    assert default_parallel(ModelConfig(backend="openai")) == 4
    assert default_parallel(ModelConfig(backend="hf", device="cuda")) == 2
    assert default_parallel(ModelConfig(backend="hf", device="cpu")) == 1  # tasks at once would share out the cores
    assert default_parallel(ModelConfig(backend="llamacpp")) == default_parallel(ModelConfig(backend="vllm")) == 1


def test_tasks_at_once_share_one_model_and_match_one_at_a_time(tiny_model_dir, tmp_path, monkeypatch):
    """Two tuning tasks on the in-process hf model, one at a time and two at once: the same results,
    datasets and call counts (each eval's and each dataset's own). At once, the model was loaded
    once, not per task, and one backend call held the rows of both tasks."""
    from selfguide.backends import factory
    from selfguide.benchmark import runner as bench_runner

    loads, base_calls = [], []
    real_make_backend = factory.make_backend

    def make_backend(config):
        loads.append((config.name, config.adapter))
        backend = real_make_backend(config)
        if config.adapter is None:
            generate = backend.generate
            backend.generate = lambda requests: base_calls.append([json.dumps(r.messages) for r in requests]) or generate(requests)
        return backend

    monkeypatch.setattr(factory, "make_backend", make_backend)
    monkeypatch.setattr(bench_runner, "GATHER", 0.5)  # the tasks' first calls meet however busy the CPU is
    runs = {}
    for parallel in (1, 2):
        loads.clear()
        base_calls.clear()
        out = tmp_path / f"parallel-{parallel}"
        args = [
            "bench", "superni", "--model", str(tiny_model_dir), "--tasks", "task190,task036", "--limit", "3",
            "--grid", "temperature=1.0", "--grid", "input_length_filter=false", "--grid", "output_length_filter=false",
            "--grid", "epochs=1", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", "synth.inputs.rounds=2",
            "--set", "synth.outputs.n=3", "--set", "model.device=cpu", "--set", "model.dtype=float32",  # batch layout leaves float32 alone
            "--out", str(out), "--quiet", "--parallel", str(parallel),
        ]
        result = runner.invoke(app, args, env={"SELFGUIDE_SUPERNI": str(SUPERNI)})
        assert result.exit_code == 0, result.output
        datasets = {str(p.relative_to(out)): p.read_text() for p in out.rglob("dataset.jsonl")}
        summaries = {str(p.relative_to(out)): without_seconds(json.loads(p.read_text())) for p in out.rglob("synth*/summary.json")}
        runs[parallel] = without_seconds(json.loads((out / "results.json").read_text())), datasets, summaries

    assert runs[2] == runs[1]
    assert sum("synth-" in path and bool(rows) for path, rows in runs[1][1].items()) == 2  # each task's self-guide data
    assert len(loads) == len(set(loads)) == 3 and [adapter for _, adapter in loads].count(None) == 1  # the model, each task's adapter
    marks = ["sentence 1 and sentence 2", "write a topic word"]  # from task190's and task036's instructions
    assert any(all(any(mark in row for row in call) for mark in marks) for call in base_calls)


def test_the_first_error_of_tasks_at_once_stops_the_rest():
    """A failing task ends the run at once with its own error: the task still running is not waited
    for and tasks not started never start. At the --max-calls budget, the running task is waited for."""
    import contextlib
    from types import SimpleNamespace

    from selfguide import interruptible
    from selfguide.benchmark.runner import run_parallel
    from selfguide.config import RunConfig
    from selfguide.errors import SelfGuideError

    def fake_bench():
        bench = SimpleNamespace(base=RunConfig(), options=SimpleNamespace(parallel=2, executor="local"), dry_run=False, model=SimpleNamespace(producer=lambda gather: contextlib.nullcontext()))
        bench.part = lambda: contextlib.nullcontext(bench)
        return bench

    for error, waited in ((SelfGuideError("task b failed"), False), (BudgetExceeded("stopped at the --max-calls budget"), True)):
        release, started, finished = threading.Event(), [], []

        def work(part, name):
            started.append(name)
            if name == "b":
                time.sleep(0.2)
                raise error
            release.wait(10)  # the others run until released (or 10 s: a failing test ends)
            finished.append(name)

        began = time.monotonic()  # before the timer starts: a wait for it then lasts at least its 1 s
        threading.Timer(1.0, release.set).start()
        with pytest.raises(type(error), match=str(error)):
            run_parallel(fake_bench(), ["a", "b", "c", "d"], work)
        assert (time.monotonic() - began >= 1.0) == waited and ("a" in finished) == waited
        release.set()
        for thread in list(interruptible._work_threads):  # a later test's exit must not find them running
            thread.join(10)
        assert "d" not in started  # c may have started in b's thread before the cancel came


def test_a_bench_over_other_tasks_keeps_the_earlier_tasks_rows(tiny_model_dir, tmp_path):
    """Benching one more task into the same folder adds its rows to results.*; the earlier tasks'
    rows stay while the config, setting, eval split and limit are the same, and go when they differ."""
    out, setting = tmp_path / "b", "temperature=1.0,input_length_filter=false,output_length_filter=false,epochs=1"

    def bench_on(task: str, *extra: str) -> list[str]:
        args = bench_args(tiny_model_dir, out, "--setting", setting, "--baselines", "prompting", *extra)
        args[args.index("--tasks") + 1] = task
        result = runner.invoke(app, args, env={"SELFGUIDE_SUPERNI": str(SUPERNI)})
        assert result.exit_code == 0, result.output
        return sorted(json.loads((out / "results.json").read_text())["heldout"])

    assert bench_on("task1562") == ["task1562"]
    assert bench_on("task1345") == ["task1345", "task1562"]
    assert "| task1562 |" in (out / "results.md").read_text() and "| task1345 |" in (out / "results.md").read_text()
    assert bench_on("task1345", "--limit", "4") == ["task1345"]  # another eval size: the earlier rows are not comparable

"""`selfguide synthesize` end to end with the tiny local model: the accounting adds up, the files
are well-formed, and a run killed mid-annotation resumes without repeating a model call."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import SUPERNI, TINY_SYNTH

from selfguide import api
from selfguide.config import load_config

TINY = TINY_SYNTH


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("task", ["task190", "task1562"])
def test_synthesize_end_to_end(tiny_model_dir, tmp_path, task, monkeypatch):
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    config = load_config(None, TINY, {"task": task, "model.name": str(tiny_model_dir), "out": str(tmp_path / task)})
    result = api.synthesize(config, progress=False)
    synth = result.out_dir / "synth"
    summary = json.loads((synth / "summary.json").read_text())
    stages = {row["stage"]: row for row in summary["stages"]}
    for row in summary["stages"]:
        assert row["kept"] + sum(row["dropped"].values()) == row["total"], row
    candidates = read_jsonl(synth / "inputs.jsonl")
    annotations = read_jsonl(synth / "annotations.jsonl")
    dataset = read_jsonl(synth / "dataset.jsonl")
    drops = read_jsonl(synth / "drops.jsonl")
    assert stages["input_filter"]["total"] == len(candidates) == 20
    assert stages["vote"]["total"] == len(annotations) == stages["input_filter"]["kept"]
    assert stages["output_filter"]["total"] == 3 * len(annotations)
    assert len(drops) == sum(sum(row["dropped"].values()) for row in summary["stages"])
    assert summary["pairs"] == len(dataset)
    for row in dataset:
        assert set(row) == {"id", "input", "output", "provenance"} and row["input"] and row["output"]
    if task == "task190":
        assert summary["type"] == "classification" and "class_balance" in stages
        assert all(row["output"] in ("C", "N") for row in dataset)
        assert all(r["pseudo_label"] in ("C", "N") for r in candidates)
    assert summary["model_calls"]["calls"] == len(candidates) + len(annotations) + summary["self_label_accuracy"]["n"]
    assert (result.out_dir / "config.yaml").exists() and "rounds: 2" in (result.out_dir / "config.yaml").read_text()

    # The same command again: every call from the cache, the same dataset.
    again = api.synthesize(config, progress=False)
    assert again.summary["model_calls"]["calls"] == 0
    assert (synth / "dataset.jsonl").read_text() == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dataset)


def cached_calls(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def synthesize_command(tiny_model_dir: Path, out: Path) -> list[str]:
    args = ["synthesize", "task190", "--model", str(tiny_model_dir), "--out", str(out), "-q", "--set", "model.batch_size=1"]
    for item in TINY:
        args += ["--set", item]
    return [sys.executable, "-c", "from selfguide.cli import main; main()", *args]


def test_killed_run_resumes_without_repeating_calls(tiny_model_dir, tmp_path):
    env = {**os.environ, "SELFGUIDE_SUPERNI": str(SUPERNI), "HF_HUB_OFFLINE": "1"}
    # Uninterrupted reference run.
    reference = subprocess.run(synthesize_command(tiny_model_dir, tmp_path / "reference"), env=env, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr
    total_calls = json.loads((tmp_path / "reference" / "synth" / "summary.json").read_text())["model_calls"]["calls"]
    input_calls = 20
    assert total_calls > input_calls + 2

    # The same run, killed with SIGKILL once annotation is under way.
    out = tmp_path / "killed"
    db = out / "cache.sqlite"
    process = subprocess.Popen(synthesize_command(tiny_model_dir, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while cached_calls(db) < input_calls + 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = cached_calls(db)
    assert input_calls + 2 <= done_before < total_calls, "the kill did not land mid-annotation"
    assert not (out / "synth" / "dataset.jsonl").exists()

    resumed = subprocess.run(synthesize_command(tiny_model_dir, out), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "synth" / "summary.json").read_text())
    assert summary["model_calls"]["calls"] == total_calls - done_before  # nothing finished is redone
    assert summary["model_calls"]["cached"] >= done_before
    assert (out / "synth" / "dataset.jsonl").read_text() == (tmp_path / "reference" / "synth" / "dataset.jsonl").read_text()
    assert (out / "synth" / "drops.jsonl").read_text() == (tmp_path / "reference" / "synth" / "drops.jsonl").read_text()


def test_label_scoring_labels_classification_inputs_without_sampling(tiny_model_dir, tmp_path, monkeypatch):
    """The product default on an in-process model: every label scored once per input, no samples."""
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    overrides = [o for o in TINY if not o.startswith("synth.outputs.labeler")] + ["synth.self_label.items=4"]
    config = load_config(None, overrides, {"task": "task190", "model.name": str(tiny_model_dir), "out": str(tmp_path / "t")})
    result = api.synthesize(config, progress=False)
    synth = result.out_dir / "synth"
    annotations = read_jsonl(synth / "annotations.jsonl")
    assert annotations and all(a["samples"] == [] for a in annotations)
    for a in annotations:
        probs = a["vote"]["label_probs"]
        assert set(probs) == {"C", "N"} and abs(sum(probs.values()) - 1) < 1e-6
        assert (a["status"] == "kept") == (max(probs.values()) >= 0.5)
    assert {row["output"] for row in read_jsonl(synth / "dataset.jsonl")} <= {"C", "N"}
    summary = json.loads((synth / "summary.json").read_text())
    assert summary["self_label_accuracy"]["labeler"] == "score" and summary["self_label_accuracy"]["n"] == 4
    calls = summary["model_calls"]
    assert calls["calls"] == 20 + len(annotations) + 4  # inputs, one scoring call per kept input, the diagnostic


def test_a_stopped_invocations_calls_count_in_the_finished_summary(tiny_model_dir, tmp_path, monkeypatch):
    """An invocation stopped mid-synthesis (here at the --max-calls budget, as Ctrl-C would) writes
    no summary; the invocation that finishes counts its calls too, as invocations.jsonl does."""
    from selfguide.errors import BudgetExceeded
    from selfguide.ledger import read_invocations

    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    config = load_config(None, TINY, {"task": "task1562", "model.name": str(tiny_model_dir), "out": str(tmp_path / "run")})
    with pytest.raises(BudgetExceeded):
        api.synthesize(config, progress=False, max_calls=5)
    synth = tmp_path / "run" / "synth"
    assert not (synth / "summary.json").exists()
    api.synthesize(config, progress=False)
    summary = json.loads((synth / "summary.json").read_text())
    stopped, finished = summary["model_calls_by_invocation"]
    assert stopped["calls"] == 5 and finished["calls"] > 0
    ledger = read_invocations(tmp_path / "run")
    assert summary["model_calls_total"]["calls"] == sum(row["model_calls"]["calls"] for row in ledger) == 5 + finished["calls"]
    assert not (synth / "calls_by_invocation.jsonl").exists()  # the summary holds those calls now
    api.synthesize(config, progress=False)  # a third invocation, all from the cache, counts nothing twice
    again = json.loads((synth / "summary.json").read_text())
    assert [row["calls"] for row in again["model_calls_by_invocation"]] == [5, finished["calls"], 0]

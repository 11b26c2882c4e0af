"""Pipelined SELF-GUIDE rounds (each round labelled while the next ones are written) make the files
of serial rounds, byte for byte; `pool_lag` overlaps the writing too and still adds up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import SUPERNI

from selfguide import api
from selfguide.config import load_config
from selfguide.plan import total

SMALL = [
    "synth.inputs.rounds=3",
    "synth.inputs.prompts_per_round=4",
    "synth.inputs.max_new_tokens=16",
    "synth.input_filters.length_filter=false",
    "synth.input_filters.require_demo_fields=false",
    "synth.outputs.n=3",
    "synth.outputs.max_new_tokens=4",
    "synth.self_label.items=3",
]
FILES = ["inputs.jsonl", "annotations.jsonl", "dataset.jsonl", "drops.jsonl"]


def synthesize(task: str, out: Path, tiny_model_dir: Path, extra: list[str]) -> dict:
    given = {setting.split("=")[0] for setting in extra}  # each setting once: `extra` replaces SMALL's
    small = [setting for setting in SMALL if setting.split("=")[0] not in given]
    config = load_config(None, small + extra, {"task": task, "model.name": str(tiny_model_dir), "out": str(out)})
    return api.synthesize(config, progress=False).summary


def counts(summary):
    """The summary without timings."""
    if isinstance(summary, dict):
        return {k: counts(v) for k, v in summary.items() if k != "seconds"}
    return [counts(v) for v in summary] if isinstance(summary, list) else summary


@pytest.mark.parametrize(
    ("task", "labeler"),
    [("task036", "sample"), ("task190", "sample"), ("task190", "score")],
)
def test_pipelined_rounds_write_the_files_of_serial_rounds(tiny_model_dir, tmp_path, monkeypatch, task, labeler):
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    extra = [f"synth.outputs.labeler={labeler}"]
    serial = synthesize(task, tmp_path / "serial", tiny_model_dir, extra + ["synth.pipeline=false"])
    piped = synthesize(task, tmp_path / "piped", tiny_model_dir, extra + ["synth.pipeline=true"])
    assert counts(piped) == counts(serial)
    assert serial["model_calls"]["calls"] > 12  # the annotation ran, not only the inputs
    for name in FILES:
        assert (tmp_path / "piped" / "synth" / name).read_bytes() == (tmp_path / "serial" / "synth" / name).read_bytes(), name


def test_pool_lag_runs_end_to_end_and_adds_up(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    out = tmp_path / "lag"
    summary = synthesize("task036", out, tiny_model_dir, ["synth.inputs.pool_lag=1", "synth.outputs.labeler=sample"])
    synth = out / "synth"
    rows = {name: [json.loads(line) for line in (synth / name).read_text().splitlines()] for name in FILES}
    candidates, annotations = rows["inputs.jsonl"], rows["annotations.jsonl"]
    assert [r["id"] for r in candidates] == [f"r{r:03d}s{s:02d}" for r in range(3) for s in range(4)]
    stages = {row["stage"]: row for row in summary["stages"]}
    for row in summary["stages"]:
        assert row["kept"] + sum(row["dropped"].values()) == row["total"], row
    assert stages["input_filter"]["total"] == len(candidates) == 12
    assert stages["vote"]["total"] == len(annotations) == stages["input_filter"]["kept"]
    assert [a["input_id"] for a in annotations] == [r["id"] for r in candidates if r["status"] == "kept"]
    assert len(rows["drops.jsonl"]) == sum(sum(row["dropped"].values()) for row in summary["stages"])
    assert summary["pairs"] == len(rows["dataset.jsonl"])
    calls = summary["model_calls"]["calls"]
    assert calls == len(candidates) + len(annotations) + summary["self_label_accuracy"]["n"]

    # The dry run's count is the calls made, and a rerun makes none and writes the same data.
    config = load_config(None, SMALL + ["synth.inputs.pool_lag=1", "synth.outputs.labeler=sample"], {"task": "task036", "model.name": str(tiny_model_dir), "out": str(out)})
    planned = total(api.plan(config))
    assert planned.at_least == planned.at_most == calls
    again = api.synthesize(config, progress=False)
    assert again.summary["model_calls"]["calls"] == 0
    assert [json.loads(line) for line in (synth / "dataset.jsonl").read_text().splitlines()] == rows["dataset.jsonl"]


def test_pipelined_run_keeps_to_the_budget_and_resumes_to_the_same_files(tiny_model_dir, tmp_path, monkeypatch):
    """Two threads share one --max-calls budget: together they never pass it, and the rerun ends
    with the files of an uninterrupted serial run."""
    import sqlite3

    from selfguide.errors import BudgetExceeded

    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    extra = ["synth.outputs.labeler=sample"]
    synthesize("task036", tmp_path / "serial", tiny_model_dir, extra + ["synth.pipeline=false"])
    config = load_config(None, SMALL + extra + ["synth.pipeline=true"], {"task": "task036", "model.name": str(tiny_model_dir), "out": str(tmp_path / "piped")})
    for budget in (7, 9):
        with pytest.raises(BudgetExceeded):
            api.synthesize(config, progress=False, max_calls=budget)
    with sqlite3.connect(tmp_path / "piped" / "cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 7 + 9
    api.synthesize(config, progress=False)
    for name in FILES:
        assert (tmp_path / "piped" / "synth" / name).read_bytes() == (tmp_path / "serial" / "synth" / name).read_bytes(), name


def test_a_rounds_labelling_and_the_next_rounds_writing_share_backend_calls(tiny_model_dir, tmp_path, monkeypatch):
    """The writing and labelling threads hand their calls in together: some backend calls hold
    both input prompts (16 new tokens) and labelling prompts (4), and the files are still those
    of serial rounds."""
    from selfguide.backends.hf import HFBackend

    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    calls: list[set[int]] = []
    original = HFBackend.generate

    def spy(self, requests):
        calls.append({r.params.max_new_tokens for r in requests})
        return original(self, requests)

    monkeypatch.setattr(HFBackend, "generate", spy)
    extra = ["synth.outputs.labeler=sample", "synth.inputs.rounds=4", "synth.pipeline_gather_ms=500"]
    synthesize("task036", tmp_path / "serial", tiny_model_dir, extra + ["synth.pipeline=false"])
    assert all(len(kinds) == 1 for kinds in calls)
    calls.clear()
    synthesize("task036", tmp_path / "piped", tiny_model_dir, extra + ["synth.pipeline=true"])
    assert sum(kinds == {16, 4} for kinds in calls) >= 2, calls
    for name in FILES:
        assert (tmp_path / "piped" / "synth" / name).read_bytes() == (tmp_path / "serial" / "synth" / name).read_bytes(), name


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_ctrl_c_or_an_error_does_not_wait_for_the_labelling_in_progress(tiny_model_dir, tmp_path, monkeypatch, stop):
    """Round 0's labelling hangs; Ctrl-C (or an error) while round 1 is written stops the run now."""
    import threading
    import time

    from selfguide.methods import self_guide

    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    entered, release = threading.Event(), threading.Event()

    def hanging_annotate(*args, **kwargs):
        entered.set()
        release.wait(60)
        return []

    def append_jsonl(path, rows):
        if rows[0]["round"] == 1:
            raise stop("stop")

    monkeypatch.setattr(self_guide, "annotate", hanging_annotate)
    monkeypatch.setattr(self_guide, "append_jsonl", append_jsonl)
    started = time.perf_counter()
    try:
        with pytest.raises(stop):
            synthesize("task036", tmp_path / "out", tiny_model_dir, ["synth.outputs.labeler=sample", "synth.pipeline=true"])
        assert entered.is_set() and time.perf_counter() - started < 30
    finally:
        release.set()

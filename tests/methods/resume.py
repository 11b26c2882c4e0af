"""Kill and resume, shared by the general-purpose methods' tests: a synthesis stopped by a call
budget part way, then resumed, must write the same files as one never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguide import layout
from selfguide.backends.cache import CallCache, CallStats
from selfguide.backends.factory import ModelConfig, cached_model
from selfguide.errors import BudgetExceeded
from selfguide.io import read_jsonl
from selfguide.methods import MethodConfig, MethodContext, get_method, synthesize

STOP_AFTER = 3  # model calls the stopped run makes


def kill_and_resume(tmp_path: Path, model_dir: Path, method: str, config: MethodConfig, seed: int, files: list[str]) -> tuple[dict, dict]:
    """Run `method` whole; run it again stopped after STOP_AFTER calls, check that its finished
    instructions were written, resume it, and check `files` match the whole run's. Returns both
    summaries."""

    def run(folder: str, max_calls: int | None) -> dict:
        cache = CallCache(tmp_path / f"{folder}.sqlite")
        model = cached_model(ModelConfig(name=str(model_dir)), cache, max_calls=max_calls, progress=False, stats=CallStats())
        ctx = MethodContext(task=None, model=model, out_dir=tmp_path / folder / layout.SYNTH, seed=seed, progress=False)
        try:
            return synthesize(get_method(method), ctx, config)
        finally:
            model.close()
            cache.close()

    whole = run("whole", None)
    with pytest.raises(BudgetExceeded):
        run("resumed", STOP_AFTER)
    partial = read_jsonl(tmp_path / "resumed" / layout.SYNTH / layout.INSTRUCTIONS)
    assert partial and partial == read_jsonl(tmp_path / "whole" / layout.SYNTH / layout.INSTRUCTIONS)[: len(partial)]  # finished rounds were written
    resumed = run("resumed", None)
    for name in files:
        assert (tmp_path / "resumed" / layout.SYNTH / name).read_text() == (tmp_path / "whole" / layout.SYNTH / name).read_text(), name
    assert resumed["stages"] == whole["stages"]
    # The resumed run redid none of the calls the stopped one made.
    assert resumed["model_calls"]["calls"] == whole["model_calls"]["calls"] - STOP_AFTER and resumed["model_calls"]["cached"] == STOP_AFTER
    return whole, resumed

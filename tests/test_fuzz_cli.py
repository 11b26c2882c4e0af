"""The CLI fuzzer (tests/fuzz_cli.py) on a fixed-seed slice: every generated case is exit 0, or
exit 2 with one clear line, and writes nothing outside its --out. The longer run is
`python bench/fuzz_cli.py --cases N --seed S`."""

from __future__ import annotations

import pytest
from tests.conftest import SUPERNI
from tests.fuzz_cli import fuzz

from selfguide import model_source


@pytest.fixture
def fuzz_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    monkeypatch.setenv("SELFGUIDE_SELF_INSTRUCT", str(SUPERNI.parent / "self_instruct"))
    monkeypatch.setenv("SELFGUIDE_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.setattr(model_source, "installed_default_gguf", lambda: None)
    return tmp_path


@pytest.mark.parametrize("seed, count", [(0, 100)])
def test_cli_fuzz_fast_slice(seed, count, fuzz_env, tiny_model_dir, monkeypatch):
    outcomes, problems = fuzz(seed, count, fuzz_env, tiny_model_dir, monkeypatch)
    assert not problems, "\n".join(problems)
    assert sum(outcomes.values()) == count
    assert {code for _, code in outcomes} == {0, 2}  # the grid reaches both valid and refused input


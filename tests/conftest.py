"""Shared fixtures: a tiny local model (built once per session, never downloaded) and SuperNI paths."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Converted model files (selfguide.model_source) go to a temporary folder, never the user's cache.
os.environ.setdefault("SELFGUIDE_CACHE", tempfile.mkdtemp(prefix="selfguide-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
SUPERNI = Path(os.environ.get("SELFGUIDE_SUPERNI", REPO.parent / "shared" / "superni"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from selfguide.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def superni_dir() -> Path:
    if not (SUPERNI / "tasks").is_dir():
        pytest.fail(f"SuperNI data not found at {SUPERNI}: set SELFGUIDE_SUPERNI or put ../shared beside the repo")
    return SUPERNI


def superni_task_path(name: str) -> Path:
    matches = sorted((SUPERNI / "tasks").glob(f"{name}_*.json"))
    assert matches, f"{name} not in {SUPERNI}/tasks"
    return matches[0]


def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """The real `selfguide` entry point in this process: (exit code, stdout, stderr)."""
    from selfguide.cli import main

    monkeypatch.setattr(sys, "argv", ["selfguide", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err

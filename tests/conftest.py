"""Shared fixtures: a tiny local model (built once per session, never downloaded) and SuperNI paths."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Converted model files (selfguide.model_source) go to a temporary folder, never the user's cache,
# removed when the session ends.
if "SELFGUIDE_CACHE" not in os.environ:
    os.environ["SELFGUIDE_CACHE"] = tempfile.mkdtemp(prefix="selfguide-test-cache-")
    atexit.register(shutil.rmtree, os.environ["SELFGUIDE_CACHE"], True)

REPO = Path(__file__).resolve().parents[1]
SUPERNI = Path(os.environ.get("SELFGUIDE_SUPERNI", REPO.parent / "shared" / "superni"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from selfguide.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """The tiny model's tokenizer, loaded the ordinary way."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


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


def without_seconds(value):
    """Results without their wall times, the one thing two runs of the same work may differ in."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


# A datastore of six SuperNI task files (7,804 rows), built once per test session: three NLI tasks
# (ANLI r1, e-SNLI, SICK relations), a QASC fact task, disfluent-to-fluent questions, and SICK NLI
# (task1612, whose eval items are among task1615's rows).
# A SELF-GUIDE synthesis on a tiny model in seconds: two rounds, a few short samples, no length filters.
TINY_SYNTH = [
    "synth.inputs.rounds=2",
    "synth.inputs.max_new_tokens=16",
    "synth.input_filters.length_filter=false",
    "synth.input_filters.require_demo_fields=false",
    "synth.outputs.n=3",
    "synth.outputs.max_new_tokens=4",
    "synth.outputs.labeler=sample",
]
STORE_TASKS = ["task1385", "task642", "task036", "task1622", "task1612", "task1615"]


@pytest.fixture(scope="session")
def superni_store(tmp_path_factory, superni_dir):
    from selfguide.datastore.sources import SuperNISource
    from selfguide.datastore.store import DatastoreConfig, open_datastore

    config = DatastoreConfig(sources=[SuperNISource(root=str(superni_dir), tasks=STORE_TASKS)], cache_dir=str(tmp_path_factory.mktemp("datastores")))
    return open_datastore(config), config


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray, started once per session (Ray has no local mode): 2 CPUs, no GPU, a small
    object store. Workers inherit this environment: the SuperNI data, and no network."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("SELFGUIDE_SUPERNI", str(SUPERNI))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    context = ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()

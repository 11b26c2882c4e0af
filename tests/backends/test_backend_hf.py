"""HFBackend on the tiny local model: batching, per-request reproducible sampling, stop strings,
shared prefill, plain prompt format, load errors. CPU, a few seconds in all."""

from __future__ import annotations

import re

import pytest
import torch

from selfguide.backends.base import Completion, Request, SamplingParams
from selfguide.backends.chat import encode_prompt
from selfguide.backends.hf import HFBackend, fingerprint, row_seed
from selfguide.errors import SelfGuideError

NEW = 12


def msgs(text: str, system: str = "Answer the question.") -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def req(text: str, seed: int = 0, n: int = 1, temperature: float = 1.0, **params) -> Request:
    params.setdefault("max_new_tokens", NEW)
    return Request(msgs(text), SamplingParams(temperature=temperature, n=n, seed=seed, **params))


PROMPTS = [
    "the cat",
    "a much longer question about the world and the people who live in it for many years",
    "yes",
    "is this premise a support or a contradiction of the hypothesis",
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    b = HFBackend(str(tiny_model_dir), device="cpu")
    yield b
    b.close()


def run(backend, requests) -> dict[int, list[Completion]]:
    out = dict(backend.generate(requests))
    assert sorted(out) == list(range(len(requests)))
    return out


def texts(completions: list[Completion]) -> list[str]:
    return [c.text for c in completions]


def test_batch_returns_n_completions_with_counts(backend):
    requests = [req(p, seed=i, n=i + 1) for i, p in enumerate(PROMPTS)]
    out = run(backend, requests)
    for i, request in enumerate(requests):
        completions = out[i]
        assert len(completions) == request.params.n
        prompt_len = len(encode_prompt(backend.tokenizer, request.messages))
        for c in completions:
            assert isinstance(c.text, str)
            assert c.prompt_tokens == prompt_len
            assert 1 <= c.completion_tokens <= NEW
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert c.completion_tokens == NEW
            assert "<|end|>" not in c.text and "<pad>" not in c.text
    assert backend.info.backend == "hf"
    assert backend.info.extra == {"dtype": "float32", "device": "cpu", "adapter": None}


def test_same_request_alone_or_in_any_batch_gives_same_samples(backend):
    target = req(PROMPTS[0], seed=7, n=4, top_k=50, top_p=0.95)
    alone = run(backend, [target])[0]
    others = [req(p, seed=100 + i, n=2, top_k=50, top_p=0.95) for i, p in enumerate(PROMPTS[1:])]
    mixed = run(backend, [*others, target])[len(others)]
    reordered = run(backend, [others[2], target, others[0], others[1]])[1]
    small_batches = HFBackend(backend.info.model, device="cpu", batch_size=3)
    try:
        split = run(small_batches, [others[1], target, others[0]])[1]  # its 4 rows span two batches
    finally:
        small_batches.close()
    assert texts(alone) == texts(mixed) == texts(reordered) == texts(split)
    assert [c.completion_tokens for c in alone] == [c.completion_tokens for c in mixed]
    # the n samples differ from each other, and another seed gives other samples
    assert len(set(texts(alone))) > 1
    other_seed = run(backend, [req(PROMPTS[0], seed=8, n=4, top_k=50, top_p=0.95)])[0]
    assert texts(other_seed) != texts(alone)
    # sample j of an n-sample request is the same as that sample of a smaller request
    assert texts(run(backend, [req(PROMPTS[0], seed=7, n=1, top_k=50, top_p=0.95)])[0]) == texts(alone)[:1]


def test_global_rng_is_neither_used_nor_touched(backend):
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = run(backend, [req(PROMPTS[1], seed=3, n=3)])[0]
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(999)
    assert texts(run(backend, [req(PROMPTS[1], seed=3, n=3)])[0]) == texts(first)


def test_greedy_matches_plain_generate(backend):
    for prompt in PROMPTS:
        ids = encode_prompt(backend.tokenizer, msgs(prompt))
        with torch.inference_mode():
            plain = backend.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=NEW,
            )[0, len(ids) :].tolist()
        eos = backend.tokenizer.eos_token_id
        if eos in plain:
            plain = plain[: plain.index(eos)]
        expected = backend.tokenizer.decode(plain, skip_special_tokens=True)
        got = run(backend, [req(prompt, temperature=0.0, n=2), req("filler " * 5, temperature=0.0)])[0]
        assert texts(got) == [expected, expected]
        # top-k 1 and a tiny top-p are greedy too
        for params in ({"top_k": 1}, {"top_p": 1e-9}):
            assert texts(run(backend, [req(prompt, seed=5, **params)])[0]) == [expected]


def test_stop_strings_truncate(backend):
    free = None
    for prompt in PROMPTS:
        [completion] = run(backend, [req(prompt, temperature=0.0, max_new_tokens=16)])[0]
        match = re.search(r"[A-Za-z]{2,}", completion.text[1:])
        if match:
            free, stop, chosen = completion, match.group(0), prompt
            break
    assert free is not None, "the tiny model wrote no letters: pick other prompts"
    [cut] = run(backend, [req(chosen, temperature=0.0, max_new_tokens=16, stop=("never-produced", stop))])[0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens <= free.completion_tokens


def test_eos_ends_a_sample(backend):
    out = run(backend, [req(p, seed=i, n=10, max_new_tokens=40) for i, p in enumerate(PROMPTS[:3])])
    ended = [c for cs in out.values() for c in cs if c.finish_reason == "stop"]
    assert ended, "no sample reached EOS: raise n or max_new_tokens"
    for c in ended:
        assert 1 <= c.completion_tokens < 40 and "<|end|>" not in c.text
    assert all(c.completion_tokens == 40 for cs in out.values() for c in cs if c.finish_reason == "length")


def test_shared_prefill_gives_same_results_as_separate_rows(tiny_model_dir, backend):
    requests = [req(p, seed=20 + i, n=5) for i, p in enumerate(PROMPTS)]
    requests.append(req(PROMPTS[0], seed=99, n=3))  # same prompt as request 0: shares its prefill
    shared = run(backend, requests)
    naive = HFBackend(str(tiny_model_dir), device="cpu", share_prefill=False)
    try:
        separate = run(naive, requests)
        one_by_one = {i: next(iter(dict(naive.generate([r])).values())) for i, r in enumerate(requests)}
    finally:
        naive.close()
    assert {i: texts(c) for i, c in shared.items()} == {i: texts(c) for i, c in separate.items()}
    assert {i: texts(c) for i, c in shared.items()} == {i: texts(c) for i, c in one_by_one.items()}


def test_prefill_runs_once_per_distinct_prompt(tiny_model_dir):
    calls: list[tuple[int, int]] = []

    def spy(module, args, kwargs):
        ids = kwargs.get("input_ids")
        calls.append(tuple(ids.shape))

    backend = HFBackend(str(tiny_model_dir), device="cpu", reuse_prefix=False, share_samples=False)
    width = len(encode_prompt(backend.tokenizer, msgs(PROMPTS[1])))
    handle = backend.model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        run(backend, [req(PROMPTS[1], seed=1, n=6), req(PROMPTS[0], seed=2, n=4)])
    finally:
        handle.remove()
        backend.close()
    assert calls[0] == (2, width - 1)  # the two prompts once each, all but their last token
    assert calls[1] == (10, 1)  # then every row continues from the shared cache with one token
    assert all(shape[1] == 1 for shape in calls[1:])


def test_results_are_yielded_as_soon_as_their_rows_end(tiny_model_dir):
    b = HFBackend(str(tiny_model_dir), device="cpu", batch_size=2)
    waves = []
    original = b.scheduler.start_wave

    def counting(wave, settings):
        waves.append(len(wave))
        return original(wave, settings)

    b.scheduler.start_wave = counting
    try:
        stream = b.generate([req(p, seed=i, n=2) for i, p in enumerate(PROMPTS)])
        first_index, first = next(stream)
        assert len(first) == 2 and waves == [2]  # yielded before the other rows started
        rest = dict(stream)
        assert waves == [2, 2, 2, 2] and len(rest) == 3 and first_index not in rest
    finally:
        b.close()


def test_isolated_requests_never_share_a_batch(tiny_model_dir, backend):
    b = HFBackend(str(tiny_model_dir), device="cpu", isolate_requests=True, batch_size=4)
    seen = []
    original = b.scheduler.start_wave

    def spy(wave, settings):
        seen.append({row.request for row in wave})
        return original(wave, settings)

    b.scheduler.start_wave = spy
    try:
        requests = [req(p, seed=i, n=3) for i, p in enumerate(PROMPTS)] + [req(PROMPTS[0], seed=9, n=6)]
        isolated = run(b, requests)
    finally:
        b.close()
    assert all(len(requests_in_batch) == 1 for requests_in_batch in seen)
    assert len(seen) == 6  # four requests of 3 rows, and 6 rows in batches of 4
    mixed = run(backend, requests)
    assert {i: texts(c) for i, c in isolated.items()} == {i: texts(c) for i, c in mixed.items()}


def test_mixed_sampling_params_and_edge_counts(backend):
    requests = [
        req(PROMPTS[0], seed=1, n=2, temperature=0.7),
        req(PROMPTS[1], seed=1, n=2, temperature=0.0),
        req(PROMPTS[2], seed=1, n=0),
        req(PROMPTS[3], seed=1, n=2, max_new_tokens=0),
        req(PROMPTS[0], seed=1, n=1, max_new_tokens=3),
    ]
    out = run(backend, requests)
    assert len(out[0]) == 2 and len(out[1]) == 2 and out[2] == []
    assert [c.text for c in out[3]] == ["", ""] and out[3][0].finish_reason == "length"
    assert out[4][0].completion_tokens <= 3
    with pytest.raises(SelfGuideError, match="top_p"):
        run(backend, [req(PROMPTS[0], top_p=0.0)])


def test_model_without_chat_template_uses_plain_format(tmp_path):
    from selfguide.tinymodel import build_tiny_model

    folder = build_tiny_model(tmp_path / "plain", chat_template=False)
    b = HFBackend(str(folder), device="cpu")
    try:
        assert not b.tokenizer.chat_template
        ids = encode_prompt(b.tokenizer, msgs(PROMPTS[0]))
        assert b.tokenizer.decode(ids).rstrip().endswith("### Response:")
        out = run(b, [req(PROMPTS[0], seed=1, n=2), req(PROMPTS[1], temperature=0.0)])
        assert len(out[0]) == 2 and out[0][0].prompt_tokens == len(ids)
        assert all("\n### " not in c.text for cs in out.values() for c in cs)
    finally:
        b.close()


def test_missing_model_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(SelfGuideError, match=re.escape(str(missing))):
        HFBackend(str(missing), device="cpu")
    with pytest.raises(SelfGuideError, match="no-such-org/no-such-model-xyz"):
        HFBackend("no-such-org/no-such-model-xyz", device="cpu")


def test_adapter_loads_and_changes_fingerprint(tiny_model_dir, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # not a no-op
    lora = peft.get_peft_model(base, config).eval()
    lora.save_pretrained(tmp_path / "adapter")
    b = HFBackend(str(tiny_model_dir), adapter=str(tmp_path / "adapter"), device="cpu")
    try:
        assert b.info.fingerprint != fingerprint(str(tiny_model_dir))[0]
        assert b.info.extra["adapter"] == str(tmp_path / "adapter")
        out = run(b, [req(PROMPTS[0], seed=4, n=2)])
        assert len(out[0]) == 2
        # Folded into the weights for decoding: the adapter's outputs, without its layers.
        assert not any("lora" in name for name, _ in b.model.named_parameters())
        assert all(p.requires_grad for p in b.model.parameters())  # frozen weights take a slow CPU path
        ids = torch.tensor([encode_prompt(b.tokenizer, msgs(PROMPTS[0]))])
        with torch.no_grad():
            merged, adapted = b.model(ids).logits, lora(input_ids=ids).logits
            plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
        assert torch.allclose(merged, adapted, atol=1e-5) and not torch.allclose(merged, plain, atol=1e-3)
    finally:
        b.close()
    with pytest.raises(SelfGuideError, match="missing-adapter"):
        HFBackend(str(tiny_model_dir), adapter=str(tmp_path / "missing-adapter"), device="cpu")


def test_fingerprint_follows_the_weights(tiny_model_dir, tmp_path):
    """A copy of the weights has the copy's fingerprint; changing one file of it changes it."""
    import shutil

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert fingerprint(str(copy))[0] == fingerprint(str(tiny_model_dir))[0]
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert fingerprint(str(copy))[0] != fingerprint(str(tiny_model_dir))[0]
    assert fingerprint("org/some-model")[0] != fingerprint("org/other-model")[0]


def test_row_seeds_are_pinned_and_distinct():
    """Seeds are part of every sampled call's identity: pinned values (a change re-samples every
    cached call), and no two (seed, sample) pairs of a run share one."""
    assert row_seed(1, 0) == 1644556984139883890 and row_seed(0, 1) == 4061882863729004634
    seeds = {row_seed(seed, sample) for seed in range(50) for sample in range(20)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)


def test_close_frees_the_model(tiny_model_dir):
    b = HFBackend(str(tiny_model_dir), device="cpu")
    b.close()
    b.close()
    assert b.model is None
    with pytest.raises(SelfGuideError, match="closed"):
        list(b.generate([req(PROMPTS[0])]))


def test_seeded_sampler_draws_from_the_filtered_distribution():
    from selfguide.backends.hf import _make_sampler

    rows, logits = 20000, torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    keys = torch.tensor([[row_seed(s, 0) & 0xFFFFFFFF, row_seed(s, 0) >> 32] for s in range(rows)])
    scores = logits.expand(rows, -1).clone()
    ids = torch.zeros(rows, 4, dtype=torch.long)

    def draw(temperature, top_k=0, top_p=1.0, step=0):
        sampler = _make_sampler(torch, keys, 4 - step, temperature, top_k, top_p, torch.float64)
        out = sampler(ids, scores)
        assert bool((out.isfinite().sum(-1) == 1).all())
        return out.argmax(-1)

    def frequencies(*args, **kwargs):
        return torch.bincount(draw(*args, **kwargs), minlength=len(logits)).double() / rows

    def expected(temperature, keep=None):
        weights = torch.softmax(logits.double() / temperature, -1)
        if keep is not None:
            weights[keep:] = 0
        return weights / weights.sum()

    assert torch.allclose(frequencies(1.0), expected(1.0), atol=0.015)
    assert torch.allclose(frequencies(0.5), expected(0.5), atol=0.015)
    assert torch.allclose(frequencies(1.0, top_k=2), expected(1.0, keep=2), atol=0.015)
    # top-p 0.7 keeps the smallest head with mass >= 0.7: here the first two tokens (0.57, 0.21)
    assert torch.allclose(frequencies(1.0, top_p=0.7), expected(1.0, keep=2), atol=0.015)
    # another step draws fresh noise with the same law: rows agree only as often as chance says
    assert torch.allclose(frequencies(1.0, step=3), expected(1.0), atol=0.015)
    agree = (draw(1.0) == draw(1.0, step=3)).double().mean()
    assert abs(agree - (expected(1.0) ** 2).sum()) < 0.02
    assert torch.equal(draw(1.0), draw(1.0))


def test_dropping_finished_rows_gives_the_same_tokens_as_generate(backend):
    """Rows that end early (EOS, a stop string) leave the batch; the others must not notice."""
    [probe] = run(backend, [req(PROMPTS[1], temperature=0.0, max_new_tokens=16)])[0]
    stop = next(m.group(0) for m in [re.search(r"[A-Za-z]{2,}", probe.text[1:])] if m)
    requests = [req(p, seed=i, n=6, max_new_tokens=40) for i, p in enumerate(PROMPTS)]
    requests += [req(p, temperature=0.0, max_new_tokens=16, stop=(stop,)) for p in PROMPTS]
    requests += [req(PROMPTS[1], seed=7, n=4, max_new_tokens=24, stop=(stop, "e"))]
    backend.drop_finished = True
    dropping = run(backend, requests)
    backend.drop_finished = False
    try:
        plain = run(backend, requests)
    finally:
        backend.drop_finished = True
    reasons = {c.finish_reason for cs in dropping.values() for c in cs}
    assert reasons == {"stop", "length"}, "the mix must end rows early and at the limit"
    assert {i: [c.as_dict() for c in cs] for i, cs in dropping.items()} == {i: [c.as_dict() for c in cs] for i, cs in plain.items()}


def test_sampler_hashes_only_contenders_and_picks_as_over_the_whole_vocabulary():
    from selfguide.backends.hf import _make_sampler, gumbel_noise

    rows, vocab = 64, 4000
    generator = torch.Generator().manual_seed(0)
    keys = torch.tensor([[row_seed(s, 1) & 0xFFFFFFFF, row_seed(s, 1) >> 32] for s in range(rows)])
    ids = torch.zeros(rows, 7, dtype=torch.long)
    for spread, temperature, top_k, top_p in [(8.0, 1.0, 0, 1.0), (8.0, 0.2, 10, 1.0), (2.0, 1.0, 40, 1.0), (8.0, 0.7, 0, 0.9)]:
        scores = torch.randn(rows, vocab, generator=generator) * spread
        scores[:, 5] = scores[:, 9] = scores.max() + 1.0  # a tie between two ids for the top
        picked = _make_sampler(torch, keys, 4, temperature, top_k, top_p, torch.float64)(ids, scores).argmax(-1)
        logits = scores.double() / temperature
        if top_k:
            logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[:, -1:], float("-inf"))
        if top_p < 1.0:
            probs = torch.softmax(logits, -1)
            sorted_probs, index = torch.sort(probs, dim=-1, descending=True, stable=True)
            drop = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index, sorted_probs.cumsum(-1) - sorted_probs >= top_p)
            logits = logits.masked_fill(drop, float("-inf"))
        expected = torch.argmax(logits + gumbel_noise(torch, keys, 3, vocab, torch.float64), -1)
        assert torch.equal(picked, expected), (spread, temperature, top_k, top_p)


def test_requests_with_different_settings_share_batches_and_get_their_separate_results(tiny_model_dir, backend):
    """Rows carry their own temperature, top-k, top-p, token limit and stop strings: one batch
    holds them all (as merged callers send them), and each request gets exactly what a call of
    its setting alone gives."""
    [probe] = run(backend, [req(PROMPTS[1], temperature=0.0, max_new_tokens=16)])[0]
    stop = next(m.group(0) for m in [re.search(r"[A-Za-z]{2,}", probe.text[1:])] if m)
    settings = [
        {"temperature": 0.0, "max_new_tokens": 16},
        {"temperature": 0.0, "max_new_tokens": 6, "stop": (stop,)},
        {"temperature": 1.0, "max_new_tokens": 20},
        {"temperature": 0.7, "top_k": 5, "max_new_tokens": 9},
        {"temperature": 1.3, "top_p": 0.8, "max_new_tokens": 14, "stop": (stop, "e")},
    ]
    requests = [req(p, seed=10 * s + i, n=3, **kw) for s, kw in enumerate(settings) for i, p in enumerate(PROMPTS)]
    b = HFBackend(str(tiny_model_dir), device="cpu")
    mixed_batches = []
    original = b.scheduler.start_wave

    def spy(wave, settings):
        mixed_batches.append(len({settings[row.request] for row in wave}) > 1)
        return original(wave, settings)

    b.scheduler.start_wave = spy
    try:
        together = run(b, requests)
    finally:
        b.close()
    assert mixed_batches == [True]
    apart = {}
    for s in range(len(settings)):
        group = list(range(s * len(PROMPTS), (s + 1) * len(PROMPTS)))
        apart.update({group[k]: cs for k, cs in run(backend, [requests[i] for i in group]).items()})
    assert {c.finish_reason for cs in together.values() for c in cs} == {"stop", "length"}
    assert {i: [c.as_dict() for c in cs] for i, cs in together.items()} == {i: [c.as_dict() for c in cs] for i, cs in apart.items()}

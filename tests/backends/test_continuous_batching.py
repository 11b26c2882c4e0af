"""Continuous batching in the hf backend: rows that wait join a batch that is still decoding, the
KV cache decodes in place, and none of it changes a single token. Tiny local model, CPU."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from selfguide.backends import decode_cache
from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.hf import HFBackend

PROMPTS = [
    "the cat",
    "a much longer question about the world and the people who live in it for many years",
    "yes",
    "is this premise a support or a contradiction of the hypothesis",
]


def req(text: str, seed: int = 0, n: int = 1, temperature: float = 1.0, **params) -> Request:
    messages = [{"role": "system", "content": "Answer the question."}, {"role": "user", "content": text}]
    return Request(messages, SamplingParams(temperature=temperature, n=n, seed=seed, **params))


def results(backend: HFBackend, requests: list[Request]) -> dict[int, list[dict]]:
    return {i: [c.as_dict() for c in cs] for i, cs in backend.generate(requests)}


@pytest.fixture(scope="module")
def stop(tiny_model_dir) -> str:
    """A string the tiny model writes early for PROMPTS[1], so that stop strings end rows."""
    with HFBackend(str(tiny_model_dir), device="cpu") as b:
        [probe] = dict(b.generate([req(PROMPTS[1], temperature=0.0, max_new_tokens=16)]))[0]
    return next(m.group(0) for m in [re.search(r"[A-Za-z]{2,}", probe.text[1:])] if m)


def mixed_requests(stop: str) -> list[Request]:
    """Rows of very different lengths: short and long limits, greedy and sampled, stop strings."""
    requests = [req(PROMPTS[i % 4], seed=i, n=2, max_new_tokens=2 + 7 * (i % 3), top_k=20) for i in range(9)]
    requests += [req(p, temperature=0.0, max_new_tokens=16, stop=(stop,)) for p in PROMPTS]
    requests += [req(PROMPTS[1], seed=7, n=3, max_new_tokens=24, stop=(stop, "e"))]
    return requests


def test_rows_join_a_running_batch_and_every_request_gets_what_it_gets_alone(tiny_model_dir, stop):
    requests = mixed_requests(stop)
    b = HFBackend(str(tiny_model_dir), device="cpu", batch_size=4)
    joined_running = []
    original = b.scheduler.admit

    def spy(batch, forks, wave, settings):
        joined_running.append(batch is not None)
        return original(batch, forks, wave, settings)

    b.scheduler.admit = spy
    try:
        refilled = results(b, requests)
        assert any(joined_running), "no row joined a running batch"
        b.refill = False
        batch_by_batch = results(b, requests)
    finally:
        b.close()
    reasons = {c["finish_reason"] for cs in refilled.values() for c in cs}
    assert reasons == {"stop", "length"}, "the mix must end rows early and at the limit"
    assert refilled == batch_by_batch
    with HFBackend(str(tiny_model_dir), device="cpu") as alone:
        for i, request in enumerate(requests):
            assert results(alone, [request])[0] == refilled[i], i


def test_decoding_in_place_gives_the_tokens_of_a_growing_cache(tiny_model_dir, stop):
    requests = mixed_requests(stop)
    with HFBackend(str(tiny_model_dir), device="cpu", batch_size=5) as b:
        in_place = results(b, requests)
        b.kv_room = False
        concatenated = results(b, requests)
    assert in_place == concatenated


def test_out_of_memory_starts_the_rows_in_flight_again_with_half_as_many(tiny_model_dir, stop, caplog):
    requests = mixed_requests(stop)
    with HFBackend(str(tiny_model_dir), device="cpu") as b:
        expected = results(b, requests)
        original, widths = b.scheduler.step, []

        def step(batch):
            widths.append(len(batch.rows))
            if len(batch.rows) > 8:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return original(batch)

        b.scheduler.step = step
        with caplog.at_level(logging.WARNING, logger="selfguide.backends.hf"):
            got = results(b, requests)
    assert got == expected
    assert widths[0] > 8 and widths[-1] <= 8  # halved until the rows fit
    assert "out of memory" in caplog.text


def random_cache(batch: int, width: int, layers: int = 2, seed: int = 0) -> DynamicCache:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 2, width, 4)
    return DynamicCache([(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)) for _ in range(layers)])


def test_a_roomy_layer_holds_what_concatenation_holds_even_past_its_room():
    roomy, plain = decode_cache.join([(random_cache(3, 5), 3)], room=2), random_cache(3, 5)
    assert all(isinstance(layer, decode_cache.RoomyLayer) for layer in roomy.layers)
    generator = torch.Generator().manual_seed(1)
    for step in range(6):  # 2 columns of room, then it must grow
        keys, values = torch.randn(3, 2, 1, 4, generator=generator), torch.randn(3, 2, 1, 4, generator=generator)
        for layer in range(2):
            got = roomy.update(keys, values, layer)
            want = plain.update(keys, values, layer)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert roomy.get_seq_length() == plain.get_seq_length() == 11
    keep = torch.tensor([2, 0])
    roomy.batch_select_indices(keep)
    plain.batch_select_indices(keep)
    assert torch.equal(roomy.layers[1].keys, plain.layers[1].keys)


def test_join_right_aligns_groups_over_zeros_and_trim_drops_leading_columns():
    wide, narrow = random_cache(2, 6, seed=1), random_cache(1, 3, seed=2)
    joined = decode_cache.join([(wide, 2), (None, 2), (narrow, 1)], room=4)
    keys = joined.layers[0].keys
    assert keys.shape == (5, 2, 6, 4) and joined.get_seq_length() == 6
    assert torch.equal(keys[:2], wide.layers[0].keys)
    assert not keys[2:4].any()  # rows with nothing cached yet: padding only
    assert not keys[4, :, :3].any() and torch.equal(keys[4, :, 3:], narrow.layers[0].keys[0])
    decode_cache.trim(joined, 2)
    assert torch.equal(joined.layers[0].keys[:2], wide.layers[0].keys[:, :, 2:])
    flat = decode_cache.join([(wide, 2), (narrow, 1)], room=None)  # no room: plain layers
    assert all(type(layer) is DynamicLayer for layer in flat.layers)
    assert torch.equal(flat.layers[1].values[2:, :, 3:], narrow.layers[1].values)
    assert decode_cache.join([(None, 3)], room=2) is None


def test_join_refuses_caches_it_cannot_stack():
    from transformers.cache_utils import DynamicSlidingWindowLayer

    cache = random_cache(1, 3)
    cache.layers[0] = DynamicSlidingWindowLayer(sliding_window=2)
    assert not decode_cache.plain(cache)
    with pytest.raises(TypeError, match="plain DynamicCache"):
        decode_cache.join([(cache, 1)], room=4)


def test_a_requests_samples_share_a_row_until_their_tokens_part(tiny_model_dir, stop):
    """n samples decode as one batch row while they agree and fork when they part: the same
    completions as one row per sample from the start, for fewer row-steps."""
    requests = [req(PROMPTS[i % 4], seed=i, n=6, temperature=(0.001, 1.0)[i % 2], max_new_tokens=12) for i in range(6)]
    requests += [req(PROMPTS[1], seed=9, n=4, temperature=0.7, top_k=20, max_new_tokens=24, stop=(stop, "e"))]
    requests += [req(PROMPTS[2], temperature=0.0, max_new_tokens=8), req(PROMPTS[3], seed=3, n=1, max_new_tokens=5)]

    def decode(**options):
        b = HFBackend(str(tiny_model_dir), device="cpu", batch_size=16, **options)
        row_steps, forked, ended_together = [0], [], []
        step = b.scheduler.step

        def counting(batch):
            row_steps[0] += len(batch.rows)
            ended, fork = step(batch)
            ended_together.extend(len(batch.rows[k]) for k in ended)
            if fork is not None:
                forked.append(sum(len(members) for members in fork.rows))
            return ended, fork

        b.scheduler.step = counting
        with b:
            return results(b, requests), row_steps[0], forked, ended_together

    shared, shared_steps, forked, ended_together = decode()
    apart, apart_steps, never, one_each = decode(share_samples=False)
    assert shared == apart
    assert {c["finish_reason"] for cs in shared.values() for c in cs} == {"stop", "length"}
    assert forked and not never  # samples parted, and forked off their rows
    assert max(ended_together) == 6 and max(one_each) == 1  # some samples agreed to the end
    assert shared_steps < apart_steps


def test_forks_waiting_to_join_count_in_the_token_budget(tiny_model_dir):
    """A long prompt's samples fork and wait while short rows run and end; the wave they join
    must fit `max_batch_tokens` with their width and steps, not only the running batch's."""
    long_prompt = " ".join(["the long road goes on and on"] * 25)
    requests = [req(long_prompt, seed=20, n=6, temperature=3.0, max_new_tokens=12, stop=("a",))]
    requests += [req("yes", seed=k, temperature=0.0, max_new_tokens=limit) for k, limit in enumerate([3, 12, 12, 2, 3, 12, 2, 2, 3, 3, 2, 2])]
    requests += [req("the cat", seed=k, n=2, max_new_tokens=3) for k in range(3)]
    budget, sizes, forks_joined = 1200, [], []
    with HFBackend(str(tiny_model_dir), device="cpu", max_batch_tokens=budget, reuse_prefix=False) as b:
        admit = b.scheduler.admit

        def spy(batch, forks, wave, settings):
            joined = admit(batch, forks, wave, settings)
            forks_joined.append(bool(forks))
            samples = sum(len(members) for members in joined.rows)
            sizes.append((samples, samples * (joined.ids.shape[1] + joined.remaining())))
            return joined

        b.scheduler.admit = spy
        shared = results(b, requests)
        b.share_samples = False
        assert results(b, requests) == shared
    assert any(forks_joined)
    assert all(tokens <= budget for samples, tokens in sizes if samples > 1), sizes

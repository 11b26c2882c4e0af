"""Shared-prefix KV reuse in HFBackend: which prefixes are shared, that each is computed once, and
that outputs are token-identical to prefilling every prompt whole (float32, tiny model)."""

from __future__ import annotations

import pytest

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.chat import encode_prompt
from selfguide.backends.hf import HFBackend, shared_prefixes
from selfguide.prompts.task import task_messages

DEMOS_A = [("is the sky blue", "yes"), ("is fire cold", "no")]
DEMOS_B = [("the cat sat on the mat", "the cat"), ("a dog ran in the park", "a dog")]
INPUTS = ["is water wet", "can a fish fly in the sky", "is the sun hot", "do birds sing"]


def mixed_requests() -> list[Request]:
    """Three task prompts (two system prompts, different demos), sampled and greedy, plus a
    request whose whole prompt is a prefix of another request's prompt."""
    requests = []
    for k, text in enumerate(INPUTS):
        sampled = SamplingParams(temperature=1.0, n=3, seed=k, max_new_tokens=10)
        greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
        requests.append(Request(task_messages("Answer yes or no.", DEMOS_A, text), sampled))
        requests.append(Request(task_messages("Answer yes or no.", DEMOS_A, text), greedy))
        requests.append(Request(task_messages("Name the subject.", DEMOS_B, text), sampled))
        requests.append(Request(task_messages("Answer yes or no.", DEMOS_B[:1], text), greedy))
    short = [{"role": "user", "content": "is water wet"}]
    requests.append(Request(short, SamplingParams(temperature=1.0, n=2, seed=5, max_new_tokens=10)))
    requests.append(Request([*short, {"role": "assistant", "content": " yes"}, {"role": "user", "content": "why"}],
                            SamplingParams(temperature=1.0, n=2, seed=6, max_new_tokens=10)))
    return requests


@pytest.fixture(scope="module")
def backends(tiny_model_dir):
    reuse = HFBackend(str(tiny_model_dir), device="cpu", dtype="float32")
    plain = HFBackend(str(tiny_model_dir), device="cpu", dtype="float32", reuse_prefix=False)
    yield reuse, plain
    reuse.close()
    plain.close()


def test_runs_of_prompts_share_the_prefix_that_saves_most():
    task_a, task_b = tuple(range(100, 140)), tuple(range(200, 230))
    prompts = [task_a + (1, 2), task_a + (1, 3), task_a + (4,), task_b + (5,), task_b + (6, 7), (9, 9, 9)]
    lengths = shared_prefixes(prompts + [task_a + (4,)])  # duplicates count once
    assert lengths == {
        task_a + (1, 2): 40,  # not 41: the run of three shares 40 tokens, more than the pair's 41
        task_a + (1, 3): 40,
        task_a + (4,): 40,
        task_b + (5,): 30,
        task_b + (6, 7): 30,
        (9, 9, 9): 0,
    }
    # A prompt that is a prefix of another keeps its last token out of the shared part.
    assert shared_prefixes([(1, 2, 3), (1, 2, 3, 4, 5)]) == {(1, 2, 3): 2, (1, 2, 3, 4, 5): 2}
    assert shared_prefixes([(1, 2, 3)]) == {(1, 2, 3): 0}
    assert shared_prefixes([]) == {}


def test_reuse_gives_the_same_tokens_as_whole_prompt_prefill(backends):
    reuse, plain = backends
    requests = mixed_requests()
    short, longer = (tuple(encode_prompt(reuse.tokenizer, list(r.messages))) for r in requests[-2:])
    assert longer[: len(short)] == short, "the short prompt must be a token prefix of the longer one"
    lengths = shared_prefixes(tuple(encode_prompt(reuse.tokenizer, list(r.messages))) for r in requests)
    assert lengths[short] == len(short) - 1 and lengths[longer] == len(short) - 1
    with_reuse, without = dict(reuse.generate(requests)), dict(plain.generate(requests))
    assert sorted(with_reuse) == list(range(len(requests)))
    as_text = lambda out: {i: [c.as_dict() for c in cs] for i, cs in out.items()}  # noqa: E731
    assert as_text(with_reuse) == as_text(without)
    one_by_one = {i: next(iter(dict(reuse.generate([r])).values())) for i, r in enumerate(requests[:6])}
    assert as_text(one_by_one) == {i: v for i, v in as_text(without).items() if i < 6}


def test_each_shared_prefix_is_computed_once_and_only_the_rest_is_prefilled(tiny_model_dir):
    backend = HFBackend(str(tiny_model_dir), device="cpu", batch_size=4)  # several batches per task
    shapes: list[tuple[int, int]] = []
    handle = backend.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    params = SamplingParams(temperature=0.0, max_new_tokens=1)
    requests = [Request(task_messages(system, DEMOS_A, text), params) for system in ("One.", "Two.") for text in INPUTS]
    prompts = [tuple(encode_prompt(backend.tokenizer, list(r.messages))) for r in requests]
    try:
        assert len(dict(backend.generate(requests))) == 8
    finally:
        handle.remove()
        backend.close()
    lengths = shared_prefixes(prompts)
    one, two = lengths[prompts[0]], lengths[prompts[4]]
    assert one > 20 and two > 20 and all(lengths[p] == one for p in prompts[:4])
    prefix_runs = [s for s in shapes if s[0] == 1 and s[1] > 1]
    assert sorted(prefix_runs) == sorted([(1, one), (1, two)])  # each task prefix once, alone
    longest_rest = max(len(p) - lengths[p] for p in prompts)
    assert all(width <= longest_rest for rows, width in shapes if rows > 1)

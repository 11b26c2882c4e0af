"""Label scoring: log-likelihood of fixed candidate answers after a prompt (HFBackend.score and
CachedModel.score), on the tiny model in float32."""

from __future__ import annotations

import pytest
import torch

from selfguide.backends.base import BackendInfo, Request, SamplingParams, ScoreRequest
from selfguide.backends.cache import CachedModel, CallCache, CallStats, request_key, score_key
from selfguide.backends.chat import encode_prompt, render_answer
from selfguide.backends.hf import HFBackend
from selfguide.backends.openai_backend import OpenAIBackend
from selfguide.errors import BudgetExceeded, SelfGuideError
from selfguide.prompts.task import task_messages

DEMOS = [("is the sky blue", "yes"), ("is fire cold", "no")]
LABELS = ("yes", "no", "neutral", "neutral, because it is")


def scoring(system: str, text: str, labels=LABELS) -> ScoreRequest:
    return ScoreRequest(task_messages(system, DEMOS, text), tuple(labels))


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    b = HFBackend(str(tiny_model_dir), device="cpu", dtype="float32")
    yield b
    b.close()


def plain_logprob(backend: HFBackend, messages, answer: str) -> tuple[float, int]:
    """A full forward over prompt + answer ids; log_softmax summed at the answer positions."""
    tokenizer = backend.tokenizer
    prompt = encode_prompt(tokenizer, messages)
    target = tokenizer(render_answer(tokenizer, messages, answer), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + target])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
    return float(logprobs[torch.arange(len(target)), torch.tensor(target)].sum()), len(target)


def test_score_equals_a_plain_forward(backend):
    requests = [scoring("Answer yes or no.", "is water wet"), scoring("Answer yes or no.", "is ice hot")]
    out = dict(backend.score(requests))  # the two share their task prefix's KV cache
    for request, scores in zip(requests, (out[0], out[1])):
        assert len(scores) == len(LABELS)
        for label, score in zip(LABELS, scores):
            expected, tokens = plain_logprob(backend, list(request.messages), label)
            assert score.tokens == tokens
            assert score.logprob == pytest.approx(expected, abs=1e-4)
    scores = out[0]
    # The closing end-of-turn is scored: a label and its longer continuation differ.
    neutral, longer = scores[2], scores[3]
    assert longer.tokens > neutral.tokens and longer.logprob != pytest.approx(neutral.logprob, abs=1e-3)


def test_scores_do_not_depend_on_the_batch(tiny_model_dir, backend):
    requests = [
        scoring("Answer yes or no.", "is water wet"),
        scoring("Answer yes or no.", "can a fish fly in the sky over the sea"),
        scoring("Name the subject of the sentence.", "the cat sat", ("the cat", "sat")),
        ScoreRequest([{"role": "user", "content": "hi"}], ("hello there",)),
        ScoreRequest([{"role": "user", "content": "hi"}], ()),
    ]
    together = dict(backend.score(requests))
    assert sorted(together) == list(range(len(requests))) and together[4] == []
    small = HFBackend(str(tiny_model_dir), device="cpu", dtype="float32", batch_size=3, reuse_prefix=False)
    try:
        alone = {i: dict(small.score([r]))[0] for i, r in enumerate(requests)}
        split = dict(small.score(requests))  # a request's candidates spread over several batches
    finally:
        small.close()
    for i in range(len(requests)):
        for a, b, c in zip(together[i], alone[i], split[i]):
            assert a.tokens == b.tokens == c.tokens
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.logprob == pytest.approx(c.logprob, abs=1e-4)


def test_cached_scores_make_no_backend_calls_on_rerun(tmp_path, backend):
    info = BackendInfo("hf", "tiny", "fp")
    made = []

    class Counting:
        def score(self, requests):
            made.append(len(requests))
            return backend.score(requests)

    requests = [scoring("Answer yes or no.", text) for text in ("is water wet", "is ice hot", "is water wet")]
    cache = CallCache(tmp_path / "calls.sqlite")
    stats = CallStats()
    first = CachedModel(info, Counting, cache, progress=False, stats=stats).score(requests)
    assert made == [2]  # the repeated request is scored once
    assert stats.calls == 2 and stats.prompt_tokens == 2 * sum(s.tokens for s in first[0])
    again = CachedModel(info, lambda: pytest.fail("the backend must not load"), cache, progress=False, stats=stats).score(requests)
    assert [[s.as_dict() for s in r] for r in again] == [[s.as_dict() for s in r] for r in first]
    assert stats.calls == 2 and stats.cached == 3
    # A score key never meets a generate key, and the budget holds as for generate.
    same_messages = Request(requests[0].messages, SamplingParams())
    assert score_key(info, requests[0]) != request_key(info, same_messages)
    budget = CachedModel(info, Counting, CallCache(tmp_path / "other.sqlite"), progress=False, max_calls=1)
    with pytest.raises(BudgetExceeded):
        budget.score(requests)
    assert budget.stats.calls == 1 and len(budget.cache) == 1


def test_remote_backends_say_that_scoring_needs_hf():
    remote = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    try:
        with pytest.raises(SelfGuideError, match="needs the in-process hf backend"):
            remote.score([scoring("x", "y")])
    finally:
        remote.close()

"""OpenAIBackend against a real `transformers serve` of the tiny model, with a fault-injecting proxy
in front of it to prove the retries; and the vLLM backend's missing-dependency path."""

from __future__ import annotations

import logging
import sys
import time

import pytest

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.openai_backend import OpenAIBackend, _retry_after_seconds, sample_seed, split_evenly, truncate_at_stop
from selfguide.errors import MissingDependencyError, SelfGuideError

from tests.servers import fault_proxy, free_port, serve_transformers

FAST = dict(backoff_base=0.001, backoff_max=0.01)  # retries without waiting


def requests(count: int, *, n: int = 1, max_new_tokens: int = 8, stop: tuple[str, ...] = (), seed: int = 0) -> list[Request]:
    return [
        Request(
            [{"role": "system", "content": "Answer."}, {"role": "user", "content": f"question number {i}"}],
            SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=max_new_tokens, n=n, stop=stop, seed=seed + i),
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    pytest.importorskip("fastapi", reason="transformers serve needs the serving extra: pip install 'transformers[serving]'")
    pytest.importorskip("uvicorn", reason="transformers serve needs the serving extra: pip install 'transformers[serving]'")
    with serve_transformers(tiny_model_dir, do_sample=True, workdir=tmp_path_factory.mktemp("serve")) as running:
        yield running


@pytest.fixture
def proxy(server):
    with fault_proxy(server.base_url, fail="never") as (p, url):
        yield p, url


def backend(server, base_url: str | None = None, **kwargs) -> OpenAIBackend:
    # transformers serve rejects top_k (422), so it is not sent here.
    return OpenAIBackend(server.model, base_url=base_url or server.base_url, send_top_k=False, **{**FAST, **kwargs})


def check_completions(results: dict, batch: list[Request]) -> None:
    assert sorted(results) == list(range(len(batch)))
    for i, completions in results.items():
        params = batch[i].params
        assert len(completions) == params.n
        for c in completions:
            assert isinstance(c.text, str)
            assert 1 <= c.completion_tokens <= params.max_new_tokens
            assert c.prompt_tokens > 5
            assert c.finish_reason in ("stop", "length")


# ----- against the real server -----


def test_batch_returns_n_completions_with_token_counts(server, proxy):
    p, url = proxy
    model = backend(server, url, concurrency=2)
    batch = requests(3, n=3)
    results = {}
    for i, completions in model.generate(batch):
        assert i not in results, "each request is yielded once"
        results[i] = completions
    check_completions(results, batch)
    # transformers serve ignores n: the backend noticed and fetched the other samples one by one,
    # each with its own seed derived from the request's.
    assert model._n_ignored
    assert p.requests == 9 and model.stats == {"calls": 9, "retries": 0, "failed_attempts": 0}
    for i, request in enumerate(batch):
        seeds = sorted(b["seed"] for b in p.bodies if b["messages"][-1]["content"] == f"question number {i}")
        assert seeds == sorted(sample_seed(request.params.seed, j) for j in range(3))
    assert all(b["model"] == server.model and b["max_tokens"] == 8 and "top_k" not in b for b in p.bodies)
    # Sampling is on (do_sample copy) and seeds differ: the three samples are not all the same.
    assert any(len({c.text for c in completions}) > 1 for completions in results.values())
    # Once known, the server's n-blindness is remembered: n separate requests from the start.
    p.reset()
    check_completions(dict(model.generate(requests(2, n=2))), requests(2, n=2))
    assert p.requests == 4 and all("n" not in b for b in p.bodies)


def test_concurrent_requests_and_results_stream(server, proxy):
    p, url = proxy
    batch = requests(8, n=1)
    model = backend(server, url, concurrency=4)
    check_completions(dict(model.generate(batch)), batch)
    assert p.max_in_flight > 1, "requests should overlap with concurrency > 1"
    assert p.max_in_flight <= 4

    # One worker: the first result arrives while most of the batch is still to be sent.
    p.reset()
    sequential = backend(server, url, concurrency=1)
    stream = sequential.generate(batch)
    first_index, _ = next(stream)
    assert first_index == 0 and p.requests <= 2
    stream.close()  # the caller stops: nothing more is sent
    time.sleep(0.3)
    assert p.requests <= 2


def test_same_seed_same_samples_sequentially(server):
    # transformers serve seeds the global torch RNG per request, so it is reproducible with one worker.
    model = backend(server, concurrency=1)
    batch = requests(2, n=2)
    first, second = dict(model.generate(batch)), dict(model.generate(batch))
    assert {i: [c.text for c in cs] for i, cs in first.items()} == {i: [c.text for c in cs] for i, cs in second.items()}


def test_stop_strings_beyond_four_are_cut_client_side(server, proxy):
    p, url = proxy
    stop = ("zq1", "zq2", "zq3", "zq4", "e", "a")
    batch = requests(2, max_new_tokens=16, stop=stop)
    results = dict(backend(server, url).generate(batch))
    assert all(b["stop"] == list(stop[:4]) for b in p.bodies)
    for completions in results.values():
        for c in completions:
            assert "e" not in c.text and "a" not in c.text


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_retries_through_failing_proxy(server, mode):
    batch = requests(4, n=1)
    with fault_proxy(server.base_url, fail="first", k=3, mode=mode) as (p, url):
        model = backend(server, url, concurrency=2, max_retries=4)
        check_completions(dict(model.generate(batch)), batch)
    assert p.failed == 3 and p.forwarded == 4 and p.requests == 7
    assert model.stats["retries"] == 3 and model.stats["failed_attempts"] == 3


def test_retries_every_other_request_and_honours_retry_after(server):
    batch = requests(3, n=2)
    with fault_proxy(server.base_url, fail="alternate", mode="429", retry_after="0") as (p, url):
        model = backend(server, url, concurrency=3, max_retries=6)
        check_completions(dict(model.generate(batch)), batch)
    assert p.failed >= 3 and p.forwarded == 6  # 3 requests x 2 samples, one request each
    assert model.stats["retries"] == p.failed

    with fault_proxy(server.base_url, fail="first", k=1, mode="429", retry_after="1") as (p, url):
        started = time.monotonic()
        check_completions(dict(backend(server, url, max_retries=2).generate(requests(1))), requests(1))
        assert time.monotonic() - started >= 0.95, "Retry-After: 1 must be waited out despite a tiny backoff"
    assert p.requests == 2


def test_permanently_failing_server_gives_up_after_max_retries():
    with fault_proxy(None, fail="always", mode="503") as (p, url):
        model = OpenAIBackend("any-model", base_url=url, max_retries=3, **FAST)
        with pytest.raises(SelfGuideError) as raised:
            list(model.generate(requests(1)))
    message = str(raised.value)
    assert url in message and "3 retries" in message and "503" in message and "injected failure" in message
    assert p.requests == 4  # the first try and 3 retries


def test_unreachable_server_gives_up_after_max_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    model = OpenAIBackend("any-model", base_url=url, max_retries=2, timeout=5, **FAST)
    with pytest.raises(SelfGuideError, match="2 retries") as raised:
        list(model.generate(requests(2)))
    assert url in str(raised.value) and "APIConnectionError" in str(raised.value)
    assert model.stats["failed_attempts"] >= 3


def test_bad_request_is_not_retried(server, proxy):
    p, url = proxy
    model = OpenAIBackend("not-the-served-model", base_url=url, send_top_k=False, max_retries=6, backoff_base=1.0)
    started = time.monotonic()
    with pytest.raises(SelfGuideError, match="HTTP 400") as raised:
        list(model.generate(requests(1)))
    assert time.monotonic() - started < 5
    assert "pinned" in str(raised.value)  # the server's own message
    assert p.requests == 1 and model.stats["retries"] == 0


def test_top_k_goes_in_the_body_and_a_refusal_says_what_to_do(server, proxy):
    p, url = proxy
    model = OpenAIBackend(server.model, base_url=url, send_top_k=True, **FAST)
    batch = [Request([{"role": "user", "content": "hi"}], SamplingParams(top_k=5, max_new_tokens=4))]
    with pytest.raises(SelfGuideError, match="HTTP 422") as raised:
        list(model.generate(batch))
    assert "send_top_k" in str(raised.value)
    assert p.bodies[0]["top_k"] == 5 and p.requests == 1
    p.reset()
    with pytest.raises(SelfGuideError):
        list(model.generate([Request(batch[0].messages, SamplingParams(top_k=0, max_new_tokens=4))]))
    assert p.bodies[0]["top_k"] == -1  # off, explicitly


@pytest.mark.parametrize("status", [400, 500])
def test_server_refusing_n_gets_one_request_per_sample(server, status):
    # llama.cpp answers n > 1 with "Only one completion choice is allowed" (500 or 400): no retries.
    batch = requests(2, n=3)
    with fault_proxy(server.base_url, fail="never", reject_n=status) as (p, url):
        model = backend(server, url, concurrency=2, backoff_base=1.0)
        started = time.monotonic()
        check_completions(dict(model.generate(batch)), batch)
        assert time.monotonic() - started < 10
    assert p.requests == 2 + 6 and p.forwarded == 6 and model.stats["retries"] == 0
    assert sorted(b["seed"] for b in p.bodies if "n" not in b) == sorted(sample_seed(r.params.seed, j) for r in batch for j in range(3))


def test_n_per_request_off_and_seed_switch(server, proxy):
    p, url = proxy
    model = backend(server, url, n_per_request=False, send_seed=False)
    batch = requests(2, n=2)
    check_completions(dict(model.generate(batch)), batch)
    assert p.requests == 4 and all("n" not in b and "seed" not in b for b in p.bodies)


def test_api_key_never_leaks(server, monkeypatch, caplog):
    secret = "sk-test-DO-NOT-LEAK-4f9a1c"
    monkeypatch.setenv("SELFGUIDE_TEST_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with fault_proxy(server.base_url, fail="first", k=1, mode="503", echo_auth=True) as (p, url):
        model = OpenAIBackend(server.model, base_url=url, api_key_env="SELFGUIDE_TEST_API_KEY", send_top_k=False, **FAST)
        results = dict(model.generate(requests(1)))  # a retry logs the (echoing) server message
    assert p.headers[0]["authorization"] == f"Bearer {secret}", "the key is sent to the server"
    assert len(results) == 1
    assert secret not in repr(model) and secret not in str(model)
    assert secret not in repr(model.info) and secret not in model.info.fingerprint and secret not in str(model.info.extra)
    with fault_proxy(None, fail="always", mode="401", echo_auth=True) as (p, url):
        model = OpenAIBackend("m", base_url=url, api_key_env="SELFGUIDE_TEST_API_KEY", **FAST)
        with pytest.raises(SelfGuideError) as raised:
            list(model.generate(requests(1)))
    assert "HTTP 401" in str(raised.value) and "***" in str(raised.value)
    with fault_proxy(None, fail="always", mode="500", echo_auth=True) as (p, url):
        model = OpenAIBackend("m", base_url=url, api_key_env="SELFGUIDE_TEST_API_KEY", max_retries=1, **FAST)
        with pytest.raises(SelfGuideError) as exhausted:
            list(model.generate(requests(1)))
    for text in (str(raised.value), repr(raised.value), str(exhausted.value), caplog.text):
        assert secret not in text
    assert "SELFGUIDE_TEST_API_KEY" in str(raised.value)  # names the variable, not the value


def test_missing_key_uses_a_dummy(server, proxy, monkeypatch):
    monkeypatch.delenv("SELFGUIDE_UNSET_KEY", raising=False)
    p, url = proxy
    model = OpenAIBackend(server.model, base_url=url, api_key_env="SELFGUIDE_UNSET_KEY", send_top_k=False)
    assert len(dict(model.generate(requests(1)))) == 1
    assert p.headers[0]["authorization"] == "Bearer EMPTY"
    assert model.info.backend == "openai" and model.info.fingerprint == f"{url}|{server.model}"
    assert model.info.extra == {"base_url": url}


# ----- pieces without a server -----


def test_helpers():
    assert truncate_at_stop("abc STOP def END", ("END", "STOP")) == ("abc ", True)
    assert truncate_at_stop("abc", ("x", "")) == ("abc", False)
    assert split_evenly(10, 3) == [4, 3, 3] and split_evenly(0, 2) == [0, 0]
    assert sample_seed(7, 0) == 7 and sample_seed(7, 1) != sample_seed(7, 2) != 7
    assert _retry_after_seconds({"retry-after": "2"}) == 2.0
    assert _retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert _retry_after_seconds({}) is None and _retry_after_seconds({"retry-after": "soon"}) is None


def test_missing_base_url_is_a_user_error():
    with pytest.raises(SelfGuideError, match="base_url"):
        OpenAIBackend("m", base_url="")


def test_vllm_missing_raises_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    from selfguide.backends.vllm_backend import VLLMBackend

    with pytest.raises(MissingDependencyError, match=r"pip install 'selfguide\[vllm\]'"):
        VLLMBackend("some/model")

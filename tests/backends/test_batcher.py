"""The coalescer (backends/batcher.py): concurrent calls to one in-process model are merged into one
backend call, and each caller gets exactly what it would have got alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from selfguide.backends.base import BackendInfo, CandidateScore, Completion, Request, SamplingParams, ScoreRequest
from selfguide.backends.cache import CachedModel, CallCache


class Spy:
    """Wraps a backend: records every call, lets no two run at once unnoticed, and can hold the
    first call until the test has queued the others behind it."""

    def __init__(self, inner, hold_first: bool = False):
        self.inner, self.info = inner, inner.info
        self.calls: list[tuple[str, int]] = []
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.running = 0
        self.overlapped = False

    def _wrap(self, kind, requests):
        first = not self.calls
        self.calls.append((kind, len(requests)))
        if first:
            assert self.release.wait(30)
        self.running += 1
        self.overlapped |= self.running > 1
        try:
            yield from getattr(self.inner, kind)(requests)
        finally:
            self.running -= 1

    def generate(self, requests):
        return self._wrap("generate", requests)

    def score(self, requests):
        return self._wrap("score", requests)

    def close(self):
        pass


class Echo:
    """A backend whose answers are a function of each request alone, yielded in reverse order."""

    info = BackendInfo("hf", "echo", "echo")

    def generate(self, requests):
        for i in reversed(range(len(requests))):
            time.sleep(0.001)
            r = requests[i]
            yield i, [Completion(f"{r.messages[0]['content']}|{r.params.seed}|{j}", 1, 1) for j in range(r.params.n)]

    def score(self, requests):
        for i, r in enumerate(requests):
            yield i, [CandidateScore(-float(len(c) + len(r.messages[0]["content"])), 1) for c in r.candidates]


def requests_for(thread: int, count: int, n: int = 2) -> list[Request]:
    return [Request(({"role": "user", "content": f"t{thread}-{k}"},), SamplingParams(n=n, seed=thread * 100 + k)) for k in range(count)]


def wait_for_queue(model: CachedModel, calls: int) -> None:
    deadline = time.time() + 30
    while len(model._use().coalescer._waiting) < calls and time.time() < deadline:
        time.sleep(0.005)
    assert len(model._use().coalescer._waiting) == calls


def run_held(model: CachedModel, spy: Spy, jobs: list) -> list:
    """The first job starts alone and is held; the rest queue behind it; then all go."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(jobs[0])]
        deadline = time.time() + 30
        while not spy.calls and time.time() < deadline:
            time.sleep(0.005)
        futures += [pool.submit(job) for job in jobs[1:]]
        wait_for_queue(model, len(jobs) - 1)
        spy.release.set()
        return [f.result() for f in futures]


def test_concurrent_calls_merge_into_one_backend_call(tmp_path):
    sizes = [3, 5, 1, 4]
    alone = CachedModel(Echo.info, Echo, CallCache(tmp_path / "alone.sqlite"), progress=False)
    expected = [alone.generate(requests_for(t, size)) for t, size in enumerate(sizes)]

    spy = Spy(Echo(), hold_first=True)
    model = CachedModel(Echo.info, lambda: spy, CallCache(tmp_path / "merged.sqlite"), progress=False)
    got = run_held(model, spy, [lambda t=t, size=size: model.generate(requests_for(t, size)) for t, size in enumerate(sizes)])
    assert got == expected
    # The first call alone (held), then the three that queued behind it as one call.
    assert spy.calls == [("generate", 3), ("generate", 10)]
    assert not spy.overlapped
    assert model.stats.calls == sum(sizes) and len(model.cache) == sum(sizes)


def test_generate_and_score_never_run_at_once(tmp_path):
    spy = Spy(Echo(), hold_first=True)
    model = CachedModel(Echo.info, lambda: spy, CallCache(tmp_path / "c.sqlite"), progress=False)
    score_requests = [ScoreRequest(({"role": "user", "content": f"s{k}"},), ("a", "bb")) for k in range(3)]
    jobs = [
        lambda: model.generate(requests_for(0, 2)),
        lambda: model.score(score_requests),
        lambda: model.generate(requests_for(1, 2)),
        lambda: model.score(score_requests[:1] + [ScoreRequest(({"role": "user", "content": "x"},), ("c",))]),
    ]
    got = run_held(model, spy, jobs)
    alone = CachedModel(Echo.info, Echo, CallCache(tmp_path / "alone.sqlite"), progress=False)
    assert got == [alone.generate(requests_for(0, 2)), alone.score(score_requests), alone.generate(requests_for(1, 2)), got[3]]
    assert got[3][0] == got[1][0]
    # Held first call, then the oldest waiting kind (score: both calls, 3 + 2 requests, as neither
    # was cached when they asked), then the remaining generate call.
    assert spy.calls == [("generate", 2), ("score", 5), ("generate", 2)]
    assert not spy.overlapped


def test_a_failed_merged_call_fails_every_caller(tmp_path):
    class Broken(Echo):
        def generate(self, requests):
            yield 0, [Completion("x", 1, 1)] * requests[0].params.n
            raise RuntimeError("device lost")

    spy = Spy(Broken(), hold_first=True)
    model = CachedModel(Echo.info, lambda: spy, CallCache(tmp_path / "c.sqlite"), progress=False)
    with pytest.raises(RuntimeError, match="device lost"):
        run_held(model, spy, [lambda t=t: model.generate(requests_for(t, 2)) for t in range(3)])
    # The coalescer is free again: a later call runs.
    with pytest.raises(RuntimeError, match="device lost"):
        model.generate(requests_for(9, 1))
    assert model._use().coalescer._active is None and not model._use().coalescer._waiting


def test_hf_results_do_not_depend_on_merging(tiny_model_dir, tmp_path):
    """Threads sampling from the tiny hf model get exactly the samples of sequential calls, though
    their requests (two sampling settings, several prompts) shared one backend call."""
    from selfguide.backends.hf import HFBackend

    backend = HFBackend(str(tiny_model_dir), device="cpu", dtype="float32")

    def batch(t: int, temperature: float) -> list[Request]:
        return [
            Request(
                ({"role": "system", "content": "Answer."}, {"role": "user", "content": f"Question {t}.{k}: " + "word " * (k * 3 + t)}),
                SamplingParams(temperature=temperature, top_k=20, max_new_tokens=12, n=3, seed=1000 * t + k),
            )
            for k in range(3)
        ]

    work = [(0, 1.0), (1, 1.0), (2, 0.7), (3, 1.0)]
    alone = CachedModel(backend.info, lambda: backend, CallCache(tmp_path / "alone.sqlite"), progress=False)
    expected = [alone.generate(batch(t, temp)) for t, temp in work]

    spy = Spy(backend, hold_first=True)
    model = CachedModel(backend.info, lambda: spy, CallCache(tmp_path / "merged.sqlite"), progress=False)
    got = run_held(model, spy, [lambda t=t, temp=temp: model.generate(batch(t, temp)) for t, temp in work])
    assert [[[c.text for c in cs] for cs in call] for call in got] == [[[c.text for c in cs] for cs in call] for call in expected]
    assert got == expected
    assert spy.calls == [("generate", 3), ("generate", 9)]


def test_a_caller_that_stops_reading_does_not_block_the_others(tmp_path):
    """A caller whose consumer stops (closes its generator) in the middle of a merged call: the
    others still get every result, and the next call runs."""
    spy = Spy(Echo(), hold_first=True)
    model = CachedModel(Echo.info, lambda: spy, CallCache(tmp_path / "c.sqlite"), progress=False)
    coalescer = model._use().coalescer

    def take_one_and_stop():
        results = coalescer.run("generate", requests_for(1, 3))
        first = next(results)
        results.close()
        return [first]

    jobs = [lambda: model.generate(requests_for(0, 1)), take_one_and_stop, lambda: list(coalescer.run("generate", requests_for(2, 4)))]
    first, stopped, other = run_held(model, spy, jobs)
    assert len(first) == 1 and len(stopped) == 1
    assert sorted(i for i, _ in other) == [0, 1, 2, 3]
    assert spy.calls == [("generate", 1), ("generate", 7)]
    assert coalescer._active is None and not coalescer._waiting
    assert len(model.generate(requests_for(3, 2))) == 2


def test_producers_hand_their_calls_in_together(tmp_path):
    """Two registered producers: a call waits for the other's (here 50 ms later) and they go as one
    backend call; it goes alone once the other producer leaves or the gather window passes."""

    def run_pair(gather: float, second):
        spy = Spy(Echo())
        model = CachedModel(Echo.info, lambda: spy, CallCache(tmp_path / f"c{time.monotonic_ns()}.sqlite"), progress=False)
        both = threading.Barrier(2)

        def first():
            with model.producer(gather):
                both.wait()
                return model.generate(requests_for(0, 2))

        def other():
            with model.producer(gather):
                both.wait()
                time.sleep(0.05)
                return second(model)

        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(first), pool.submit(other)]
            [f.result() for f in futures]
        return spy.calls, time.perf_counter() - started

    calls, seconds = run_pair(10.0, lambda model: model.generate(requests_for(1, 3)))
    assert calls == [("generate", 5)] and seconds < 5
    calls, seconds = run_pair(10.0, lambda model: None)  # leaves without a call
    assert calls == [("generate", 2)] and seconds < 5

    def late(model):
        time.sleep(0.5)
        return model.generate(requests_for(1, 3))

    calls, _ = run_pair(0.05, late)
    assert calls == [("generate", 2), ("generate", 3)]


class Closing(Echo):
    """Echo that records whether it was closed."""

    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_models_of_one_config_share_one_backend_until_the_last_closes(tiny_model_dir, tmp_path, monkeypatch):
    """cached_model with the same config twice: one backend, loaded on the first call, closed when
    the second model closes and not before; each model keeps its own cache and stats. Another
    setting (batch size) is another backend."""
    from selfguide.backends import cache as cache_module
    from selfguide.backends import factory
    from selfguide.backends.model_config import ModelConfig

    made: list[Closing] = []
    monkeypatch.setattr(factory, "make_backend", lambda config: made.append(Closing()) or made[-1])
    config = ModelConfig(name=str(tiny_model_dir), device="cpu")
    first = factory.cached_model(config, CallCache(tmp_path / "first.sqlite"), progress=False)
    second = factory.cached_model(config, CallCache(tmp_path / "second.sqlite"), progress=False)
    other = factory.cached_model(config.model_copy(update={"batch_size": 4}), CallCache(tmp_path / "other.sqlite"), progress=False)
    assert not made  # nothing loads before a call needs it

    first.generate(requests_for(0, 2))
    second.generate(requests_for(1, 3))
    other.generate(requests_for(2, 1))
    assert len(made) == 2 and first.backend() is second.backend() is made[0] and other.backend() is made[1]
    assert (first.stats.calls, len(first.cache), second.stats.calls, len(second.cache)) == (2, 2, 3, 3)

    first.close()
    assert not made[0].closed  # the second model still uses it
    assert second.generate(requests_for(3, 1))[0][0].text.startswith("t3-0")
    second.close()
    assert made[0].closed and not made[1].closed
    other.close()
    assert made[1].closed and not cache_module._shared

    again = factory.cached_model(config, CallCache(tmp_path / "again.sqlite"), progress=False)
    again.generate(requests_for(4, 1))
    assert len(made) == 3  # a model made after the last one closed loads afresh
    again.close()


def test_calls_through_models_that_share_a_backend_merge(tmp_path):
    """Two CachedModels (each its own cache, like two benchmark tasks) sharing one backend: their
    concurrent calls go in as one backend call, and each gets what it gets alone."""
    spy = Spy(Echo(), hold_first=True)
    first = CachedModel(Echo.info, lambda: spy, CallCache(tmp_path / "first.sqlite"), progress=False, share="echo")
    second = CachedModel(Echo.info, lambda: spy, CallCache(tmp_path / "second.sqlite"), progress=False, share="echo")
    jobs = [lambda: first.generate(requests_for(0, 2)), lambda: first.generate(requests_for(1, 3)), lambda: second.generate(requests_for(2, 4))]
    got = run_held(first, spy, jobs)
    alone = CachedModel(Echo.info, Echo, CallCache(tmp_path / "alone.sqlite"), progress=False)
    assert got == [alone.generate(requests_for(t, size)) for t, size in enumerate([2, 3, 4])]
    assert spy.calls == [("generate", 2), ("generate", 7)]
    assert (first.stats.calls, second.stats.calls) == (5, 4)
    first.close()
    second.close()

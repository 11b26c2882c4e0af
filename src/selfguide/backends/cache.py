"""Every model call cached by content in SQLite, so a rerun after a crash or a change redoes
nothing finished.

The key is the model's identity (backend, model, weights fingerprint), the messages and every
sampling setting including the per-request seed. Each result is committed the moment the backend
yields it, so killing the process loses only calls still in flight. The model itself is loaded
lazily: a rerun whose calls are all cached never loads it.

A model is loaded once per process: CachedModels of the same model (the same identity and backend
settings, `share` below) share one backend and, in-process, its Coalescer, so the calls of threads
using different CachedModels (benchmark tasks run at once) merge into shared batches. Each
CachedModel keeps its own call cache, stats and budget; the backend is closed when the last
CachedModel sharing it closes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from selfguide import global_rng
from selfguide.backends.base import Backend, BackendInfo, CandidateScore, Completion, Request, ScoreRequest
from selfguide.backends.batcher import Coalescer
from selfguide.backends.capabilities import capabilities
from selfguide.errors import BudgetExceeded, SelfGuideError
from selfguide.progress import bar as progress_bar

logger = logging.getLogger(__name__)


def request_key(info: BackendInfo, request: Request) -> str:
    payload = {
        "backend": info.backend,
        "model": info.model,
        "fingerprint": info.fingerprint,
        "messages": list(request.messages),
        "params": request.params.as_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def score_key(info: BackendInfo, request: ScoreRequest) -> str:
    """Like `request_key`; the "score" field (absent from generate payloads) keeps the two apart."""
    payload = {
        "score": True,
        "backend": info.backend,
        "model": info.model,
        "fingerprint": info.fingerprint,
        "messages": list(request.messages),
        "candidates": list(request.candidates),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def derive_seed(*parts: object) -> int:
    """A 31-bit seed that depends only on `parts` (run seed, stage, round, slot, text...)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def cache_error(path: Path, doing: str, err: Exception) -> SelfGuideError:
    """One line for a cache that cannot be used: which file, what went wrong, how to recover."""
    text = str(err)
    if "disk" in text.lower() and "full" in text.lower() or getattr(err, "errno", None) == errno.ENOSPC:
        return SelfGuideError(f"{path}: disk full while {doing} the call cache; every finished call is saved: free space and rerun the same command to continue")
    if "not a database" in text or "malformed" in text:
        return SelfGuideError(
            f"{path}: not a usable SQLite call cache ({text}); move it aside (or delete it) and rerun: "
            "the run's data files are kept, and model calls not found in a cache are made again"
        )
    return SelfGuideError(f"{path}: call cache error while {doing} ({type(err).__name__}: {text}); finished calls are saved: fix the cause and rerun")


class CallCache:
    """A SQLite table of finished calls: key -> completions. Safe to share between runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, request TEXT, completions TEXT, created REAL)"
            )
            # What a server said about the model behind a URL and name, to warn when it changes.
            self._db.execute("CREATE TABLE IF NOT EXISTS identities (name TEXT PRIMARY KEY, identity TEXT)")
            self._db.commit()
        except (sqlite3.Error, OSError) as err:
            raise cache_error(self.path, "opening", err) from None

    def note_identity(self, name: str, identity: dict) -> None:
        """Remember what the server reports for `name`; warn when it differs from last time."""
        text = json.dumps(identity, sort_keys=True, default=str)
        with self._lock, self._guard("writing"):
            row = self._db.execute("SELECT identity FROM identities WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != text and identity:
                logger.warning(
                    "%s: the server now reports a different model (%s, was %s): calls cached from the earlier model are not reused",
                    name, text[:200], row[0][:200],
                )
            self._db.execute("INSERT OR REPLACE INTO identities VALUES (?, ?)", (name, text))
            self._db.commit()

    @contextlib.contextmanager
    def _guard(self, doing: str):
        try:
            yield
        except (sqlite3.Error, OSError) as err:
            raise cache_error(self.path, doing, err) from None

    def get_many(self, keys: Sequence[str]) -> dict[str, list[Completion]]:
        return {key: [Completion(**c) for c in rows] for key, rows in self._get(keys).items()}

    def get_scores(self, keys: Sequence[str]) -> dict[str, list[CandidateScore]]:
        return {key: [CandidateScore(**s) for s in rows] for key, rows in self._get(keys).items()}

    def put(self, key: str, model: str, request: Request, completions: list[Completion]) -> None:
        self._put(key, model, {"messages": list(request.messages), "params": request.params.as_dict()}, [c.as_dict() for c in completions])

    def put_scores(self, key: str, model: str, request: ScoreRequest, scores: list[CandidateScore]) -> None:
        self._put(key, model, {"messages": list(request.messages), "candidates": list(request.candidates)}, [s.as_dict() for s in scores])

    def _get(self, keys: Sequence[str]) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        with self._lock, self._guard("reading"):
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, results in self._db.execute(f"SELECT key, completions FROM calls WHERE key IN ({marks})", chunk):
                    found[key] = json.loads(results)
        return found

    def _put(self, key: str, model: str, request: dict, results: list[dict]) -> None:
        row = (key, model, json.dumps(request, ensure_ascii=False), json.dumps(results, ensure_ascii=False), time.time())
        with self._lock, self._guard("writing"):
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)", row)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CallStats:
    """What a run asked of the model: calls made, calls served from the cache, tokens generated.
    One object may be shared by several models and threads (a benchmark's budget). With a `parent`,
    every count goes to the parent too, and the budget is the parent's: one part of a benchmark's
    work, counted apart from the parts that run beside it."""

    FIELDS = ("calls", "cached", "prompt_tokens", "completion_tokens", "seconds")

    def __init__(self, parent: CallStats | None = None) -> None:
        self.parent = parent
        self.lock = threading.Lock()
        self.calls = 0
        self.cached = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seconds = 0.0
        self.reserved = 0  # calls that threads are making now, held against the budget

    def reserve(self, wanted: int, limit: int | None) -> int:
        """How many of `wanted` new calls fit the budget `limit` beside the calls made and those
        other threads are making; those are held until `add(calls=1, reserved=-1)` per call made,
        the rest given back with `add(reserved=-k)`."""
        if self.parent is not None:
            allowed = self.parent.reserve(wanted, limit)
            with self.lock:
                self.reserved += allowed
            return allowed
        with self.lock:
            allowed = wanted if limit is None else max(0, min(wanted, limit - self.calls - self.reserved))
            self.reserved += allowed
            return allowed

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)
        if self.parent is not None:
            self.parent.add(**counts)

    def as_dict(self) -> dict:
        with self.lock:
            return {name: getattr(self, name) for name in self.FIELDS}

    def since(self, before: dict) -> dict:
        """What was asked after `before` (an earlier `as_dict()`)."""
        now = self.as_dict()
        return {name: now[name] - before[name] for name in self.FIELDS}


class LoadedBackend:
    """A backend made on first need and, for an in-process one, the Coalescer that merges concurrent
    calls into it (backends/batcher.py)."""

    def __init__(self, make_backend: Callable[[], Backend], in_process: bool):
        self._make_backend = make_backend
        self._backend: Backend | None = None
        self._lock = threading.Lock()
        self.in_process = in_process
        self.users = 0  # the CachedModels sharing it
        self.coalescer = (
            Coalescer({"generate": lambda todo: self.backend().generate(todo), "score": lambda todo: self.backend().score(todo)}) if in_process else None
        )

    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                # Loading an in-process model may draw on torch's global generator, which a training
                # in another thread must have to itself (selfguide/global_rng.py).
                with global_rng.LOCK if self.in_process else contextlib.nullcontext():
                    self._backend = self._make_backend()
            return self._backend

    def compute(self, kind: str, todo: list):
        if self.coalescer is not None:
            return self.coalescer.run(kind, todo)
        backend = self.backend()
        return backend.generate(todo) if kind == "generate" else backend.score(todo)

    def close(self) -> None:
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()


# Share key -> the backend of the CachedModels with that key. Weak: models dropped without close()
# free their backend with them, as an unshared one would be.
_shared: weakref.WeakValueDictionary[str, LoadedBackend] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def acquire_shared(key: str, make_backend: Callable[[], Backend], in_process: bool) -> LoadedBackend:
    """The backend shared under `key` (made on first need), with one more user."""
    with _shared_lock:
        loaded = _shared.get(key)
        if loaded is None:
            loaded = _shared[key] = LoadedBackend(make_backend, in_process)
        loaded.users += 1
        return loaded


def release_shared(key: str, loaded: LoadedBackend) -> None:
    """One user fewer; the last one closes the backend."""
    with _shared_lock:
        loaded.users -= 1
        if loaded.users > 0:
            return
        if _shared.get(key) is loaded:
            del _shared[key]
    loaded.close()


class CachedModel:
    """The model as the stages see it: `generate(requests)` returns every request's completions,
    from the cache where it can, from the backend (made on first need) where it must."""

    def __init__(
        self,
        info: BackendInfo,
        make_backend: Callable[[], Backend],
        cache: CallCache,
        *,
        max_calls: int | None = None,
        progress: bool = True,
        stats: CallStats | None = None,
        share: str | None = None,
    ):
        """`share`: CachedModels with the same key share one backend, from when they are made to
        when they close (`backends.factory.cached_model` gives the model's identity and settings)."""
        self.info = info
        self._make_backend = make_backend
        self._share = share
        self._loaded: LoadedBackend | None = None
        self._loaded_lock = threading.Lock()
        self.cache = cache
        self.max_calls = max_calls
        self.progress = progress
        self.stats = stats or CallStats()  # share one to hold several models to one --max-calls budget
        self._use()  # holds its share of the backend now (made on first need), so the others cannot close it

    def generate(self, requests: Sequence[Request], desc: str = "generating", progress: bool | None = None) -> list[list[Completion]]:
        """Every request's n completions."""

        def counts(completions: list[Completion]) -> dict:
            return {"prompt_tokens": completions[0].prompt_tokens if completions else 0, "completion_tokens": sum(c.completion_tokens for c in completions)}

        keys = [request_key(self.info, r) for r in requests]
        return self._answer(requests, keys, self.cache.get_many, self.cache.put, lambda todo: self._compute("generate", todo), counts, desc, progress)

    @property
    def supports_scoring(self) -> bool:
        """Whether `score` works: log-likelihoods need the model in this process."""
        return capabilities(self.info.backend).scores

    def score(self, requests: Sequence[ScoreRequest], desc: str = "scoring", progress: bool | None = None) -> list[list[CandidateScore]]:
        """Every request's candidate scores. One request is one call (for --max-calls); its scored
        answer tokens count as prompt tokens."""
        keys = [score_key(self.info, r) for r in requests]
        counts = lambda scores: {"prompt_tokens": sum(s.tokens for s in scores)}  # noqa: E731
        return self._answer(requests, keys, self.cache.get_scores, self.cache.put_scores, lambda todo: self._compute("score", todo), counts, desc, progress)

    def producer(self, gather: float) -> contextlib.AbstractContextManager:
        """While inside, this thread calls in step with other producers: their calls to an
        in-process model gather up to `gather` seconds to share one backend call (backends/batcher.py)."""
        coalescer = self._use().coalescer
        return coalescer.producer(gather) if coalescer is not None else contextlib.nullcontext()

    def _compute(self, kind: str, todo: list):
        return self._use().compute(kind, todo)

    def _use(self) -> LoadedBackend:
        """This model's backend: its own, or the one it shares (taken again when used after close())."""
        with self._loaded_lock:
            if self._loaded is None:
                in_process = capabilities(self.info.backend).in_process  # a server takes concurrent calls as they are
                self._loaded = acquire_shared(self._share, self._make_backend, in_process) if self._share else LoadedBackend(self._make_backend, in_process)
            return self._loaded

    def _answer(self, requests, keys: list[str], get, put, compute, counts, desc: str, progress: bool | None) -> list:
        """Results from the cache where it can, from `compute` (the backend) where it must; each
        result is stored the moment it arrives. Identical requests (same key) are computed once."""
        found = get(list(dict.fromkeys(keys)))
        results: list = [found.get(k) for k in keys]
        self.stats.add(cached=sum(r is not None for r in results))
        missing: dict[str, list[int]] = {}
        for i, (key, result) in enumerate(zip(keys, results)):
            if result is None:
                missing.setdefault(key, []).append(i)
        if missing:
            todo_keys = list(missing)
            # Spend what is left of the budget, keep it all in the cache, then stop cleanly.
            allowed = self.stats.reserve(len(todo_keys), self.max_calls)
            over_budget = allowed < len(todo_keys)
            todo_keys = todo_keys[:allowed]
            todo = [requests[missing[key][0]] for key in todo_keys]
            started = time.perf_counter()
            made = 0
            bar = progress_bar(desc, total=len(requests), initial=len(requests) - sum(len(v) for v in missing.values()), disable=not (self.progress if progress is None else progress), unit="call")
            try:
                for j, result in (compute(todo) if todo else ()):
                    key = todo_keys[j]
                    put(key, self.info.model, todo[j], result)
                    made += 1
                    self.stats.add(calls=1, reserved=-1, **counts(result))
                    for i in missing[key]:
                        results[i] = result
                    bar.update(len(missing[key]))
            finally:
                bar.close()
                self.stats.add(seconds=time.perf_counter() - started, reserved=made - allowed)
            if over_budget:
                raise BudgetExceeded(
                    f"stopped at the --max-calls budget of {self.max_calls} model calls during {desc}; "
                    "everything finished is cached: rerun the same command (with a larger --max-calls, or none) to continue"
                )
        assert all(r is not None for r in results), "backend did not answer every request"
        return results

    def backend(self) -> Backend:
        return self._use().backend()

    def close(self) -> None:
        with self._loaded_lock:
            loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        if self._share:
            release_shared(self._share, loaded)
        else:
            loaded.close()

"""Concurrent calls to one in-process backend, merged into one backend call so they share its batches.

An in-process model runs one call at a time. When threads (pipelined SELF-GUIDE rounds, tasks of a
benchmark) call it together, each call that arrives while another runs waits; when the backend is
free, every waiting call of the same kind (generate or score) goes in as one merged call, so the
backend can pack their rows into shared batches (hf and vLLM batch rows of any sampling settings
together). Each caller still gets its own results, as they come: whichever of a merged call's
callers still waits for results advances the backend's iterator and hands the others theirs, and
leaves once its own are in. One call alone is passed through as it is, so single-threaded use is
unchanged.

Threads that call in step (pipelined rounds: one writes round r+1's inputs while the other labels
round r's) reach a free backend milliseconds apart, and the first would start alone. While two or
more threads are registered as producers (`producer()`), a call that would start the backend
waits until every producer has a call waiting, or a short gather window has passed since the
backend became free (or since the call came, if later); with one producer or none, nothing waits.

Merging changes which requests share a batch; the backends make a request's results depend on the
request alone (per-request seeds, see backends/base.py), so it does not change the data.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from selfguide import interruptible


@dataclass(eq=False)
class _Call:
    kind: str
    items: Sequence
    offset: int = 0  # where its items start in the merged call
    results: list = field(default_factory=list)  # (index, result) not yet handed to the caller
    received: int = 0
    ended: bool = False  # the backend call ended (normally every result is in by then)
    error: BaseException | None = None
    came: float = field(default_factory=time.monotonic)  # when the call came: a gather window starts then at the earliest

    @property
    def complete(self) -> bool:
        return self.received >= len(self.items) or self.ended or self.error is not None


@dataclass(eq=False)
class _Merged:
    kind: str
    items: Sequence
    calls: list[_Call]
    iterator: Iterator | None = None  # made by the first driver, outside the lock (it may load the model)
    driven: bool = False  # a caller is advancing `iterator` right now


class Coalescer:
    """`run(kind, items)` yields (index into items, result) like a backend call; `backends` maps a
    kind to the backend method that takes a list of items."""

    def __init__(self, backends: dict[str, Callable[[Sequence], Iterator[tuple[int, object]]]]):
        self._backends = backends
        self._cond = threading.Condition()
        self._waiting: list[_Call] = []
        self._active: _Merged | None = None
        self._producers: list[float] = []  # each registered producer's gather window, in seconds
        self._freed = time.monotonic()  # when the backend last became free

    @contextlib.contextmanager
    def producer(self, gather: float):
        """While inside, the calling thread is one of the threads that call together; with two or
        more, a call that would start the backend alone waits up to `gather` seconds for the
        others' calls (see the module docstring)."""
        with self._cond:
            self._producers.append(gather)
        try:
            yield
        finally:
            with self._cond:
                self._producers.remove(gather)
                self._cond.notify_all()  # calls gathering for this producer go now

    def run(self, kind: str, items: Sequence) -> Iterator[tuple[int, object]]:
        if not items:
            return
        call = _Call(kind, items)
        with self._cond:
            self._waiting.append(call)
            self._cond.notify_all()  # calls gathering for this one go now
        try:
            yield from self._serve(call)
        except BaseException:
            self._abandon(call)
            raise

    def _serve(self, call: _Call) -> Iterator[tuple[int, object]]:
        while True:
            with self._cond:
                while not self._can_proceed(call):
                    self._cond.wait(interruptible.tick(self._gather_left()))
                ready, call.results = call.results, []
                merged = None
                if not ready and not call.complete:
                    merged = self._active if self._active is not None and call in self._active.calls else self._start()
                    merged.driven = True
            yield from ready
            if merged is not None:
                yield from self._drive(merged, call)
            elif call.complete:
                with self._cond:
                    ready, call.results = call.results, []
                yield from ready
                if call.error is not None:
                    raise call.error
                return

    def _abandon(self, call: _Call) -> None:
        """The caller stopped (its error, or its consumer's): nobody waits for its results any
        more, and a merged call left with no caller to drive it is closed."""
        with self._cond:
            if call in self._waiting:
                self._waiting.remove(call)
            if not call.complete:
                call.error = RuntimeError("the caller stopped")
            merged = self._active
            if merged is not None and call in merged.calls and not merged.driven and all(c.complete for c in merged.calls):
                self._close(merged, merged.iterator)
            self._cond.notify_all()

    def _can_proceed(self, call: _Call) -> bool:
        if call.results or call.complete:
            return True
        if self._active is None:
            return self._waiting[0].kind == call.kind and self._gather_left() is None  # the oldest kind goes first
        return call in self._active.calls and not self._active.driven

    def _gather_left(self) -> float | None:
        """Seconds the waiting calls still gather for other producers' calls; None: they need not
        (among them: with one producer or none, as a waiting call is then as many)."""
        if self._active is not None or not self._waiting or len(self._waiting) >= len(self._producers):
            return None
        left = max(self._waiting[0].came, self._freed) + max(self._producers) - time.monotonic()
        return left if left > 0 else None

    def _start(self) -> _Merged:
        """Every waiting call of the oldest waiting kind, as one backend call (the lock is held)."""
        kind = self._waiting[0].kind
        calls = [c for c in self._waiting if c.kind == kind]
        self._waiting = [c for c in self._waiting if c.kind != kind]
        items: list = []
        for c in calls:
            c.offset = len(items)
            items.extend(c.items)
        # One call alone goes through as it is: the same list, the same backend call as without merging.
        self._active = _Merged(kind, calls[0].items if len(calls) == 1 else items, calls)
        return self._active

    def _drive(self, merged: _Merged, call: _Call) -> Iterator[tuple[int, object]]:
        """Advance the backend until `call` has every result, handing others theirs; then let
        another caller of the merged call drive, or run the backend to its end when none is left."""
        while True:
            with self._cond:
                others = any(not c.complete for c in merged.calls if c is not call)
            if call.complete and others:
                break
            try:
                if merged.iterator is None:
                    merged.iterator = iter(self._backends[merged.kind](merged.items))
                index, result = next(merged.iterator)
            except StopIteration:
                with self._cond:
                    for c in merged.calls:
                        c.ended = True
                break
            except BaseException as err:
                self._fail(merged, call, err)
                raise
            owner = next(c for c in reversed(merged.calls) if c.offset <= index)
            with self._cond:
                owner.received += 1
                if owner is not call:
                    owner.results.append((index - owner.offset, result))
                    self._cond.notify_all()
            if owner is call:
                try:
                    yield index - call.offset, result
                except BaseException:
                    with self._cond:
                        merged.driven = False  # the caller stopped: another caller of the merged call drives on
                    raise
        with self._cond:
            merged.driven = False
            if call.ended:
                self._close(merged, None)
            self._cond.notify_all()

    def _fail(self, merged: _Merged, call: _Call, err: BaseException) -> None:
        """The backend failed (or the driving thread was interrupted inside it): every other caller
        of the merged call fails too."""
        with self._cond:
            for c in merged.calls:
                if c is not call and not c.complete:
                    c.error = err if isinstance(err, Exception) else RuntimeError(f"the merged model call was abandoned ({type(err).__name__})")
            self._close(merged, merged.iterator)
            self._cond.notify_all()

    def _close(self, merged: _Merged, iterator: Iterator | None) -> None:
        if iterator is not None:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # the backend's generator may hold more to yield: let it clean up
        if self._active is merged:
            self._active = None
            self._freed = time.monotonic()

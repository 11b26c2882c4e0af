"""Waits that Ctrl-C can interrupt.

Python raises KeyboardInterrupt in the main thread only when that thread runs bytecode. A SIGINT
that lands just before the thread blocks on a lock, or that the kernel hands to a worker thread,
leaves an untimed wait (a future's result, a queue's get, a condition) blocked for good, with
the request threads still waiting on a server. So the main thread's waits wake up every TICK
seconds and go back to waiting: a pending Ctrl-C then takes effect within a tick.
"""

from __future__ import annotations

import concurrent.futures
import queue
from collections.abc import Iterable

TICK = 0.2  # seconds


def result(future: concurrent.futures.Future):
    """`future.result()`, interruptible."""
    while True:
        try:
            return future.result(timeout=TICK)
        except concurrent.futures.TimeoutError:
            if future.done():  # the future's own TimeoutError, not the wait's
                raise


def get(items: queue.Queue | queue.SimpleQueue):
    """`items.get()`, interruptible."""
    while True:
        try:
            return items.get(timeout=TICK)
        except queue.Empty:
            continue


def wait_all(futures: Iterable[concurrent.futures.Future]) -> None:
    """`concurrent.futures.wait(futures)`, interruptible."""
    pending = set(futures)
    while pending:
        pending = concurrent.futures.wait(pending, timeout=TICK).not_done


def tick(timeout: float | None) -> float:
    """The timeout for a `Condition.wait` in a loop that rechecks its predicate: at most TICK."""
    return TICK if timeout is None else min(timeout, TICK)

"""Waits that Ctrl-C can interrupt.

Python raises KeyboardInterrupt in the main thread only when that thread runs bytecode. A SIGINT
that lands just before the thread blocks on a lock, or that the kernel hands to a worker thread,
leaves an untimed wait (a future's result, a queue's get, a condition) blocked for good, with
the request threads still waiting on a server. So the main thread's waits wake up every TICK
seconds and go back to waiting: a pending Ctrl-C then takes effect within a tick.

Work that an error or Ctrl-C gives up on is left to run in daemon threads (`work_thread`), never
waited for. `leave` ends the process without shutting the interpreter down under them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import NoReturn

TICK = 0.2  # seconds
_work_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def work_thread(target: Callable[[], None], name: str) -> None:
    """Run `target` in a daemon thread: unlike a thread pool's, the interpreter does not wait for it
    at exit, so an error or Ctrl-C in the caller need not wait for the work in progress."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    _work_threads.add(thread)
    thread.start()


def leave(code: int) -> NoReturn:
    """`sys.exit(code)`; after an error or Ctrl-C (`code` not 0) with work threads still running (the
    work given up on), exit at once instead: the interpreter shutting down under a thread inside
    torch aborts the process ("terminate called without an active exception")."""
    if code != 0 and any(thread.is_alive() for thread in _work_threads):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


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


def results(futures: Iterable[concurrent.futures.Future]) -> list:
    """Every future's result, interruptible; the first to fail raises its error at once, without
    waiting for the others."""
    futures = list(futures)
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=TICK, return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in done:
            if (error := future.exception()) is not None:
                raise error
    return [future.result() for future in futures]


def tick(timeout: float | None) -> float:
    """The timeout for a `Condition.wait` in a loop that rechecks its predicate: at most TICK."""
    return TICK if timeout is None else min(timeout, TICK)

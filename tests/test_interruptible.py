"""Ctrl-C stops the main thread's waits even when the signal lands on another thread."""

from __future__ import annotations

import queue
import signal
import threading
import time
from concurrent.futures import Future

import pytest

from selfguide import interruptible


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C as in a terminal: a test run started in the background by a shell without job
    control inherits an ignored SIGINT, and Python then installs no KeyboardInterrupt handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c_on_another_thread(after: float) -> threading.Timer:
    """SIGINT delivered to a helper thread: Python's handler only flags it, and an untimed wait in
    the main thread is never woken (the lost-Ctrl-C race of a blocked main thread)."""
    timer = threading.Timer(after, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGINT))
    timer.start()
    return timer


def future_wait() -> tuple:
    future: Future = Future()
    return (lambda: interruptible.result(future)), (lambda: future.set_result("never interrupted"))


def queue_wait() -> tuple:
    items: queue.Queue = queue.Queue()
    return (lambda: interruptible.get(items)), (lambda: items.put("never interrupted"))


@pytest.mark.parametrize("make_wait", [future_wait, queue_wait])
def test_a_wait_stops_on_ctrl_c(make_wait):
    wait, wake = make_wait()
    rescue = threading.Timer(10, wake)  # a failing test ends instead of hanging
    rescue.start()
    ctrl_c_on_another_thread(0.3)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        wait()
    assert time.monotonic() - started < 3  # an untimed wait would sit until the rescue at 10 s
    rescue.cancel()


def test_results_and_errors_come_through_after_several_ticks():
    done: Future = Future()
    threading.Timer(3 * interruptible.TICK, done.set_result, (7,)).start()
    assert interruptible.result(done) == 7
    failed: Future = Future()
    failed.set_exception(TimeoutError("the call's own timeout"))
    with pytest.raises(TimeoutError, match="the call's own"):
        interruptible.result(failed)
    later: Future = Future()
    threading.Timer(3 * interruptible.TICK, later.set_result, (1,)).start()
    interruptible.wait_all([done, later])
    assert later.done()

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


def results_wait() -> tuple:
    futures: list[Future] = [Future(), Future()]
    return (lambda: interruptible.results(futures)), (lambda: [f.set_result("never interrupted") for f in futures])


@pytest.mark.parametrize("make_wait", [future_wait, queue_wait, results_wait])
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


def test_the_first_error_comes_through_without_waiting_for_the_rest():
    slow, failing, done = Future(), Future(), Future()
    done.set_result(1)
    threading.Timer(2 * interruptible.TICK, failing.set_exception, (ValueError("task b failed"),)).start()
    rescue = threading.Timer(10, slow.set_result, (2,))  # a failing test ends instead of hanging
    rescue.start()
    started = time.monotonic()
    with pytest.raises(ValueError, match="task b failed"):
        interruptible.results([slow, failing, done])
    assert time.monotonic() - started < 3
    rescue.cancel()
    slow.set_result(2)
    assert interruptible.results([slow, done]) == [2, 1]


def test_leaving_with_work_still_running_in_torch_exits_with_the_code():
    """Ctrl-C (or an error) while a work thread is inside torch: sys.exit would shut the interpreter
    down under it, which aborts the process (exit 134, "terminate called without an active
    exception"); `leave` exits with the code."""
    import subprocess
    import sys

    script = """
import sys, time, torch
from selfguide import interruptible

def spin():
    a = torch.randn(300, 300)
    while True:
        a = torch.tanh(a @ a)

interruptible.work_thread(spin, "spin")
time.sleep(0.5)
interruptible.leave(130)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 130, done.stderr[-300:]

"""One process at a time per run folder.

Two processes writing the same run folder would each write every input and make every model call
twice. The lock is an OS file lock (filelock), so the operating system drops it when its holder
exits in any way, kill -9 included: there is never a stale lock to force open.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from selfguide.errors import SelfGuideError

LOCK_FILE = ".selfguide.lock"
HOLDER_FILE = ".selfguide.lock.json"  # who holds it, for the message the next process prints


@contextlib.contextmanager
def hold_run_folder(folder: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold `folder`'s lock for the block; without `wait`, stop at once if another process holds it."""
    lock = FileLock(str(folder / LOCK_FILE), timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise SelfGuideError(
            f"{folder}: run folder in use by another selfguide process{holder(folder)}; "
            "rerun with --wait to wait for it, or pass another --out"
        ) from None
    try:
        (folder / HOLDER_FILE).write_text(json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        yield
    finally:
        lock.release()


def holder(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_FILE).read_text())
        return f" (pid {info['pid']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""

"""Progress bars (tqdm) that say whose work they show: when benchmark tasks run at once in threads,
each task's bars start with its name (tqdm gives every open bar its own line)."""

from __future__ import annotations

import contextlib
import threading

from tqdm.auto import tqdm

_thread = threading.local()


@contextlib.contextmanager
def labelled(label: str):
    """Inside, the bars this thread opens start with `label`."""
    _thread.label = label
    try:
        yield
    finally:
        _thread.label = None


def bar(desc: str, **kwargs) -> tqdm:
    label = getattr(_thread, "label", None)
    return tqdm(desc=f"{label}: {desc}" if label else desc, **kwargs)

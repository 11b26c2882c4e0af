"""Where a run writes: the run folder's name and making it, locked, with its config inside."""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from selfguide.errors import BadInputError
from selfguide.runlock import hold_run_folder

RUNS_ROOT = Path("runs")


def safe_folder_name(name: str) -> str:
    """`name` as one plain folder name: no separators, no `..`, no leading dot, never empty.

    A task file's `name` decides the default run folder, so `../../x` or `/etc` must not reach
    outside `runs/`."""
    text = unicodedata.normalize("NFKC", name)
    text = re.sub(r"[^\w.-]+", "-", text).strip("-.")
    return text[:100] or "task"


def default_run_folder(task_name: str) -> Path:
    return RUNS_ROOT / safe_folder_name(task_name)


def make_folder(folder: Path, flag: str = "--out") -> Path:
    """Create `folder` (and parents), or say in one line why it cannot be a run folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".selfguide.write-test"
        probe.write_text("")
        probe.unlink()
    except FileExistsError:
        raise BadInputError(flag, str(folder), "a folder (or a path where one can be created)", "an existing file") from None
    except OSError as err:
        raise BadInputError(flag, str(folder), "a folder selfguide can create and write to", err.strerror or str(err)) from None
    return folder


@contextlib.contextmanager
def open_run_folder(folder: Path, *, wait: bool = False, flag: str = "--out") -> Iterator[Path]:
    """The run folder, created and locked against other processes for the block."""
    make_folder(folder, flag)
    with hold_run_folder(folder, wait=wait):
        yield folder

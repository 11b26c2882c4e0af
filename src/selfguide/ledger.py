"""What each invocation on a run folder cost: one line per command in `<out>/invocations.jsonl`.

A resumed run is several invocations; each one's model calls and stage times are kept, so the
report can show every invocation and their totals rather than only the last one's."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from selfguide import layout
from selfguide.backends.cache import CallStats
from selfguide.io import append_jsonl, read_records


@contextlib.contextmanager
def record_invocation(out: Path, command: str, stats: CallStats, timings: dict[str, float]) -> Iterator[None]:
    """Append this invocation's entry when the block ends, however it ends (not on kill -9)."""
    started, clock = time.time(), time.perf_counter()
    status = "interrupted"
    try:
        yield
        status = "finished"
    except Exception as err:
        status = f"failed: {type(err).__name__}"
        raise
    finally:
        entry = {
            "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "seconds": round(time.perf_counter() - clock, 3),
            "status": status,
            "stages": {k: round(v, 3) for k, v in timings.items()},
            "model_calls": stats.as_dict(),
        }
        with contextlib.suppress(OSError):  # a full disk must not hide the real error
            append_jsonl(out / layout.LEDGER, [entry])


def read_invocations(out: Path) -> list[dict]:
    return read_records(out / layout.LEDGER)


def totals(invocations: list[dict]) -> dict:
    """Seconds and model-call counts summed over invocations."""
    total: dict = {"invocations": len(invocations), "seconds": 0.0}
    for row in invocations:
        total["seconds"] += row.get("seconds", 0.0)
        for name, value in (row.get("model_calls") or {}).items():
            total[name] = total.get(name, 0) + value
    return total

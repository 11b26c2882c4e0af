"""The ablation table of docs/quality.md from run folders laid out as <root>/<lever>/<task>-s<seed>/.

Each folder is one `selfguide run` (configs/cpu.yaml plus the lever's --set); levers that change
only the labels or the filters share the bench's call cache, so they differ only in what was kept.

    python bench/quality_ablation.py /tmp/q                  # Markdown tables on stdout
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from selfguide import layout
from selfguide.report.verdict import comparison, read_json


def runs(root: Path) -> list[dict]:
    """One row per finished run: lever, task, seed, prompting, finetuned, gain with its interval, pairs, diagnostic."""
    rows = []
    for folder in sorted(root.glob("*/*-s*")):
        match = re.fullmatch(r"(task\w+)-s(\d+)", folder.name)
        found = comparison(folder, layout.FINETUNED) if match else None
        if found is None:
            continue
        metric, c = found
        synth = read_json(layout.synth_dir(folder) / layout.SUMMARY) or {}
        diag = synth.get("self_label_accuracy") or {}
        rows.append(
            {
                "lever": folder.parent.name,
                "task": match[1],
                "seed": int(match[2]),
                "metric": metric,
                "prompting": c.baseline,
                "finetuned": c.system,
                "gain": c.diff,
                "low": c.low,
                "high": c.high,
                "pairs": synth.get("pairs"),
                **{k: diag.get(k) for k in ("accuracy", "pass_rate", "passed_accuracy", "prompting_on_passed", "label_gain")},
            }
        )
    return rows


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.2f} (1 seed)"
    return f"{statistics.fmean(values):+.2f} ± {statistics.stdev(values):.2f} ({len(values)} seeds)"


def tables(rows: list[dict]) -> str:
    by = defaultdict(list)
    for row in rows:
        by[(row["lever"], row["task"])].append(row)
    tasks = sorted({row["task"] for row in rows})
    levers = sorted({row["lever"] for row in rows}, key=lambda name: (name != "base", name))
    lines = ["| lever | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for lever in levers:
        cells = [spread([r["gain"] for r in by[(lever, task)]]) if by[(lever, task)] else "-" for task in tasks]
        lines.append(f"| {lever} | " + " | ".join(cells) + " |")
    lines += ["", "| lever | task | seed | prompting | finetuned | gain (95% CI) | pairs | self-label: all / pass rate / passed / prompting on passed |", "|---|---|---:|---:|---:|---|---:|---|"]
    for row in sorted(rows, key=lambda r: (r["task"], levers.index(r["lever"]), r["seed"])):
        diag = " / ".join("-" if row[k] is None else f"{row[k]:.1f}" for k in ("accuracy", "pass_rate", "passed_accuracy", "prompting_on_passed"))
        lines.append(
            f"| {row['lever']} | {row['task']} | {row['seed']} | {row['prompting']:.2f} | {row['finetuned']:.2f} | "
            f"{row['gain']:+.2f} ({row['low']:+.2f} to {row['high']:+.2f}) | {row['pairs']} | {diag} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    found = runs(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quality"))
    print(tables(found))
    if "--json" in sys.argv:
        print(json.dumps(found, indent=1))

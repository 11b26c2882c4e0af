"""The ablation table of docs/quality.md from run folders laid out as <root>/<lever>/<task>-s<seed>/.

Each folder is one `selfguide run` (configs/cpu.yaml plus the lever's --set); levers that change
only the labels or the filters share the bench's call cache, so they differ only in what was kept.

    python bench/quality_ablation.py /tmp/q                  # Markdown tables on stdout
    python bench/quality_ablation.py /tmp/q --baseline r4    # paired against the lever r4, not base
    python bench/quality_ablation.py /tmp/q --json           # and every run's row as JSON
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
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


def tables(rows: list[dict], baseline: str = "base") -> str:
    by = defaultdict(list)
    for row in rows:
        by[(row["lever"], row["task"])].append(row)
    tasks = sorted({row["task"] for row in rows})
    levers = sorted({row["lever"] for row in rows}, key=lambda name: (name != baseline, name))
    # The paper's rule (max-min): a lever is judged by its worst task; vs the baseline is paired by (task, seed).
    base = {(r["task"], r["seed"]): r["gain"] for r in rows if r["lever"] == baseline}
    lines = ["| lever | " + " | ".join(tasks) + f" | mean of task means | worst task | vs {baseline}, paired (task, seed) |", "|---|" + "---:|" * (len(tasks) + 3)]
    for lever in levers:
        cells = [spread([r["gain"] for r in by[(lever, task)]]) if by[(lever, task)] else "-" for task in tasks]
        means = [statistics.fmean(r["gain"] for r in by[(lever, task)]) for task in tasks if by[(lever, task)]]
        paired = [r["gain"] - base[(r["task"], r["seed"])] for r in rows if r["lever"] == lever and (r["task"], r["seed"]) in base]
        versus = "-" if lever == baseline or not paired else f"{statistics.fmean(paired):+.2f}, better on {sum(d > 0 for d in paired)} of {len(paired)}"
        lines.append(f"| {lever} | " + " | ".join(cells) + f" | {statistics.fmean(means):+.2f} | {min(means):+.2f} | {versus} |")
    lines += ["", "| lever | task | seed | prompting | finetuned | gain (95% CI) | pairs | self-label: all / pass rate / passed / prompting on passed |", "|---|---|---:|---:|---:|---|---:|---|"]
    for row in sorted(rows, key=lambda r: (r["task"], levers.index(r["lever"]), r["seed"])):
        diag = " / ".join("-" if row[k] is None else f"{row[k]:.1f}" for k in ("accuracy", "pass_rate", "passed_accuracy", "prompting_on_passed"))
        lines.append(
            f"| {row['lever']} | {row['task']} | {row['seed']} | {row['prompting']:.2f} | {row['finetuned']:.2f} | "
            f"{row['gain']:+.2f} ({row['low']:+.2f} to {row['high']:+.2f}) | {row['pairs']} | {diag} |"
        )
    lines += ["", prediction(rows)]
    return "\n".join(lines)


def prediction(rows: list[dict]) -> str:
    """How often the self-label diagnostic, read before training, has the sign of the gain: the
    label gain (passed labels minus prompting on the same items) and the pass rate."""
    known = [r for r in rows if r["label_gain"] is not None]
    if not known:
        return "No run recorded the self-label diagnostic with prompting."
    agree = sum((r["label_gain"] > 0) == (r["gain"] > 0) for r in known)
    helped = sum(r["gain"] > 0 for r in known)
    return (
        f"Diagnostic: the sign of the label gain matched the sign of the finetuning gain in {agree} of {len(known)} runs; "
        f"the gain was positive in {helped} of {len(known)} (always guessing 'helps' is right {max(helped, len(known) - helped)} times)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("runs/quality"))
    parser.add_argument("--baseline", default="base", help="the lever every other one is paired against")
    parser.add_argument("--json", action="store_true", help="also print every run's row as JSON")
    args = parser.parse_args()
    found = runs(args.root)
    print(tables(found, args.baseline))
    if args.json:
        print(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()

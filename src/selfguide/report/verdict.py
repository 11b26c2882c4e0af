"""The two lines that answer "did it help, and why", from the files of a run folder.

The verdict: the reported metric, prompting -> finetuned, the difference with a paired bootstrap
95% interval, and win/tie/loss counts over the eval items. The why: the pairs trained on, the
funnel stage that lost the largest share of what entered it, and the self-label accuracy when
synthesis measured it. `selfguide run`, the report and the dataset card all print these lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from selfguide import layout
from selfguide.eval.stats import PairedComparison, paired_bootstrap
from selfguide.stages.funnel import chance_note
from selfguide.stages.self_label import diagnostic_text
from selfguide.summary import StageRow, read_summary


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_rows(path: Path) -> list[dict] | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    rows = []
    for line in filter(str.strip, lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # a last line cut short by a crash
    return rows


def compared_system(run_dir: Path) -> str:
    """What prompting is compared with: the finetuned model, or else the evaluation of an
    inference-time method (prompting-with-filters, synthetic-in-context) in eval/<method>/."""
    if (layout.eval_dir(run_dir, layout.FINETUNED) / layout.PREDICTIONS).exists():
        return layout.FINETUNED
    try:
        method = yaml.safe_load((run_dir / layout.CONFIG).read_text(encoding="utf-8"))["synth"]["method"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return layout.FINETUNED
    if isinstance(method, str) and (layout.eval_dir(run_dir, method) / layout.PREDICTIONS).exists():
        return method
    return layout.FINETUNED


def comparison(run_dir: Path, system: str) -> tuple[str, PairedComparison] | None:
    """The reported metric and the paired comparison of its per-item scores (0-100) between
    prompting and `system`, or None when either one's predictions are missing or they were scored
    on different items."""
    metrics = read_json(layout.eval_dir(run_dir, layout.PROMPTING) / layout.METRICS)
    base = read_rows(layout.eval_dir(run_dir, layout.PROMPTING) / layout.PREDICTIONS)
    tuned = read_rows(layout.eval_dir(run_dir, system) / layout.PREDICTIONS)
    if not metrics or not base or not tuned or len(base) != len(tuned):
        return None
    metric = metrics["reported_metric"]
    if any(b.get("id") != t.get("id") or metric not in b or metric not in t for b, t in zip(base, tuned)):
        return None
    return metric, paired_bootstrap([100 * b[metric] for b in base], [100 * t[metric] for t in tuned])


def verdict_line(run_dir: Path) -> str:
    system = compared_system(run_dir)
    found = comparison(run_dir, system)
    if found is None:
        base = read_json(layout.eval_dir(run_dir, layout.PROMPTING) / layout.METRICS)
        if base is None:
            return "Verdict: no evaluation results yet (eval/prompting/metrics.json is missing)."
        return f"Verdict: not compared: prompting {base['reported_metric']} {base['reported']:.2f}, no finetuned model was evaluated."
    metric, c = found
    outcome = "helped" if c.low > 0 else "hurt" if c.high < 0 else "no clear difference"
    return (
        f"Verdict ({outcome}): {metric} {c.baseline:.2f} -> {c.system:.2f} ({c.diff:+.2f}, 95% CI {c.low:+.2f} to {c.high:+.2f}); "
        f"{system} wins {c.wins}, ties {c.ties}, loses {c.losses} of {c.n} eval items."
    )


def why_line(run_dir: Path) -> str:
    summary = read_summary(layout.synth_dir(run_dir) / layout.SUMMARY)
    if summary is None:
        return "Why: synthesis did not finish (synth/summary.json is missing)."
    done = read_json(layout.train_dir(run_dir) / layout.TRAIN_DONE)
    pairs = summary.pairs
    trained = f"trained on {done.get('n_train', pairs)} pairs" if done else f"not trained ({pairs} synthetic pairs)"
    parts = [trained]
    worst = worst_stage(summary.stages)
    # How many inputs (written, or from a file) the filters let through (few written ones pass for a model that cannot write the task's inputs, a base model say), unless said next.
    inputs = next((s for s in summary.stages if s.stage == "input_filter" and s.total), None)
    if inputs and not (worst or "").startswith("the funnel lost most at input_filter"):
        source = "inputs from the file" if summary.models is not None and summary.models.from_file else "written inputs"
        parts.append(f"the input filters kept {inputs.kept} of {inputs.total} {source} ({100 * inputs.kept / inputs.total:.0f}%)")
    if worst:
        parts.append(worst)
    accuracy = summary.self_label_accuracy
    if accuracy is not None and accuracy.accuracy is not None:
        parts.append(
            f"before training, the model's own labels scored {accuracy.accuracy:.1f} {accuracy.metric} "
            f"on {accuracy.n} {accuracy.source} ({accuracy.labeler} labels){chance_note(accuracy)}"
        )
        if split := diagnostic_text(accuracy.model_dump()):
            parts[-1] += f": {split}"
    missing = summary.labels.missing_from_final if summary.labels is not None else []
    if missing and done:
        parts.append(f"the synthetic data had no pair labelled {', '.join(map(repr, missing))}, so finetuning taught fewer answers than the task has")
    return "Why: " + "; ".join(parts) + "."


def worst_stage(stages: list[StageRow]) -> str | None:
    """The stage that dropped the largest share of what entered it, with its main reason."""
    lossy = [s for s in stages if s.total and s.total > s.kept]
    if not lossy:
        return None
    stage = max(lossy, key=lambda s: s.n_dropped / s.total)
    return f"the funnel lost most at {stage.stage}: {stage.n_dropped} of {stage.total} {stage.unit}s dropped (mostly {stage.main_reason()})"

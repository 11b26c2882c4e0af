"""Which system to deploy: every system a user could serve for this task, on the same eval items.

The systems are prompting, prompting with label scoring (classification on an in-process model),
the finetuned model, and the finetuned model with label scoring, each scored per eval item in
eval/<name>/predictions.jsonl. The recommendation is the simplest system (in that order) that no
other system beats with a paired-bootstrap 95% interval above 0, among prompting and the systems
that beat prompting that way: a gain that may be noise does not justify training and serving a
finetuned model, and the recommendation is never a system below prompting. "Prompting with label
scoring; finetuning did not help this task" is a valid answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfguide import layout
from selfguide.eval.stats import paired_bootstrap
from selfguide.io import write_json
from selfguide.report.verdict import compared_system, read_json, read_rows, verdict_line, why_line

LABEL_SCORED = "label_scored_exact_match"  # the per-item column eval/evaluate.py writes


@dataclass(frozen=True)
class System:
    name: str  # as the report says it
    finetuned: bool
    metric: str
    scores: list[float]  # 0-100 per eval item, in the eval set's order


def systems(run_dir: Path) -> list[System]:
    """The deployable systems that were evaluated, simplest first; [] without prompting's predictions."""
    run_dir = Path(run_dir)
    metrics = read_json(layout.eval_dir(run_dir, layout.PROMPTING) / layout.METRICS)
    base = read_rows(layout.eval_dir(run_dir, layout.PROMPTING) / layout.PREDICTIONS)
    if not metrics or not base:
        return []
    # The generated answers' metric even when eval.reported is label_scored: label scoring is its own system here.
    metric = "exact_match" if metrics["reported_metric"] == LABEL_SCORED else metrics["reported_metric"]
    found = [*variants("prompting", False, base, metric)]
    trained = compared_system(run_dir)
    tuned = read_rows(layout.eval_dir(run_dir, trained) / layout.PREDICTIONS)
    if tuned and [r.get("id") for r in tuned] == [r.get("id") for r in base]:
        name = "the finetuned model" if trained == layout.FINETUNED else trained
        found += variants(name, trained == layout.FINETUNED, tuned, metric)
    return found


def variants(name: str, finetuned: bool, rows: list[dict], metric: str) -> list[System]:
    """The generated answers, and the label-scored ones where every row has them."""
    found = []
    if all(metric in r for r in rows):
        found.append(System(name, finetuned, metric, [100 * r[metric] for r in rows]))
    if all(LABEL_SCORED in r for r in rows):
        found.append(System(f"{name} with label scoring", finetuned, "exact_match", [100 * r[LABEL_SCORED] for r in rows]))
    return found


def recommend(found: list[System]) -> dict | None:
    """The recommended system, its comparison with prompting, and every system's, as plain data."""
    if not found:
        return None
    base = found[0]
    beats = {(a.name, b.name): paired_bootstrap(b.scores, a.scores) for a in found for b in found if a is not b}
    # Only prompting, or a system that clearly beats it, can be recommended: never one below prompting.
    eligible = [base] + [s for s in found[1:] if beats[(s.name, base.name)].low > 0]
    unbeaten = [s for s in eligible if not any(beats[(other.name, s.name)].low > 0 for other in found if other is not s)]
    chosen = unbeaten[0] if unbeaten else max(eligible, key=lambda s: mean(s.scores))
    result = {
        "system": chosen.name,
        "finetuned": chosen.finetuned,
        "metric": chosen.metric,
        "score": mean(chosen.scores),
        "vs_prompting": None if chosen is base else beats[(chosen.name, base.name)].as_dict(),
        "systems": [
            {"system": s.name, "finetuned": s.finetuned, "metric": s.metric, "score": mean(s.scores), "vs_prompting": None if s is base else beats[(s.name, base.name)].as_dict()}
            for s in found
        ],
    }
    trained = [s for s in found if s.finetuned]
    if trained and not chosen.finetuned:
        best = max(trained, key=lambda s: mean(s.scores))
        result["finetuning"] = {"system": best.name, "vs_recommended": beats[(best.name, chosen.name)].as_dict()}
    elif chosen.finetuned:
        untrained = max((s for s in found if not s.finetuned), key=lambda s: mean(s.scores))
        result["finetuning"] = {"system": untrained.name, "vs_recommended": beats[(untrained.name, chosen.name)].as_dict()}
    result["line"] = deploy_line(result)
    return result


def mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


def interval(c: dict) -> str:
    return f"{c['diff']:+.2f}, 95% CI {c['low']:+.2f} to {c['high']:+.2f}"


def deploy_line(rec: dict) -> str:
    """One sentence: what to deploy, by how much it beats prompting, and what finetuning did."""
    head = f"Deploy: {rec['system']} ({rec['metric']} {rec['score']:.2f}"
    head += ")" if rec["vs_prompting"] is None else f"; {interval(rec['vs_prompting'])} vs prompting)"
    other = rec.get("finetuning")
    if other is None:
        reason = "no finetuned model was evaluated" if rec["vs_prompting"] is None else ""
    elif rec["finetuned"]:
        reason = f"it clearly beat every untrained system ({other['system']}: {interval(other['vs_recommended'])})"
    else:
        reason = f"finetuning did not help this task ({other['system']}: {interval(other['vs_recommended'])} vs {rec['system']})"
    if rec["vs_prompting"] is None and other is not None and not rec["finetuned"]:
        reason = f"no system clearly beat it; {reason}"
    return head + ("; " + reason if reason else "") + "."


def recommendation(run_dir: Path) -> dict | None:
    """The recommendation for a run folder (None before prompting was evaluated)."""
    return recommend(systems(Path(run_dir)))


def headline(run_dir: Path) -> list[str]:
    """The answer a run opens with: the verdict line, the why line, and which system to deploy
    (once prompting was evaluated)."""
    rec = recommendation(Path(run_dir))
    return [verdict_line(Path(run_dir)), why_line(Path(run_dir))] + ([rec["line"]] if rec else [])


def write_recommendation(run_dir: Path) -> None:
    """Which system to deploy, as the `recommendation` key of <run>/summary.json (other keys kept)."""
    path = Path(run_dir) / layout.SUMMARY
    write_json(path, {**(read_json(path) or {}), "recommendation": recommendation(Path(run_dir))})

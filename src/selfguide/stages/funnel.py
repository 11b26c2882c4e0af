"""The accounting every method writes: one funnel row per stage (in, kept, drops by reason) and
summary.md, the funnel as a table."""

from __future__ import annotations

from collections import Counter


def stage_row(stage: str, unit: str, statuses: list[tuple[str, str | None]]) -> dict:
    """One funnel row: how many entered, how many were kept, and the drops by reason."""
    dropped = Counter(reason for status, reason in statuses if status == "dropped")
    kept = sum(status == "kept" for status, _ in statuses)
    return {"stage": stage, "unit": unit, "total": len(statuses), "kept": kept, "dropped": dict(sorted(dropped.items()))}


def summary_markdown(summary: dict) -> str:
    """summary.json as Markdown: the funnel, the labels (classification), the self-label
    diagnostic and the model calls, each where the summary has it."""
    subject = f"{summary['task']} ({summary['type']})" if summary.get("task") else summary.get("method", "")
    lines = [
        f"# Synthesis summary: {subject}",
        "",
        "| stage | unit | in | kept | dropped | drops by reason |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in summary["stages"]:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in row["dropped"].items()) or "-"
        lines.append(f"| {row['stage']} | {row['unit']} | {row['total']} | {row['kept']} | {row['total'] - row['kept']} | {reasons} |")
    lines += ["", f"Final pairs: **{summary['pairs']}**"]
    if "labels" in summary:
        labels = summary["labels"]
        lines += ["", "| label | kept inputs (pseudo-label) | voted pairs | final pairs |", "|---|---:|---:|---:|"]
        names = sorted(set(labels["pseudo_labels_of_kept_inputs"]) | set(labels["voted"]) | set(labels["final"]), key=str)
        for name in names:
            lines.append(
                f"| {name} | {labels['pseudo_labels_of_kept_inputs'].get(name, 0)} | {labels['voted'].get(name, 0)} | {labels['final'].get(name, 0)} |"
            )
        if labels["missing_from_final"]:
            lines += ["", f"Labels with no synthetic pair: {', '.join(labels['missing_from_final'])}"]
    if accuracy := summary.get("self_label_accuracy"):
        lines += [
            "",
            f"Self-label accuracy: {accuracy['accuracy']:.1f} {accuracy['metric']} on {accuracy['n']} {accuracy['source']} "
            f"({accuracy['passed_vote']} passed the vote){chance_note(accuracy)}.",
        ]
    if models := summary.get("models"):
        lines += ["", f"Data written by {models['wrote']}, labelled by {models['labelled']}; trained: {models['trained']}."]
    if "model_calls" in summary:
        calls = summary["model_calls"]
        lines += ["", f"Model calls: {calls['calls']} made, {calls['cached']} from cache, {calls['completion_tokens']} tokens generated."]
        total = summary.get("model_calls_total")
        if total and len(summary.get("model_calls_by_invocation", [])) > 1:
            lines += [f"Over all {len(summary['model_calls_by_invocation'])} invocations: {total['calls']} calls made, {total['completion_tokens']} tokens generated."]
    return "\n".join(lines) + "\n"


def chance_note(accuracy: dict) -> str:
    """', no better than always answering "C" (65.0)' where that is so, else ''."""
    if "majority_accuracy" not in accuracy or accuracy["accuracy"] > accuracy["majority_accuracy"]:
        return ""
    note = f", no better than always answering {accuracy['majority_label']!r} ({accuracy['majority_accuracy']:.1f})"
    if accuracy.get("top_self_label_share", 0) >= 90:
        note += f"; {accuracy['top_self_label_share']:.0f}% of its labels were {accuracy['top_self_label']!r}"
    return note

"""The accounting every method writes: one funnel row per stage (in, kept, drops by reason) and
summary.md, the funnel as a table."""

from __future__ import annotations

from collections import Counter

from selfguide.stages.outcome import outcomes
from selfguide.summary import SelfLabelAccuracy, StageRow, summary_of


def stage_row(stage: str, unit: str, statuses: list[tuple[str, str | None]]) -> dict:
    """One funnel row: how many entered, how many were kept, and the drops by reason."""
    judged = outcomes(statuses)
    dropped = Counter(o.reason for o in judged if o.status == "dropped")
    kept = sum(o.status == "kept" for o in judged)
    return StageRow(stage=stage, unit=unit, total=len(judged), kept=kept, dropped=dict(sorted(dropped.items()))).model_dump()


def fmt_reasons(row: StageRow) -> str:
    return ", ".join(f"{reason}: {count}" for reason, count in row.dropped.items()) or "-"


def summary_markdown(data: dict) -> str:
    """summary.json as Markdown: the funnel, the labels (classification), the self-label
    diagnostic and the model calls, each where the summary has it."""
    summary = summary_of(data)
    subject = f"{summary.task} ({summary.type})" if summary.task else data.get("method", "")
    lines = [
        f"# Synthesis summary: {subject}",
        "",
        "| stage | unit | in | kept | dropped | drops by reason |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in summary.stages:
        lines.append(f"| {row.stage} | {row.unit} | {row.total} | {row.kept} | {row.n_dropped} | {fmt_reasons(row)} |")
    lines += ["", f"Final pairs: **{summary.pairs}**"]
    if "labels" in data and (labels := summary.labels) is not None:
        lines += ["", "| label | kept inputs (pseudo-label) | voted pairs | final pairs |", "|---|---:|---:|---:|"]
        names = sorted(set(labels.pseudo_labels_of_kept_inputs) | set(labels.voted) | set(labels.final), key=str)
        for name in names:
            lines.append(f"| {name} | {labels.pseudo_labels_of_kept_inputs.get(name, 0)} | {labels.voted.get(name, 0)} | {labels.final.get(name, 0)} |")
        if labels.missing_from_final:
            lines += ["", f"Labels with no synthetic pair: {', '.join(labels.missing_from_final)}"]
    if (accuracy := summary.self_label_accuracy) is not None:
        lines += [
            "",
            f"Self-label accuracy: {accuracy.accuracy:.1f} {accuracy.metric} on {accuracy.n} {accuracy.source} "
            f"({accuracy.passed_vote} passed the vote){chance_note(accuracy)}.",
        ]
    if (models := summary.models) is not None:
        lines += ["", f"Data written by {models.wrote}, labelled by {models.labelled}; trained: {models.trained}."]
    if (calls := summary.model_calls) is not None:
        lines += ["", f"Model calls: {calls.calls} made, {calls.cached} from cache, {calls.completion_tokens} tokens generated."]
        total = summary.model_calls_total
        if total and len(summary.model_calls_by_invocation) > 1:
            lines += [f"Over all {len(summary.model_calls_by_invocation)} invocations: {total.calls} calls made, {total.completion_tokens} tokens generated."]
    return "\n".join(lines) + "\n"


def chance_note(accuracy: SelfLabelAccuracy | dict) -> str:
    """', no better than always answering "C" (65.0)' where that is so, else ''."""
    if isinstance(accuracy, dict):  # as self_label_accuracy returns it, before summary.json
        accuracy = SelfLabelAccuracy.model_validate(accuracy)
    if accuracy.majority_accuracy is None or accuracy.accuracy is None or accuracy.accuracy > accuracy.majority_accuracy:
        return ""
    note = f", no better than always answering {accuracy.majority_label!r} ({accuracy.majority_accuracy:.1f})"
    if accuracy.top_self_label_share >= 90:
        note += f"; {accuracy.top_self_label_share:.0f}% of its labels were {accuracy.top_self_label!r}"
    return note

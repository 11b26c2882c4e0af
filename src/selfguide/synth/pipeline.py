"""The synthesis stages end to end: inputs -> input filters -> annotation -> vote -> balance,
with every candidate and sample accounted for and every file written to the run folder.

Files in `<out>/synth/`:
  inputs.jsonl       every candidate input, kept or dropped with its reason (written per round)
  annotations.jsonl  every labelled input with its samples, their fates and the vote
  dataset.jsonl      the final pairs with provenance
  drops.jsonl        every drop of an input, a sample or a pair, with its stage and reason
  summary.json/.md   the funnel per stage and reason, and the label counts
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.cache import CachedModel
from selfguide.io import append_jsonl, write_json, write_jsonl, write_text
from selfguide.synth.filters import InputFilterConfig
from selfguide.synth.inputs import InputGenConfig, generate_inputs
from selfguide.synth.outputs import OutputGenConfig, annotate, balance_classes
from selfguide.synth.self_label import SelfLabelConfig, self_label_accuracy
from selfguide.tasks.spec import TaskSpec


class SynthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: InputGenConfig = Field(default_factory=InputGenConfig)
    input_filters: InputFilterConfig = Field(default_factory=InputFilterConfig)
    outputs: OutputGenConfig = Field(default_factory=OutputGenConfig)
    self_label: SelfLabelConfig = Field(default_factory=SelfLabelConfig)


def synthesize(task: TaskSpec, model: CachedModel, config: SynthConfig, out_dir: Path, seed: int) -> dict:
    """Run every synthesis stage, write the files, and return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    calls_before = model.stats.as_dict()
    inputs_path = out_dir / "inputs.jsonl"
    write_jsonl(inputs_path, [])
    candidates = generate_inputs(
        task, model, config.inputs, config.input_filters, seed, on_round=lambda rows: append_jsonl(inputs_path, rows)
    )
    kept_inputs = [r for r in candidates if r["status"] == "kept"]
    annotations = annotate(task, kept_inputs, model, config.outputs, seed)
    write_jsonl(out_dir / "annotations.jsonl", annotations)
    voted = [a for a in annotations if a["status"] == "kept"]
    if task.is_classification and config.outputs.balance_classes:
        pairs, unbalanced = balance_classes(voted, seed)
    else:
        pairs, unbalanced = voted, []
    by_id = {r["id"]: r for r in candidates}
    dataset = [dataset_row(pair, by_id[pair["input_id"]]) for pair in pairs]
    write_jsonl(out_dir / "dataset.jsonl", dataset)
    write_jsonl(out_dir / "drops.jsonl", drop_rows(candidates, annotations, unbalanced))
    summary = summarize(task, candidates, annotations, unbalanced, dataset)
    summary["self_label_accuracy"] = self_label_accuracy(task, model, config.outputs, config.self_label, seed)
    summary["model_calls"] = model.stats.since(calls_before)
    # Earlier invocations' calls stay on record, so a resumed synthesis still shows what it cost.
    summary["model_calls_by_invocation"] = previous_invocations(out_dir / "summary.json") + [summary["model_calls"]]
    summary["model_calls_total"] = {k: sum(c.get(k, 0) for c in summary["model_calls_by_invocation"]) for k in summary["model_calls"]}
    write_json(out_dir / "summary.json", summary)
    write_text(out_dir / "summary.md", summary_markdown(summary))
    return summary


def previous_invocations(summary_path: Path) -> list[dict]:
    try:
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
        return list(previous.get("model_calls_by_invocation") or [previous["model_calls"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def dataset_row(pair: dict, candidate: dict) -> dict:
    vote = pair["vote"]
    return {
        "id": pair["input_id"],
        "input": pair["input"],
        "output": pair["output"],
        "provenance": {
            "round": candidate["round"],
            "slot": candidate["slot"],
            "pseudo_label": candidate["pseudo_label"],
            "votes": vote["count"],
            "valid_samples": vote["valid"],
            "samples": len(pair["samples"]),
            "vote_share": round(vote["share"], 4),
        },
    }


def drop_rows(candidates: list[dict], annotations: list[dict], unbalanced: list[dict]) -> list[dict]:
    rows = []
    for r in candidates:
        if r["status"] == "dropped":
            rows.append({"kind": "input", "stage": "input_filter", "input_id": r["id"], "reason": r["reason"], "detail": r["detail"], "text": r["text"]})
    for a in annotations:
        for j, s in enumerate(a["samples"]):
            if s["status"] == "dropped":
                rows.append({"kind": "sample", "stage": "output_filter", "input_id": a["input_id"], "sample": j, "reason": s["reason"], "detail": s["detail"], "text": s["text"]})
        if a["status"] == "dropped":
            rows.append({"kind": "pair", "stage": "vote", "input_id": a["input_id"], "reason": a["reason"], "detail": a["detail"], "text": a["input"]})
    for p in unbalanced:
        rows.append({"kind": "pair", "stage": "class_balance", "input_id": p["input_id"], "reason": "class_balance", "detail": p["output"], "text": p["input"]})
    return rows


def stage_row(stage: str, unit: str, statuses: list[tuple[str, str | None]]) -> dict:
    """One funnel row: how many entered, how many were kept, and the drops by reason."""
    dropped = Counter(reason for status, reason in statuses if status == "dropped")
    kept = sum(status == "kept" for status, _ in statuses)
    return {"stage": stage, "unit": unit, "total": len(statuses), "kept": kept, "dropped": dict(sorted(dropped.items()))}


def summarize(task: TaskSpec, candidates: list[dict], annotations: list[dict], unbalanced: list[dict], dataset: list[dict]) -> dict:
    samples = [s for a in annotations for s in a["samples"]]
    voted = [a for a in annotations if a["status"] == "kept"]
    stages = [
        stage_row("input_filter", "candidate input", [(r["status"], r["reason"]) for r in candidates]),
        stage_row("output_filter", "sample", [(s["status"], s["reason"]) for s in samples]),
        stage_row("vote", "labelled input", [(a["status"], a["reason"]) for a in annotations]),
    ]
    if task.is_classification:
        unbalanced_ids = {p["input_id"] for p in unbalanced}
        stages.append(
            stage_row("class_balance", "pair", [("dropped", "class_balance") if a["input_id"] in unbalanced_ids else ("kept", None) for a in voted])
        )
    summary = {"task": task.name, "type": task.type, "stages": stages, "pairs": len(dataset)}
    if task.is_classification:
        summary["labels"] = {
            "pseudo_labels_of_kept_inputs": dict(Counter(r["pseudo_label"] for r in candidates if r["status"] == "kept")),
            "voted": dict(Counter(a["output"] for a in voted)),
            "final": dict(Counter(row["output"] for row in dataset)),
            "missing_from_final": [label for label in task.labels or [] if label not in {row["output"] for row in dataset}],
        }
    return summary


def summary_markdown(summary: dict) -> str:
    lines = [
        f"# Synthesis summary: {summary['task']} ({summary['type']})",
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
            f"({accuracy['passed_vote']} passed the vote).",
        ]
    if "model_calls" in summary:
        calls = summary["model_calls"]
        lines += ["", f"Model calls: {calls['calls']} made, {calls['cached']} from cache, {calls['completion_tokens']} tokens generated."]
        total = summary.get("model_calls_total")
        if total and len(summary.get("model_calls_by_invocation", [])) > 1:
            lines += [f"Over all {len(summary['model_calls_by_invocation'])} invocations: {total['calls']} calls made, {total['completion_tokens']} tokens generated."]
    return "\n".join(lines) + "\n"

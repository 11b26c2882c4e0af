"""Report sections past the headline: where the two systems differ, the confusion matrix, the
cost of each stage, what it ran on, and links to every file of the run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from selfguide import layout
from selfguide.eval.metrics import normalize_answer
from selfguide.report.blocks import Block, FileLinks, Heading, Note, Para, Table

N_DIFFERENCES = 20  # rows of the per-example table
OTHER = "(other)"  # a prediction that is none of the labels


def clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def differences_section(base: list[dict] | None, tuned: list[dict] | None, metric: str | None) -> list[Block]:
    """The eval items where prompting and the finetuned model answer differently, largest score change first."""
    blocks: list[Block] = [Heading("Where prompting and the finetuned model differ")]
    if not base or not tuned or metric is None or len(base) != len(tuned):
        return blocks + [Note("Needs both systems' predictions on the same items (eval/*/predictions.jsonl).")]
    changed = [(b, t) for b, t in zip(base, tuned) if (b.get("prediction") or "") != (t.get("prediction") or "")]
    if not changed:
        return blocks + [Para(f"The two systems gave the same answer on all {len(base)} items.")]
    changed.sort(key=lambda bt: -abs(bt[1].get(metric, 0) - bt[0].get(metric, 0)))
    rows = [
        [
            clip(b.get("input", "")),
            clip(" | ".join(b.get("references", []))),
            f"{clip(b.get('prediction') or '')} ({100 * b.get(metric, 0):.0f})",
            f"{clip(t.get('prediction') or '')} ({100 * t.get(metric, 0):.0f})",
            f"{100 * (t.get(metric, 0) - b.get(metric, 0)):+.0f}",
        ]
        for b, t in changed[:N_DIFFERENCES]
    ]
    shown = f"the {len(rows)} with the largest change" if len(changed) > len(rows) else "all of them"
    blocks.append(Para(f"Answers differ on {len(changed)} of {len(base)} items; {shown}, with {metric} per item (0-100):"))
    blocks.append(Table(["input", "reference", "prompting", "finetuned", "change"], rows))
    return blocks


def predicted_label(prediction: str, labels: list[str]) -> str:
    """The label the answer is, after SuperNI normalisation; OTHER when it is none of them."""
    normalized = normalize_answer(prediction)
    return next((label for label in labels if normalize_answer(label) == normalized), OTHER)


def confusion_section(labels: list[str] | None, predictions: dict[str, list[dict] | None]) -> list[Block]:
    """One matrix per system: rows are the reference label, columns the label the answer is."""
    blocks: list[Block] = [Heading("Confusion matrix")]
    if not labels:
        return []
    for name, rows in predictions.items():
        if not rows:
            continue
        counts = Counter((row["references"][0], predicted_label(row.get("prediction") or "", labels)) for row in rows)
        columns = labels + ([OTHER] if any(p == OTHER for _, p in counts) else [])
        table_rows = [[f"{reference}"] + [str(counts[(reference, column)]) for column in columns] for reference in labels]
        blocks += [Heading(name, 3), Table(["reference \\ answer", *columns], table_rows)]
    if len(blocks) == 1:
        blocks.append(Note("No predictions to tabulate."))
    return blocks


def cost_section(stage_calls: dict[str, dict | None], timings: dict | None, environment: dict | None) -> list[Block]:
    """Calls, tokens and wall time per stage, and the device."""
    blocks: list[Block] = [Heading("Cost")]
    stages = list(dict.fromkeys([*(stage for stage, calls in stage_calls.items() if calls), *(timings or {})]))
    if not stages:
        return blocks + [Note("No stage records: timings.json and the model-call counts are missing.")]
    rows = []
    for stage in stages:
        calls = stage_calls.get(stage) or {}
        seconds = (timings or {}).get(stage)
        rows.append(
            [
                stage,
                str(calls.get("calls", "-")),
                str(calls.get("cached", "-")),
                str(calls.get("prompt_tokens", "-")),
                str(calls.get("completion_tokens", "-")),
                fmt_seconds(seconds) if seconds is not None else "-",
            ]
        )
    if timings:
        rows.append(["total", "", "", "", "", fmt_seconds(sum(timings.values()))])
    blocks.append(Table(["stage", "model calls", "from cache", "prompt tokens", "generated tokens", "wall time"], rows, {len(rows) - 1} if timings else set()))
    if environment:
        dtype = environment.get("run_dtype") or environment.get("default_dtype", "?")
        blocks.append(Para(f"Device: {environment.get('device', '?')}, dtype {dtype}."))
    return blocks


def environment_section(environment: dict | None) -> list[Block]:
    blocks: list[Block] = [Heading("Versions")]
    if not environment:
        return blocks + [Note("environment.json is missing (it is written by `selfguide run`).")]
    versions = environment.get("versions", {})
    rows = [[name, version or "not installed"] for name, version in versions.items() if name in ("selfguide", "torch", "transformers", "peft", "trl", "datasets")]
    rows += [["python", environment.get("python", "?")], ["date (UTC)", environment.get("date", "?")]]
    blocks.append(Table(["package", "version"], rows))
    # The weights each model loaded: for a converted GGUF, its folder in the user cache.
    models = [[role, m.get("name", "?"), m.get("loads", "?")] for role, m in (environment.get("models") or {}).items() if isinstance(m, dict)]
    if models:
        blocks.append(Table(["model", "known as", "weights loaded from"], models))
    return blocks


def files_section(out_dir: Path) -> list[Block]:
    """Links to every file of the run folder except the cache and checkpoints' internals."""
    skip = (layout.CACHE, f"{layout.CHECKPOINTS}/", f"{layout.PLOTS}/", "report.")
    paths = sorted(
        p.relative_to(out_dir).as_posix()
        for p in out_dir.rglob("*")
        if p.is_file() and not any(part in p.relative_to(out_dir).as_posix() for part in skip) and not p.name.endswith(".tmp")
    )
    blocks: list[Block] = [Heading("Files")]
    return blocks + ([FileLinks(paths)] if paths else [Note("The run folder holds no files yet.")])


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"

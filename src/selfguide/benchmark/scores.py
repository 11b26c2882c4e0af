"""The benchmarks' scores: which metric each table reports per task type, and how cells print."""

from __future__ import annotations

# The paper reports exact match on classification and ROUGE-L on generation, whatever SuperNI's
# per-category choice (task346, Pos Tagging, would be ROUGE-L there); the tables follow the paper.
TABLE_METRICS = {
    "superni": {"classification": "exact_match", "generation": "rougeL"},
    "paper": {"classification": "paper_accuracy", "generation": "paper_char_lcs_f1"},
}


def score_of(metrics: dict, metric: str) -> float:
    family = "paper" if metric.startswith("paper_") else "superni"
    return metrics[family][metric]


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"

"""Evaluation metrics: the official Super-NaturalInstructions ones (exact match, ROUGE-L) and the
SELF-GUIDE paper's variant (last-label accuracy, character-level LCS F1), kept apart by name."""

from __future__ import annotations

import string
from collections import defaultdict

from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer

METRICS = ("exact_match", "rougeL", "paper_accuracy", "paper_char_lcs_f1")

# Categories whose reported official metric is exact match; every other category reports ROUGE-L.
EXACT_MATCH_CATEGORIES = frozenset(
    {
        "textual_entailment",
        "cause_effect_classification",
        "coreference_resolution",
        "dialogue_act_recognition",
        "answerability_classification",
        "word_analogy",
    }
)

_PUNCTUATION = str.maketrans("", "", string.punctuation)
# Building a scorer loads the Porter stemmer; one per process is enough.
_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def normalize_answer(text: str) -> str:
    """SuperNI normalisation: lowercase, drop ASCII punctuation, collapse whitespace. Articles are kept."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def exact_match(prediction: str | None, references: list[str]) -> float:
    """1.0 when the normalised prediction equals some normalised reference, else 0.0.

    A missing prediction counts as "", so it matches a reference that normalises to "" (e.g. "."),
    as the official scorer does."""
    pred = normalize_answer(prediction or "")
    return max((float(pred == normalize_answer(ref)) for ref in references), default=0.0)


def rouge_l(prediction: str | None, references: list[str]) -> float:
    """rouge-score's ROUGE-L F-measure (stemmed), best over references; raw strings go in, as in SuperNI."""
    pred = prediction or ""
    return max((_SCORER.score(target=ref, prediction=pred)["rougeL"].fmeasure for ref in references), default=0.0)


def paper_label_prediction(output: str, labels: list[str]) -> str | None:
    """The label mentioned last in `output` (case-sensitive substring), or None when none occurs.

    Ranked by where each label's last occurrence starts; a label whose last occurrence shares its start
    or end with a longer label's (e.g. "neutral" inside "not neutral") gives way to the longer one."""
    spans = {}
    for label in labels:
        start = output.rfind(label) if label else -1  # "" would "occur" everywhere
        if start >= 0:
            spans[label] = (start, start + len(label))

    def shadowed(label: str) -> bool:
        start, end = spans[label]
        return any(
            len(other) > len(label) and (o_start == start or o_end == end) for other, (o_start, o_end) in spans.items()
        )

    candidates = [label for label in spans if not shadowed(label)]
    return max(candidates, key=lambda label: spans[label][0], default=None)


def paper_accuracy(prediction: str | None, references: list[str], labels: list[str]) -> float:
    """1.0 when the last label in the output matches some reference after SuperNI normalisation; 0.0
    when it does not or no label occurs."""
    label = paper_label_prediction(prediction or "", labels)
    if label is None:
        return 0.0
    return exact_match(label, references)


def char_lcs_f1(prediction: str | None, reference: str) -> float:
    """F1 of the character-level LCS between raw strings (no lowercasing, tokenising or stemming)."""
    pred = prediction or ""
    # rapidfuzz's bit-parallel LCS: about 10,000x faster than a Python DP on 2,000-character strings.
    lcs = LCSseq.similarity(pred, reference) if pred and reference else 0
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def category_key(category: str | None) -> str:
    """"Textual Entailment" -> "textual_entailment"; None -> "uncategorized"."""
    if not category:
        return "uncategorized"
    return category.strip().lower().replace(" ", "_")


def reported_metric(category: str | None) -> str:
    """The official metric reported for a category ("exact_match" or "rougeL"); raw or key form accepted."""
    return "exact_match" if category_key(category) in EXACT_MATCH_CATEGORIES else "rougeL"


def score_instances(rows: list[dict], task_type: str, labels: list[str] | None) -> list[dict]:
    """Score each {"prediction", "references", ...} row; the row comes back with metric values in 0..1 added.

    Every row gets exact_match and rougeL; classification adds paper_accuracy (needs `labels`),
    generation adds paper_char_lcs_f1 (against the first reference only, as in the paper)."""
    if task_type == "classification" and not labels:
        raise ValueError("a classification task needs its labels for paper_accuracy")
    scored = []
    for row in rows:
        pred, refs = row["prediction"], row["references"]
        scores = {"exact_match": exact_match(pred, refs), "rougeL": rouge_l(pred, refs)}
        if task_type == "classification":
            scores["paper_accuracy"] = paper_accuracy(pred, refs, labels)
        else:
            scores["paper_char_lcs_f1"] = char_lcs_f1(pred, refs[0])
        scored.append({**row, **scores})
    return scored


def aggregate(scored: list[dict]) -> dict[str, float]:
    """Mean × 100 of each metric, over the rows that carry it."""
    values = defaultdict(list)
    for row in scored:
        for metric in METRICS:
            if metric in row:
                values[metric].append(row[metric])
    return {metric: 100 * sum(v) / len(v) for metric, v in values.items()}


def aggregate_by(scored: list[dict], keys: list[str]) -> dict[str, dict[str, float]]:
    """Aggregate per group of rows sharing the values of `keys`; the group name joins them with "/"
    (e.g. keys ["category"] -> {"textual_entailment": {...}}, ["task", "category"] -> {"task190/textual_entailment": {...}})."""
    groups = defaultdict(list)
    for row in scored:
        groups["/".join(str(row.get(key)) for key in keys)].append(row)
    return {name: aggregate(rows) for name, rows in groups.items()}

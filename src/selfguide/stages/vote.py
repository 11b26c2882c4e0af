"""The vote over an input's samples, and class balance (the paper's output vote; docs/methods.md): the most frequent surviving
answer wins with enough of a share; classification pairs are downsampled to the rarest label."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from selfguide.backends.cache import derive_seed
from selfguide.stages.filters import Drop
from selfguide.tasks.spec import TaskSpec


def vote_answer(answers: list[str], min_share: float) -> dict:
    """The most frequent answer and its share of `answers`; ties go to the shortest (then the
    alphabetically first, so the outcome never depends on sample order)."""
    if not answers:
        return {"winner": None, "count": 0, "valid": 0, "share": 0.0, "passed": False}
    counts = Counter(answers)
    winner, count = min(counts.items(), key=lambda item: (-item[1], len(item[0]), item[0]))
    share = count / len(answers)
    return {"winner": winner, "count": count, "valid": len(answers), "share": share, "passed": share >= min_share}


def vote_drop(vote: dict, task: TaskSpec) -> Drop | None:
    if vote["valid"] == 0:
        return Drop("no_valid_sample")
    if not vote["passed"]:
        return Drop("no_majority", f"{vote['count']}/{vote['valid']}")
    if task.is_classification and task.labels and vote["winner"] not in task.labels:
        return Drop("not_a_label", vote["winner"][:80])
    return None


def balance_classes(pairs: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """Downsample every label to the rarest label present; returns (kept, dropped)."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for pair in pairs:
        by_label[pair["output"]].append(pair)
    if not by_label:
        return [], []
    smallest = min(len(group) for group in by_label.values())
    chosen: set[str] = set()
    for label in sorted(by_label):
        group = by_label[label]
        rng = random.Random(derive_seed(seed, "balance", label))
        chosen.update(p["input_id"] for p in rng.sample(group, smallest))
    kept = [p for p in pairs if p["input_id"] in chosen]
    dropped = [p for p in pairs if p["input_id"] not in chosen]
    return kept, dropped

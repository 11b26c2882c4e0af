"""The vote over an input's samples, and class balance (the paper's output vote; docs/methods.md): the most frequent surviving
answer wins with enough of a share; classification pairs are downsampled to the rarest label.
For free text, where samples seldom agree exactly, `consensus_answer` picks the sample closest to
the others instead (minimum Bayes risk, as universal self-consistency)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from selfguide.backends.cache import derive_seed
from selfguide.eval.metrics import rouge_l
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


def consensus_answer(answers: list[str], min_similarity: float) -> dict:
    """The answer with the highest mean ROUGE-L F1 (the generation tasks' own metric) to the other
    answers, and that mean as its share; ties as in `vote_answer`. A lone answer has no one to agree
    with: share 0. `count` is how many answers equal the winner, as the majority vote reports it."""
    if not answers:
        return {"winner": None, "count": 0, "valid": 0, "share": 0.0, "passed": False}
    distinct = sorted(set(answers))
    similarity = {(a, b): 1.0 if a == b else rouge_l(a, [b]) for i, a in enumerate(distinct) for b in distinct[i:]}
    similarity |= {(b, a): value for (a, b), value in similarity.items()}  # ROUGE-L F1 is symmetric
    others = len(answers) - 1
    # Each answer's mean over the other answers (duplicates count, as votes do), itself left out once.
    mean = {a: (sum(similarity[(a, b)] for b in answers) - 1.0) / others if others else 0.0 for a in distinct}
    winner = min(mean, key=lambda a: (-mean[a], len(a), a))
    share = mean[winner]
    return {"winner": winner, "count": answers.count(winner), "valid": len(answers), "share": share, "passed": share >= min_similarity}


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

"""Rank datastore rows for a task as ReBase does: by the instruction and by the demos.

ReBase (Ge et al. 2024) scores a datastore item three ways and averages them: the task instruction
against the item's dataset description, the demo inputs against the item (similarity averaged over
demos), and the demo outputs against the item. With cosine similarities the three parts share a
scale; BM25 scores do not, so each query's scores are divided by their maximum over the rows
first (the best row of every query scores 1). Groups can be left out (the task's own file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from selfguide.datastore.lexical import top_k
from selfguide.datastore.store import Datastore

Retriever = Literal["bm25", "dense"]


@dataclass(frozen=True)
class Hit:
    row_id: int
    score: float  # the mean of the three parts, each in [0, 1]
    instruction: float
    inputs: float
    outputs: float


def normalised(scores: np.ndarray) -> np.ndarray:
    top = float(scores.max()) if len(scores) else 0.0
    return scores / top if top > 0 else np.zeros_like(scores)


def rank_rows(
    store: Datastore,
    instruction: str,
    demos: Sequence[tuple[str, str]],
    k: int,
    *,
    retriever: Retriever = "bm25",
    exclude_groups: Sequence[str] = (),
    encoder: str | None = None,
) -> list[Hit]:
    """The k best rows outside `exclude_groups`, best first (ties by row id); rows matching no part score 0 and are never returned."""
    if retriever == "dense":
        from selfguide.datastore.dense import DEFAULT_ENCODER, DenseIndex

        index = DenseIndex(store, encoder or DEFAULT_ENCODER)
        row_scores, group_scores = index.scores, index.group_scores
    else:
        row_scores, group_scores = store.lexical.scores, store.group_lexical.scores
    by_group = normalised(np.maximum(group_scores(instruction), 0))
    parts = {
        "instruction": by_group[store.row_groups],
        "inputs": np.mean([normalised(np.maximum(row_scores(i), 0)) for i, _ in demos], axis=0) if demos else np.zeros(len(store), np.float32),
        "outputs": np.mean([normalised(np.maximum(row_scores(o), 0)) for _, o in demos], axis=0) if demos else np.zeros(len(store), np.float32),
    }
    total = (parts["instruction"] + parts["inputs"] + parts["outputs"]) / 3
    if exclude_groups:
        total = np.where(store.group_mask(exclude_groups), 0.0, total)
    return [
        Hit(row_id, score, float(parts["instruction"][row_id]), float(parts["inputs"][row_id]), float(parts["outputs"][row_id]))
        for row_id, score in top_k(total, k)
    ]

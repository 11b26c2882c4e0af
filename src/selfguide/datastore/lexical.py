"""BM25 over datastore texts with `bm25s`: built once, saved beside the rows, memory-mapped on load.

Tokens: lowercased runs of two or more word characters, English stopwords removed (bm25s's
tokenizer and list), no stemming, so an index built anywhere scores the same. `scores` gives every
document's BM25 score for one query (a dense float32 array): retrieval combines several queries'
scores per row, which top-k lists alone cannot do.
"""

from __future__ import annotations

import logging

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class BM25Config(BaseModel):
    """BM25 parameters (Lucene's variant, bm25s's defaults)."""

    model_config = ConfigDict(extra="forbid")

    k1: float = Field(1.5, gt=0, description="Term-frequency saturation.")
    b: float = Field(0.75, ge=0, le=1, description="Document-length normalisation.")
    method: str = Field("lucene", description="bm25s scoring variant: lucene, robertson, atire, bm25l or bm25+.")


def new_tokenizer():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG on import
    return bm25s.tokenization.Tokenizer(lower=True, stopwords="en", stemmer=None)


def build_lexical(texts: Iterable[str], out: Path, config: BM25Config, progress: bool = False) -> int:
    """Tokenise the texts (one document each, in order), index them and save to `out`; returns the count."""
    import bm25s

    tokenizer = new_tokenizer()
    ids = list(tokenizer.streaming_tokenize(texts, update_vocab=True))
    retriever = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    retriever.index((ids, tokenizer.get_vocab_dict()), show_progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    retriever.save(str(out), show_progress=False)
    tokenizer.save_vocab(str(out))
    tokenizer.save_stopwords(str(out))
    return len(ids)


class LexicalIndex:
    """A saved BM25 index, its arrays memory-mapped: scores for a query over every document."""

    def __init__(self, path: Path):
        import bm25s

        self.tokenizer = new_tokenizer()
        self.tokenizer.load_vocab(str(path))
        self.tokenizer.load_stopwords(str(path))
        self.retriever = bm25s.BM25.load(str(path), mmap=True, show_progress=False, verbosity=0)
        self.size = int(self.retriever.scores["num_docs"])

    def token_ids(self, query: str) -> list[int]:
        # Words the corpus never had score nothing, so they are dropped rather than added.
        return next(self.tokenizer.streaming_tokenize([query], update_vocab=False, allow_empty=False))

    def scores(self, query: str) -> np.ndarray:
        """BM25 of every document for the query; all zeros when no query word is in the corpus."""
        ids = self.token_ids(query)
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(ids), dtype=np.float32)

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The k best documents (index, score) with a positive score, best first, ties by index."""
        return top_k(self.scores(query), k)


def top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k highest positive entries (index, score), highest first, ties broken by lower index."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        # argpartition then a stable sort on (-score, index): the same rows whatever the partition picked at ties.
        threshold = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
        positive = positive[scores[positive] >= threshold]
    order = np.lexsort((positive, -scores[positive]))[:k]
    return [(int(positive[i]), float(scores[positive[i]])) for i in order]

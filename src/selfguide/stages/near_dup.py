"""Near-duplicate and eval-overlap filter, a stage any synthesis method can put after its rule filters.

Novelty (Self-Instruct): a new text joins the pool only if its ROUGE-L F1 with every pooled text is
below 0.7. `NoveltyPool` decides this exactly as `rouge-score` would, that is
`RougeScorer(["rougeL"], use_stemmer=False)`: the same tokenizer, the same LCS and the same float
arithmetic (P = lcs/len(prediction), R = lcs/len(target), F = 2*P*R/(P+R)), so ties at exactly the
threshold fall the same way. It is fast because each text is tokenised once into integer ids, a cheap
exact upper bound (shared tokens) skips pairs that cannot beat the best score found, and rapidfuzz
computes the LCS of the rest.

Decontamination: `Decontaminator` flags a synthetic text that reproduces a long n-gram of an
evaluation item (13 words, as GPT-3 did), with an index of the eval items' n-grams so each check is a
few dict look-ups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rapidfuzz.distance import LCSseq
from rouge_score.tokenizers import DefaultTokenizer

from selfguide.stages.filters import Drop

NEAR_DUPLICATE = "near_duplicate"  # reason code: ROUGE-L with an accepted text reached the threshold
EVAL_OVERLAP = "eval_overlap"  # reason code: the text reproduces an n-gram of an evaluation item

# rouge-score's default tokenizer without stemming, as Self-Instruct and Alpaca use it:
# lowercase, every run of non [a-z0-9] characters is a separator.
_tokenize = DefaultTokenizer(use_stemmer=False).tokenize


class NearDupConfig(BaseModel):
    """ROUGE-L novelty against accepted texts, and n-gram overlap with the evaluation set."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Drop texts whose ROUGE-L F1 with an accepted text reaches the threshold.")
    threshold: float = Field(0.7, gt=0, le=1, description="ROUGE-L F1 (rouge-score, no stemming) at which a text is a near-duplicate; Self-Instruct's 0.7.")
    drop_ties: bool = Field(
        True,
        description="A score exactly at the threshold is a near-duplicate (the paper: kept only if < 0.7). "
        "False follows the released Self-Instruct/Alpaca code, which drops only scores > 0.7.",
    )
    decontaminate: bool = Field(True, description="Drop texts that reproduce an n-gram of an evaluation item.")
    ngram: int = Field(13, ge=1, description="Words per n-gram for eval overlap (GPT-3's decontamination used 13).")
    min_ngram: int = Field(
        8, ge=1, description="Eval items shorter than `ngram` words match as a whole when they have at least this many words (GPT-3's lower bound)."
    )
    max_overlap: float = Field(
        0.0, ge=0, lt=1, description="Drop when more than this share of an eval item's n-grams occur in the text; 0: any shared n-gram (GPT-3's rule)."
    )

    @model_validator(mode="after")
    def _ngram_sizes(self) -> NearDupConfig:
        if self.min_ngram > self.ngram:
            raise ValueError(f"min_ngram ({self.min_ngram}) must be at most ngram ({self.ngram})")
        return self


def rouge_tokens(text: str) -> list[str]:
    """The tokens rouge-score scores: lowercased runs of [a-z0-9]; punctuation-only text has none."""
    return _tokenize(text)


def _rouge_f(lcs: int, target_len: int, prediction_len: int) -> float:
    """`rouge_scorer._score_lcs(target, prediction).fmeasure` given the LCS length: the same float operations."""
    if lcs == 0:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    return 2 * precision * recall / (precision + recall)


def _fmeasure(lcs: np.ndarray, target_len: int, prediction_len: np.ndarray) -> np.ndarray:
    """`_rouge_f` over an array of positive LCS lengths.

    numpy's float64 division, product and sum are the IEEE operations Python floats use, and the int
    lengths are exact in float64, so every element is bit for bit `_score_lcs(...).fmeasure`.
    """
    precision = lcs / prediction_len
    recall = lcs / target_len
    return 2 * precision * recall / (precision + recall)


def rouge_l_f(a: str, b: str) -> float:
    """ROUGE-L F1 of b against a: rouge-score's `score(target=a, prediction=b)["rougeL"].fmeasure`, no stemming."""
    vocab: dict[str, int] = {}  # ids, not strings: rapidfuzz would compare strings by their hash
    ta, tb = ([vocab.setdefault(t, len(vocab)) for t in rouge_tokens(text)] for text in (a, b))
    return _rouge_f(LCSseq.similarity(_as_sequence(ta), _as_sequence(tb)), len(ta), len(tb))


class _GrowingInts:
    """An int array with amortised O(1) append, readable as a numpy view without copying."""

    def __init__(self) -> None:
        self._data = np.empty(8, dtype=np.int64)
        self._size = 0

    def append(self, value: int) -> None:
        if self._size == len(self._data):
            self._data = np.resize(self._data, 2 * len(self._data))
        self._data[self._size] = value
        self._size += 1

    def view(self) -> np.ndarray:
        return self._data[: self._size]


class NoveltyPool:
    """The growing pool of accepted texts and Self-Instruct's ROUGE-L novelty check against it.

    Why skipping pairs is exact. For token counts n (new text) and m (pooled text) and LCS length l,
    rouge-score's F is 2l/(n+m) up to float rounding. Two bounds hold for every pair:
      - l <= min(n, m), and
      - l <= the size of the multiset intersection of the two token bags (every LCS match pairs one
        occurrence of a token in each text), which is never more than min(n, m); 0 gives F = 0.
    The float F is non-decreasing in l: one more matched token raises the exact F by 2/(n+m), while
    the five rounded float operations move it by under 1e-15, so the order holds for any text under
    10**14 tokens. Hence F(l) <= F(bag bound): a pair whose F at the bag bound is below the best score
    found so far can neither beat nor tie it, and gets no LCS. So the maximum, and with it the decision,
    is exact. The bag intersections with all pooled texts are counted at once through an inverted index
    keyed by (token, k-th occurrence): a multiset intersection is the number of such keys two texts share.
    """

    def __init__(self, threshold: float = 0.7, texts: Iterable[str] = (), drop_ties: bool = True):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold: expected a ROUGE-L F1 in (0, 1], got {threshold}")
        self.threshold = threshold
        self.drop_ties = drop_ties
        self.texts: list[str] = []
        self._vocab: dict[str, int] = {}
        self._sequences: list[str | list[int]] = []  # token ids; as str of chr(id) while ids fit, rapidfuzz's fastest input
        self._lengths = _GrowingInts()
        self._postings: dict[tuple[int, int], _GrowingInts] = {}  # (token id, occurrence) -> pooled indices
        self._last: tuple[str | None, list[int]] = (None, [])
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def _encode(self, text: str) -> list[int]:
        if text != self._last[0]:  # check then add tokenises once
            self._last = (text, [self._vocab.setdefault(token, len(self._vocab)) for token in rouge_tokens(text)])
        return self._last[1]

    def _reaches(self, score: float) -> bool:
        return score >= self.threshold if self.drop_ties else score > self.threshold

    def check(self, text: str) -> tuple[bool, float, int | None]:
        """(novel, score, index): the exact maximum ROUGE-L F1 over the pool and the first pooled text
        scoring it (None when no pooled text shares a token: score 0.0); novel unless it reaches the threshold.
        """
        ids = self._encode(text)
        keys = [key for key in _occurrence_keys(ids) if key in self._postings]
        if not keys:
            return True, 0.0, None
        overlap = np.bincount(np.concatenate([self._postings[key].view() for key in keys]), minlength=len(self.texts))
        shared = np.flatnonzero(overlap)  # pooled texts sharing a token; the others score 0
        bound = _fmeasure(overlap[shared], len(ids), self._lengths.view()[shared])
        query = _as_sequence(ids)

        def score(j: int) -> float:
            index = int(shared[j])
            return _rouge_f(LCSseq.similarity(query, self._sequences[index]), len(ids), len(self._sequences[index]))

        # Branch and bound: the pair with the highest bound gives a first score; only pairs bounded
        # at or above it can beat or tie it. Score those from the highest bound down and stop once a
        # bound is below the best score. Equal bounds keep pool order and equal scores go to the
        # lower index, so the index is the first most similar text.
        first = int(np.argmax(bound))
        best, best_j = score(first), first
        contenders = np.flatnonzero(bound >= best)
        for j in contenders[np.argsort(-bound[contenders], kind="stable")]:
            if bound[j] < best:
                break
            if j != first and ((s := score(j)) > best or (s == best and j < best_j)):
                best, best_j = s, int(j)
        return not self._reaches(best), best, int(shared[best_j])

    def scores(self, text: str) -> np.ndarray:
        """Exact ROUGE-L F1 of text against every pooled text, in pool order (no pruning)."""
        ids = self._encode(text)
        query = _as_sequence(ids)
        lcs = np.array([LCSseq.similarity(query, seq) for seq in self._sequences], dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where nothing is shared
            return np.where(lcs > 0, _fmeasure(lcs, len(ids), self._lengths.view()), 0.0)

    def add(self, text: str) -> None:
        """Put text in the pool, whatever its score (check first to keep the pool novel)."""
        ids = self._encode(text)
        index = len(self.texts)
        self.texts.append(text)
        self._sequences.append(_as_sequence(ids))
        self._lengths.append(len(ids))
        for key in _occurrence_keys(ids):
            self._postings.setdefault(key, _GrowingInts()).append(index)


def _occurrence_keys(ids: list[int]) -> list[tuple[int, int]]:
    """(token, k) for the k-th occurrence of each token: two texts share min(count_a, count_b) keys per token."""
    seen: dict[int, int] = {}
    keys = []
    for token in ids:
        k = seen.get(token, 0)
        seen[token] = k + 1
        keys.append((token, k))
    return keys


def _as_sequence(ids: list[int]) -> str | list[int]:
    # rapidfuzz compares a str by code point and a list of ints by value, so both forms agree.
    return "".join(map(chr, ids)) if not ids or max(ids) < 0x110000 else ids


def ngram_overlap(text: str, eval_texts: Sequence[str], n: int = 13, min_n: int = 8) -> list[float]:
    """For each eval item, the share of its distinct n-grams (rouge tokens) that also occur in text.

    An item shorter than n words has one n-gram, itself whole, when it has at least min_n words, and
    none (share 0.0) when shorter. This is the definition `Decontaminator` computes with an index.
    """
    tokens = rouge_tokens(text)
    shares = []
    for eval_text in eval_texts:
        eval_tokens = rouge_tokens(eval_text)
        size = min(n, len(eval_tokens))
        if size < min_n:
            shares.append(0.0)
            continue
        grams = _ngrams(eval_tokens, size)
        shares.append(len(grams & _ngrams(tokens, size)) / len(grams))
    return shares


def _ngrams(tokens: Sequence, n: int) -> set[tuple]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class Decontaminator:
    """Flags texts that reproduce n-grams of evaluation items (reason code `eval_overlap`).

    Defaults and why: n = 13 words, the n-gram GPT-3 (Brown et al. 2020, appendix C) used to find
    benchmark text in training data: long enough that common phrasing never matches, short enough
    that a copied sentence does. Eval items under 13 words match as a whole (their one n-gram is the
    item), down to min_n = 8 words, the smallest n GPT-3 used for benchmarks of short items; shorter
    items ("yes", a name) would flag ordinary text, and the exact-copy filter catches them verbatim. A text is flagged when more than
    max_overlap of an item's n-grams occur in it; the default 0 flags any shared n-gram, as GPT-3 did.
    """

    def __init__(self, eval_texts: Iterable[str], n: int = 13, min_n: int = 8, max_overlap: float = 0.0):
        if not 1 <= min_n <= n:
            raise ValueError(f"n-gram sizes: expected 1 <= min_n <= n, got min_n={min_n}, n={n}")
        self.eval_texts = list(eval_texts)
        self.n, self.min_n, self.max_overlap = n, min_n, max_overlap
        self._index: dict[int, dict[tuple[str, ...], list[int]]] = {}  # n-gram size -> n-gram -> eval items
        self._counts: list[int] = []
        for item, eval_text in enumerate(self.eval_texts):
            tokens = rouge_tokens(eval_text)
            size = min(n, len(tokens))
            grams = _ngrams(tokens, size) if size >= min_n else set()
            self._counts.append(len(grams))
            for gram in grams:
                self._index.setdefault(size, {}).setdefault(gram, []).append(item)

    def check(self, text: str) -> tuple[bool, float, int | None]:
        """(clean, share, index): the eval item with the largest share of its n-grams in text, and that share."""
        tokens = rouge_tokens(text)
        shared: dict[int, int] = {}
        for size, by_gram in self._index.items():
            for gram in _ngrams(tokens, size):
                for item in by_gram.get(gram, ()):
                    shared[item] = shared.get(item, 0) + 1
        if not shared:
            return True, 0.0, None
        best = min(shared, key=lambda item: (-shared[item] / self._counts[item], item))
        share = shared[best] / self._counts[best]
        return share <= self.max_overlap, share, best


class NearDupFilter:
    """The stage: eval overlap, then novelty against the accepted texts; `accept` grows the pool."""

    def __init__(self, config: NearDupConfig, eval_texts: Iterable[str] = (), accepted: Iterable[str] = ()):
        self.config = config
        self.pool = NoveltyPool(config.threshold, accepted, config.drop_ties)
        self.decontaminator = Decontaminator(eval_texts, config.ngram, config.min_ngram, config.max_overlap)

    def check(self, text: str) -> Drop | None:
        if self.config.decontaminate:
            clean, share, item = self.decontaminator.check(text)
            if not clean:
                return Drop(EVAL_OVERLAP, f"{share:.2f} of eval item {item}'s n-grams")
        if self.config.enabled:
            novel, score, index = self.pool.check(text)
            if not novel:
                return Drop(NEAR_DUPLICATE, f"ROUGE-L {score:.3f} with accepted text {index}")
        return None

    def accept(self, text: str) -> None:
        if self.config.enabled:
            self.pool.add(text)

"""The near-duplicate stage against rouge-score itself: same scores bit for bit, same keep/drop
decisions (ties at exactly 0.7 included), and n-gram decontamination."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer

from selfguide.stages.near_dup import (
    EVAL_OVERLAP,
    NEAR_DUPLICATE,
    Decontaminator,
    NearDupConfig,
    NearDupFilter,
    NoveltyPool,
    _as_sequence,
    ngram_overlap,
    rouge_l_f,
)

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge(target: str, prediction: str) -> float:
    return SCORER.score(target, prediction)["rougeL"].fmeasure


def words(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


TEN = " ".join(words("w", 10))
ELEVEN = " ".join(words("v", 11))
# LCS 7 of 10 and 10 tokens: P = R = 0.7 and rouge-score's float F is exactly 0.7.
TIE = " ".join(words("w", 7) + words("x", 3))
# LCS 7 of 9 and 11 tokens: exactly 0.7 on paper, 0.7000000000000001 in rouge-score's floats.
OVER_BY_ROUNDING = " ".join(words("v", 7) + words("y", 2))
FIXED = [
    TEN,
    TIE,
    ELEVEN,
    OVER_BY_ROUNDING,
    " ".join(words("w", 8) + words("z", 2)),  # 0.8: dropped
    " ".join(words("w", 6) + words("u", 4)),  # 0.6: kept
    "",
    "   ",
    "?!... --- ;;",  # punctuation only: no rouge tokens, scores 0 with everything
    "Ça coûte 3€ — naïve café, Straße!",  # non-ASCII letters split tokens: "a", "co", "te", "3", ...
    "ça COÛTE 3€, naïve café; straße",  # the same tokens: a duplicate
    "İstanbul ıı 東京 🙂 w0 w1",
    TEN.upper(),  # case is folded: a duplicate of TEN
    "w0, w1; w2 (w3) w4 w5 w6 x0 x1 x2",  # punctuation is a separator: the TIE pattern again
]


def rouge_score_pool(texts: list[str], keep) -> tuple[list[bool], list[float]]:
    """Self-Instruct's loop on rouge-score: each text against every earlier kept one."""
    kept_texts, kept, best = [], [], []
    for text in texts:
        score = max((rouge(text, old) for old in kept_texts), default=0.0)
        kept.append(keep(score))
        best.append(score)
        if kept[-1]:
            kept_texts.append(text)
    return kept, best


def novelty_pool(texts: list[str], **kwargs) -> tuple[list[bool], list[float]]:
    pool = NoveltyPool(**kwargs)
    kept, best = [], []
    for text in texts:
        novel, score, _ = pool.check(text)
        kept.append(novel)
        best.append(score)
        if novel:
            pool.add(text)
    return kept, best


def test_the_fixed_set_really_contains_exact_ties():
    assert rouge(TEN, TIE) == 0.7
    assert rouge(ELEVEN, OVER_BY_ROUNDING) == 0.7000000000000001
    assert rouge(TEN, "?!... --- ;;") == 0 and rouge("", TEN) == 0


def test_keeps_exactly_what_rouge_score_keeps_with_ties_dropped():
    expected_kept, expected_best = rouge_score_pool(FIXED, lambda score: score < 0.7)
    kept, best = novelty_pool(FIXED)
    assert kept == expected_kept
    assert best == expected_best
    assert kept[:6] == [True, False, True, False, False, True]
    assert kept[FIXED.index(TEN.upper())] is False


def test_drop_ties_false_follows_the_released_code():
    # Self-Instruct's and Alpaca's code drop only `max(rouge_scores) > 0.7`: the exact tie is kept,
    # the one rounded above 0.7 is not.
    expected_kept, _ = rouge_score_pool(FIXED, lambda score: not score > 0.7)
    kept, _ = novelty_pool(FIXED, drop_ties=False)
    assert kept == expected_kept
    assert kept[1] is True and kept[3] is False


def random_text(rng: random.Random, vocab: list[str]) -> str:
    separators = [" ", " ", " ", ", ", "-", "! ", "\n", " ... "]
    return "".join(rng.choice(vocab) + rng.choice(separators) for _ in range(rng.randint(0, 14)))


VOCAB = "the a of to write list give Explain why how poem story 3 42 Café naïve İ é 東京 🙂 x y z".split()


def test_rouge_l_f_equals_rouge_score_on_random_pairs():
    rng = random.Random(0)
    for _ in range(400):
        a, b = random_text(rng, VOCAB), random_text(rng, VOCAB)
        assert rouge_l_f(a, b) == rouge(a, b), (a, b)
        assert rouge_l_f(b, a) == rouge(b, a), (a, b)


def perturbed(rng: random.Random, text: str) -> str:
    """text with a few words dropped or swapped: scores around 0.7 with it."""
    tokens = text.split()
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(tokens) or 1)
        if rng.random() < 0.5 and tokens:
            del tokens[i]
        elif i + 1 < len(tokens):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return " ".join(tokens)


def test_pool_max_score_and_index_equal_rouge_score_on_random_texts():
    rng = random.Random(1)
    texts: list[str] = []
    for _ in range(150):
        texts.append(perturbed(rng, rng.choice(texts)) if texts and rng.random() < 0.5 else random_text(rng, VOCAB))
    pool, kept_texts, near_threshold = NoveltyPool(0.7), [], 0
    for text in texts:
        scores = [rouge(text, old) for old in kept_texts]
        expected_score = max(scores, default=0.0)
        near_threshold += 0.6 <= expected_score < 0.8
        novel, score, index = pool.check(text)
        assert (novel, score) == (expected_score < 0.7, expected_score)
        assert index == (scores.index(expected_score) if expected_score > 0 else None)  # the first most similar
        assert pool.scores(text).tolist() == scores
        if novel:
            pool.add(text)
            kept_texts.append(text)
    assert len(texts) - len(kept_texts) > 20 and near_threshold > 20


def test_pool_starts_from_given_texts_and_add_grows_it():
    pool = NoveltyPool(texts=[TEN])
    assert len(pool) == 1 and pool.check(TIE) == (False, 0.7, 0)
    assert pool.check(ELEVEN) == (True, 0.0, None)
    pool.add(ELEVEN)
    assert pool.check(OVER_BY_ROUNDING) == (False, 0.7000000000000001, 1)
    assert NoveltyPool(threshold=0.9, texts=[TEN]).check(TIE)[0] is True


def test_token_ids_beyond_unicode_compare_the_same_as_characters():
    # ids past chr()'s range are kept as int lists; rapidfuzz must match them against str sequences by value
    big = 0x110000 + 5
    assert _as_sequence([1, 2, big]) == [1, 2, big]
    assert LCSseq.similarity(_as_sequence([1, 2, 3]), _as_sequence([1, big, 3])) == 2
    assert LCSseq.similarity(_as_sequence([1, big, 3]), _as_sequence([1, 7, big, 3])) == 3


EVAL = [
    "Read the passage about the migration of arctic terns and answer how far the birds fly every single year.",
    "Is the following movie review positive or negative overall?",  # 10 words: matches only whole
    "Is this sentence grammatical?",  # 4 words: under min_n, never matched by n-grams
]


def test_decontaminator_flags_a_copied_13_gram_and_names_the_eval_item():
    copied = "Question: migration of arctic terns and answer how far the birds fly every single year, please."
    clean, share, item = Decontaminator(EVAL).check(copied)
    assert (clean, item) == (False, 0) and share > 0
    assert ngram_overlap(copied, EVAL)[0] == share


def test_decontaminator_ignores_shared_common_words():
    # every word of the eval item, none of its 13-grams
    shuffled = "the birds fly far every year: read about the arctic terns migration, then answer the passage single how"
    assert Decontaminator(EVAL).check(shuffled) == (True, 0.0, None)
    assert ngram_overlap(shuffled, EVAL) == [0.0, 0.0, 0.0]


def test_short_eval_items_match_whole_down_to_min_n():
    decontaminator = Decontaminator(EVAL)
    assert decontaminator.check("Tell me: is the following movie review positive or negative overall? Great film.") == (False, 1.0, 1)
    assert decontaminator.check("is the following movie review positive") == (True, 0.0, None)
    assert decontaminator.check("Is this sentence grammatical?")[0] is True  # the exact-copy filter's job
    assert Decontaminator(EVAL, min_n=4).check("Is this sentence grammatical?") == (False, 1.0, 2)


def test_max_overlap_sets_the_share_of_an_items_ngrams_needed():
    eval_item = " ".join(words("e", 20))  # 8 distinct 13-grams
    one_gram = " ".join(words("e", 13))
    assert Decontaminator([eval_item]).check(one_gram) == (False, 1 / 8, 0)
    assert Decontaminator([eval_item], max_overlap=0.5).check(one_gram)[0] is True
    assert Decontaminator([eval_item], max_overlap=0.5).check(eval_item) == (False, 1.0, 0)


def test_stage_drops_with_reason_codes_and_remembers_accepted_texts():
    stage = NearDupFilter(NearDupConfig(), eval_texts=EVAL, accepted=[TEN])
    assert stage.check(TIE).reason == NEAR_DUPLICATE
    assert stage.check(EVAL[0] + " Answer briefly.").reason == EVAL_OVERLAP
    assert stage.check(ELEVEN) is None
    stage.accept(ELEVEN)
    assert stage.check(OVER_BY_ROUNDING).reason == NEAR_DUPLICATE
    off = NearDupFilter(NearDupConfig(enabled=False, decontaminate=False), eval_texts=EVAL, accepted=[TEN])
    assert off.check(TIE) is None and off.check(EVAL[0]) is None


def test_config_rejects_impossible_settings():
    with pytest.raises(ValidationError, match="min_ngram"):
        NearDupConfig(ngram=5, min_ngram=8)
    with pytest.raises(ValidationError):
        NearDupConfig(threshold=0)
    with pytest.raises(ValueError, match="threshold"):
        NoveltyPool(threshold=1.5)

"""Official SuperNI metrics and the SELF-GUIDE paper variant."""

from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from selfguide.eval.metrics import (
    aggregate,
    aggregate_by,
    category_key,
    char_lcs_f1,
    exact_match,
    normalize_answer,
    paper_accuracy,
    paper_label_prediction,
    reported_metric,
    rouge_l,
    score_instances,
)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The cat.", "the cat"),  # articles kept, unlike SQuAD
        ("  Hello,\tWORLD!!  \n again ", "hello world again"),
        ("don't-stop (now)", "dontstop now"),  # punctuation deleted, not replaced by a space
        ("a an the", "a an the"),
        ("...", ""),
    ],
)
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_exact_match_normalises_and_takes_max_over_references():
    assert exact_match("The Cat!", ["the cat"]) == 1.0
    assert exact_match("cat", ["the cat"]) == 0.0  # articles count
    assert exact_match("the cat", ["dog", "THE CAT.", "bird"]) == 1.0
    assert exact_match("the cat sat", ["the cat"]) == 0.0  # whole string, not containment


def test_empty_or_missing_prediction_scores_zero():
    for pred in (None, ""):
        assert exact_match(pred, ["yes"]) == 0.0
        assert rouge_l(pred, ["yes"]) == 0.0
        assert char_lcs_f1(pred, "yes") == 0.0
        assert paper_accuracy(pred, ["yes"], ["yes", "no"]) == 0.0
    # Documented: a missing prediction is "", which matches a reference that normalises to "".
    assert exact_match(None, ["."]) == 1.0


def test_rouge_l_takes_max_over_references():
    single = [rouge_l("the quick brown fox", [ref]) for ref in ("a slow dog", "the quick fox", "quick")]
    assert rouge_l("the quick brown fox", ["a slow dog", "the quick fox", "quick"]) == max(single)
    assert 0 < max(single) < 1
    assert rouge_l("Cats running!", ["the cat runs"]) == pytest.approx(0.8)  # stemmed, case-insensitive


def test_rouge_l_is_rouge_score_itself():
    rng = random.Random(0)
    vocab = ["the", "The", "cat", "Cats", "running", "ran", "dog.", "DOG", ",", "!", "a", "is", "yes", "no?", "x-y", "42"]
    fresh = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    nonzero = 0
    for _ in range(300):
        pred = " ".join(rng.choices(vocab, k=rng.randint(0, 8)))
        refs = [" ".join(rng.choices(vocab, k=rng.randint(1, 8))) for _ in range(rng.randint(1, 3))]
        expected = max(fresh.score(target=ref, prediction=pred)["rougeL"].fmeasure for ref in refs)
        assert rouge_l(pred, refs) == expected
        nonzero += expected > 0
    assert nonzero > 100  # the pairs actually overlap, so equality is not trivially 0 == 0


@pytest.mark.parametrize(
    ("category", "key"),
    [("Textual Entailment", "textual_entailment"), ("Cause Effect Classification", "cause_effect_classification"),
     ("Question Answering", "question_answering"), ("textual_entailment", "textual_entailment"), (None, "uncategorized")],
)
def test_category_key(category, key):
    assert category_key(category) == key


@pytest.mark.parametrize(
    "category",
    ["Textual Entailment", "Cause Effect Classification", "Coreference Resolution", "Dialogue Act Recognition",
     "Answerability Classification", "Word Analogy", "word_analogy"],
)
def test_reported_metric_exact_match_categories(category):
    assert reported_metric(category) == "exact_match"


@pytest.mark.parametrize("category", ["Question Answering", "Title Generation", "Sentiment Analysis", None])
def test_reported_metric_rouge_for_the_rest(category):
    assert reported_metric(category) == "rougeL"


@pytest.mark.parametrize(
    ("output", "labels", "expected"),
    [
        ("Not neutral; it is entailment.", ["entailment", "neutral"], "entailment"),
        ("entailment? no, neutral", ["entailment", "neutral"], "neutral"),
        ("Entailment", ["entailment", "neutral"], None),  # case-sensitive
        ("the answer shows neutrality", ["entailment", "neutral"], "neutral"),  # no word boundaries
        ("nothing here", ["entailment", "neutral"], None),
        ("neutral, then entailment, then neutral again", ["entailment", "neutral"], "neutral"),
        ("it is not neutral", ["neutral", "not neutral"], "not neutral"),  # same end: longer wins
        ("yes sir", ["yes", "yes sir"], "yes sir"),  # same start: longer wins
        ("not neutral, just neutral", ["neutral", "not neutral"], "neutral"),
        ("B", ["", "B"], "B"),  # an empty label never matches
    ],
)
def test_paper_label_prediction(output, labels, expected):
    assert paper_label_prediction(output, labels) == expected


def test_paper_accuracy_uses_last_label_then_normalised_comparison():
    labels = ["entailment", "neutral"]
    assert paper_accuracy("Not neutral; it is entailment.", ["entailment"], labels) == 1.0
    assert paper_accuracy("entailment? no, neutral", ["entailment"], labels) == 0.0
    assert paper_accuracy("Entailment", ["entailment"], labels) == 0.0
    # label extraction is case-sensitive, the comparison with the reference is normalised
    assert paper_accuracy("so: Yes.", ["yes"], ["Yes", "No"]) == 1.0
    assert paper_accuracy("neutral", ["contradiction", "Neutral"], labels) == 1.0  # max over references


def test_char_lcs_f1_by_hand():
    # pred "abcde", ref "ace": LCS 3, P = 3/5, R = 1, F = 2 * 0.6 / 1.6 = 0.75
    assert char_lcs_f1("abcde", "ace") == pytest.approx(0.75)
    assert char_lcs_f1("ace", "abcde") == pytest.approx(0.75)
    assert char_lcs_f1("abc", "abc") == 1.0
    assert char_lcs_f1("abc", "xyz") == 0.0
    assert char_lcs_f1("abc", "") == 0.0
    # raw characters: case matters. "Abc" vs "abc": LCS 2 -> P = R = 2/3
    assert char_lcs_f1("Abc", "abc") == pytest.approx(2 / 3)
    # "AGGTAB" vs "GXTXAYB": classic LCS "GTAB" = 4, P = 4/6, R = 4/7
    p, r = 4 / 6, 4 / 7
    assert char_lcs_f1("AGGTAB", "GXTXAYB") == pytest.approx(2 * p * r / (p + r))


def test_char_lcs_f1_handles_long_strings():
    rng = random.Random(0)
    a = "".join(rng.choices("abcdef ", k=600))
    assert char_lcs_f1(a, a) == 1.0
    assert 0 < char_lcs_f1(a, a[::-1]) < 1


def plain_lcs_length(a: str, b: str) -> int:
    """The textbook O(nm) dynamic programme, the reference rapidfuzz is checked against."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, ca in enumerate(a):
        for j, cb in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if ca == cb else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_char_lcs_f1_equals_a_plain_dynamic_programme():
    rng = random.Random(1)
    for _ in range(200):
        a = "".join(rng.choices("abcAB .", k=rng.randint(0, 40)))
        b = "".join(rng.choices("abcAB .", k=rng.randint(0, 40)))
        lcs = plain_lcs_length(a, b)
        expected = 0.0 if lcs == 0 else 2 * (lcs / len(a)) * (lcs / len(b)) / (lcs / len(a) + lcs / len(b))
        assert char_lcs_f1(a, b) == pytest.approx(expected), (a, b)


def test_score_instances_classification_and_generation():
    rows = [{"prediction": "It is neutral.", "references": ["neutral"], "task": "t1"},
            {"prediction": None, "references": ["entailment"], "task": "t1"}]
    scored = score_instances(rows, "classification", ["entailment", "neutral"])
    assert [s["paper_accuracy"] for s in scored] == [1.0, 0.0]
    assert [s["exact_match"] for s in scored] == [0.0, 0.0]
    assert scored[0]["rougeL"] == pytest.approx(rouge_l("It is neutral.", ["neutral"]))
    assert "paper_char_lcs_f1" not in scored[0] and scored[0]["task"] == "t1"

    scored = score_instances([{"prediction": "abcde", "references": ["ace", "abcde"]}], "generation", None)
    assert scored[0]["paper_char_lcs_f1"] == pytest.approx(0.75)  # first reference only
    assert scored[0]["exact_match"] == 1.0 and scored[0]["rougeL"] == 1.0  # official: max over references
    assert "paper_accuracy" not in scored[0]

    with pytest.raises(ValueError):
        score_instances(rows, "classification", None)


def test_aggregate_and_aggregate_by():
    scored = [
        {"task": "a", "category": "textual_entailment", "exact_match": 1.0, "rougeL": 0.5, "paper_accuracy": 1.0},
        {"task": "a", "category": "textual_entailment", "exact_match": 0.0, "rougeL": 0.25, "paper_accuracy": 1.0},
        {"task": "b", "category": "title_generation", "exact_match": 0.0, "rougeL": 0.75, "paper_char_lcs_f1": 0.5},
    ]
    overall = aggregate(scored)
    assert overall["exact_match"] == pytest.approx(100 / 3)
    assert overall["rougeL"] == pytest.approx(50.0)
    assert overall["paper_accuracy"] == pytest.approx(100.0)  # over the rows that carry it
    assert overall["paper_char_lcs_f1"] == pytest.approx(50.0)
    assert set(overall) == {"exact_match", "rougeL", "paper_accuracy", "paper_char_lcs_f1"}  # task/category ignored

    by_category = aggregate_by(scored, ["category"])
    assert set(by_category) == {"textual_entailment", "title_generation"}
    assert by_category["textual_entailment"] == pytest.approx({"exact_match": 50.0, "rougeL": 37.5, "paper_accuracy": 100.0})
    assert by_category["title_generation"] == pytest.approx({"exact_match": 0.0, "rougeL": 75.0, "paper_char_lcs_f1": 50.0})
    assert set(aggregate_by(scored, ["task", "category"])) == {"a/textual_entailment", "b/title_generation"}
    assert aggregate([]) == {}

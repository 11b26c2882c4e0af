"""Filter, vote and balance rules as the paper publishes them (docs/methods.md), then the whole synthesis funnel on a
scripted generator whose noise is known in advance."""

from __future__ import annotations

import json
import random

from tests.conftest import superni_task_path
from tests.scripted import is_input_request, scripted_model

from selfguide.methods import MethodContext, get_method, synthesize
from selfguide.methods.self_guide import SelfGuideConfig
from selfguide.prompts.self_guide import INPUT_STOP, clean_generated_input
from selfguide.stages.filters import InputFilter, InputFilterConfig, check_noise, length_window, normalize_label
from selfguide.stages.vote import balance_classes, vote_answer
from selfguide.tasks.load import load_task
from selfguide.tasks.spec import Example, EvalItem, TaskSpec


def test_length_window_matches_the_spec_formula():
    # task036's demo inputs: mean +/- 2 population std, truncated with int()
    task = load_task(superni_task_path("task036"))
    assert length_window([len(e.input) for e in task.examples]) == (15, 83)
    assert length_window([10, 20, 30, 40]) == (int(25 - 2 * 11.1803), int(25 + 2 * 11.1803))


def test_length_window_degenerate_cases_keep_a_sensible_width():
    # sigma = 0 (one demo, or all demos one length): the original rejected everything
    lo, hi = length_window([40])
    assert (lo, hi) == (20, 61) and lo <= 40 < hi
    assert length_window([40, 40, 40], degenerate_width=0.25) == (30, 51)
    # mu - 2 sigma <= 0: the lower bound is clamped at 0 rather than rejecting everything
    lo, hi = length_window([1, 1, 1, 50])
    assert lo == 0 and hi > 50
    assert length_window([1]) == (0, 2)


def make_filter(**overrides) -> InputFilter:
    config = InputFilterConfig(**overrides)
    # demo lengths 30 and 50: window [20, 60)
    return InputFilter(config, ["a demo text, thirty characters", "another demo text, this one fifty characters long"], ["an eval text that must stay held out."], classification=True)


def test_input_filters_in_order_with_reasons():
    f = make_filter()
    assert f.check("   ").reason == "empty"
    assert f.check("short").reason == "too_short"
    assert f.check("x" * 200).reason == "too_long"
    assert f.check("Sure, I'd be happy to help with forty chars").reason == "noise_phrase"
    assert f.check("The input here is forty characters long..").detail == "input"
    assert f.check("This is forty characters; therefore fine").detail == "therefore"  # classification term
    assert f.check("a demo text, thirty characters").reason == "demo_copy"
    assert f.check("  an eval text that must stay held out.  ").reason == "eval_copy"
    text = "A brand new text that is forty chars long"
    assert f.check(text) is None
    f.accept(text)
    assert f.check(text + " ").reason == "duplicate"


def test_input_filters_are_switchable():
    f = make_filter(length_filter=False, drop_demo_copies=False, drop_eval_copies=False)
    assert f.check("short") is None
    assert f.check("a demo text, thirty characters") is None
    assert f.check("an eval text that must stay held out.") is None
    assert make_filter(noise={"enabled": False}).check("Absolutely! forty characters of text here") is None


def test_generated_inputs_end_at_the_next_header_not_their_own():
    assert INPUT_STOP == ("\n[Example",)
    assert clean_generated_input("[Example 12]\nA new premise.") == "A new premise."
    assert clean_generated_input("  [Example 3]  A new premise. ") == "A new premise."
    assert clean_generated_input("A premise mentioning [Example] inside") == "A premise mentioning [Example] inside"


def test_noise_phrases_ignore_case_terms_do_not():
    assert check_noise("OF COURSE! here it is", ["Of course!"], []).reason == "noise_phrase"
    assert check_noise("Hence we know", [], ["Hence"]).reason == "noise_term"
    assert check_noise("hence we know", [], ["Hence"]) is None
    assert check_noise("first line\n\nsecond", [], ["\n\n"]).detail == "\n\n"


def test_vote_threshold_and_ties_go_to_the_shortest():
    assert vote_answer(["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"], 0.3)["passed"] is False  # 20%
    vote = vote_answer(["a", "a", "a", "b", "c", "d", "e", "f", "g", "h"], 0.3)
    assert (vote["winner"], vote["count"], vote["valid"], vote["passed"]) == ("a", 3, 10, True)
    assert vote_answer(["longer", "longer", "short", "short"], 0.3)["winner"] == "short"
    assert vote_answer(["bb", "aa", "bb", "aa"], 0.3)["winner"] == "aa"  # same length: order-independent
    assert vote_answer([], 0.3)["passed"] is False


def test_label_normalisation():
    labels = ["entails", "neutral", "B_neutral_A"]
    assert normalize_label("entails.", labels) == "entails"
    assert normalize_label("  Neutral! ", labels) == "neutral"
    assert normalize_label("b_neutral_a", labels) == "B_neutral_A"
    assert normalize_label("it entails", labels) is None


def test_balance_downsamples_to_the_rarest_label():
    pairs = [{"input_id": f"i{i}", "output": "A" if i < 7 else "B", "input": str(i)} for i in range(10)]
    kept, dropped = balance_classes(pairs, seed=0)
    assert sorted(p["output"] for p in kept) == ["A"] * 3 + ["B"] * 3
    assert len(dropped) == 4 and all(p["output"] == "A" for p in dropped)
    assert kept == balance_classes(pairs, seed=0)[0]


GOOD_INPUT = "Premise: a man walks his dog. Hypothesis: number {}"


def noisy_script(messages, params, j):
    """Inputs: a fixed mix of good, empty, boilerplate, too long and repeated texts.
    Outputs: a clear majority for good inputs, no majority or a non-label otherwise."""
    rng = random.Random(params.seed)
    if is_input_request(messages):
        kind = rng.randrange(5)
        return ["", "Sure, I'd be happy to help! Here is one for you ok", "x" * 500, GOOD_INPUT.format(0), GOOD_INPUT.format(rng.randrange(10**6))][kind]
    source = messages[-1]["content"]
    number = int(source.rsplit(" ", 1)[1])
    if number % 3 == 0:  # a majority for a label, some samples noisy
        return ["yes", "Yes.", "yes", "Of course! yes", "no"][j % 5]
    if number % 3 == 1:  # spread out: no answer reaches 30%
        return f"answer {j}"
    return ["maybe", "maybe", "maybe", "no"][j % 4]  # a majority that is not a label


def noisy_task() -> TaskSpec:
    return TaskSpec(
        name="noisy",
        instruction="Does the premise entail the hypothesis? Answer yes or no.",
        examples=[Example(input=GOOD_INPUT.format(7), output="yes"), Example(input=GOOD_INPUT.format(12345), output="no")],
        type="classification",
        labels=["no", "yes"],
        eval=[EvalItem(input=GOOD_INPUT.format(424242), references=["yes"])],
    )


def test_scripted_noise_is_removed_and_every_decision_accounted(tmp_path):
    model, backend = scripted_model(noisy_script, tmp_path / "cache.sqlite")
    config = SelfGuideConfig()
    config.inputs.rounds = 8
    summary = synthesize(get_method("self-guide"), MethodContext(noisy_task(), model, tmp_path / "synth", seed=1), config)
    stages = {row["stage"]: row for row in summary["stages"]}
    for row in stages.values():  # kept + dropped = candidates at every stage
        assert row["kept"] + sum(row["dropped"].values()) == row["total"]
    inputs = stages["input_filter"]
    assert inputs["total"] == 80
    assert {"empty", "noise_phrase", "too_long"} <= set(inputs["dropped"])
    assert stages["output_filter"]["total"] == inputs["kept"] * 10
    assert stages["vote"]["total"] == inputs["kept"]
    assert {"no_majority", "not_a_label"} <= set(stages["vote"]["dropped"])
    assert stages["output_filter"]["dropped"] == {"noise_phrase": stages["output_filter"]["dropped"]["noise_phrase"]}

    dataset = [json.loads(line) for line in (tmp_path / "synth" / "dataset.jsonl").read_text().splitlines()]
    assert len(dataset) == summary["pairs"] > 0
    for row in dataset:
        number = int(row["input"].rsplit(" ", 1)[1])
        assert number % 3 == 0 and row["output"] == "yes"  # only inputs with a real label majority survive
        assert row["provenance"]["votes"] >= 0.3 * row["provenance"]["valid_samples"]
    texts = [row["input"] for row in dataset]
    assert len(texts) == len(set(texts))

    drops = [json.loads(line) for line in (tmp_path / "synth" / "drops.jsonl").read_text().splitlines()]
    dropped_total = sum(sum(row["dropped"].values()) for row in summary["stages"])
    assert len(drops) == dropped_total
    assert all(d["reason"] and d["stage"] for d in drops)
    records = [json.loads(line) for line in (tmp_path / "synth" / "inputs.jsonl").read_text().splitlines()]
    assert len(records) == 80 and sum(r["status"] == "kept" for r in records) == inputs["kept"]
    assert (tmp_path / "synth" / "summary.md").read_text().startswith("# Synthesis summary")

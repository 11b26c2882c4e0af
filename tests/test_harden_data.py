"""Issue 25's export and dataset-task reproductions: a run folder exports anywhere, bad rows and
flags are one line, cards publish no local path; dataset columns of the wrong type are one line."""

from __future__ import annotations

import json

import pytest
from tests.conftest import run_cli

TASK = """name: sentiment
instruction: Say whether the review is positive or negative.
examples:
  - {input: "A joy.", output: positive}
  - {input: "A bore.", output: negative}
labels: [positive, negative]
"""
ROWS = [{"id": f"r{i}", "input": f"Review {i}.", "output": "positive" if i % 2 else "negative"} for i in range(4)]


def make_run(folder, config_values: dict, rows: list | None = None, lines: str | None = None):
    """A run folder as `synthesize` leaves it, without calling a model: config.yaml, the task copy, the dataset."""
    from selfguide import api, layout
    from selfguide.config import load_config
    from selfguide.run_task import load_method_task

    config = load_config(None, values={"out": str(folder), **config_values})
    with api.open_run(config, load_method_task(config)):
        pass
    path = layout.dataset_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines if lines is not None else "".join(json.dumps(r) + "\n" for r in rows or ROWS))
    return folder


@pytest.fixture
def run_folder(tmp_path, monkeypatch, tiny_model_dir):
    """A run made from a task file given by a relative path, with the model a local folder."""
    (tmp_path / "made").mkdir()
    (tmp_path / "made" / "task.yaml").write_text(TASK)
    monkeypatch.chdir(tmp_path / "made")
    folder = make_run(tmp_path / "made" / "run", {"task": "task.yaml", "model.name": str(tiny_model_dir)})
    monkeypatch.chdir(tmp_path)
    return folder


def refused(args, capsys, monkeypatch) -> str:
    code, _, err = run_cli(args, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_run_made_from_a_relative_task_path_exports_elsewhere_without_local_paths(run_folder, tmp_path, capsys, monkeypatch, tiny_model_dir):
    (tmp_path / "made" / "task.yaml").unlink()  # the task file is gone: the run folder carries its copy
    code, out, err = run_cli(["export", str(run_folder), "--format", "sharegpt", "--license", "apache-2.0"], capsys, monkeypatch)
    assert code == 0, err
    card = (run_folder / "export" / "sharegpt" / "README.md").read_text()
    assert "license: apache-2.0" in card
    assert str(tiny_model_dir) not in card and str(tmp_path) not in card


def test_a_general_purpose_run_exports_without_a_task(tmp_path, capsys, monkeypatch, tiny_model_dir):
    rows = [{"id": "a", "instruction": "Name a colour.", "input": "", "output": "Blue."}]
    folder = make_run(tmp_path / "run", {"synth.method": "self-instruct", "model.name": str(tiny_model_dir)}, rows)
    code, out, err = run_cli(["export", str(folder), "--format", "openai"], capsys, monkeypatch)
    assert code == 0, err
    row = json.loads((folder / "export" / "openai" / "train.jsonl").read_text().splitlines()[0])
    assert row["messages"][-1] == {"role": "assistant", "content": "Blue."}


@pytest.mark.parametrize(
    "lines, expected",
    [
        ('{"input": "a", "output": "positive"}\n{oops\n', "line 2"),
        ('[1, 2]\n', "line 1"),
        ('{"input": "a", "output": 5}\n', "'output'"),
    ],
    ids=["malformed-line", "list-row", "int-output"],
)
def test_bad_dataset_rows_are_one_line(lines, expected, run_folder, capsys, monkeypatch):
    from selfguide import layout

    layout.dataset_path(run_folder).write_text(lines)
    assert expected in refused(["export", str(run_folder)], capsys, monkeypatch)


def test_export_flags_are_checked(run_folder, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    assert "--out" in refused(["export", str(run_folder), "--out", str(tmp_path / "a_file")], capsys, monkeypatch)
    assert "--license" in refused(["export", str(run_folder), "--license", "My License\n# injected"], capsys, monkeypatch)


def test_push_to_a_dead_hub_is_one_line(run_folder, capsys, monkeypatch):
    from tests.servers import free_port

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{free_port()}", raising=False)
    line = refused(["export", str(run_folder), "--format", "openai", "--push-to-hub", "me/data"], capsys, monkeypatch)
    assert "--push-to-hub me/data: upload failed" in line


# ---- dataset tasks ---------------------------------------------------------------------------


@pytest.fixture
def parquet(tmp_path):
    from datasets import Dataset

    def write(name: str, inputs: list, outputs: list) -> str:
        path = tmp_path / f"{name}.parquet"
        Dataset.from_dict({"input": inputs, "output": outputs}).to_parquet(path)
        return str(path)

    return write


@pytest.mark.parametrize(
    "inputs, outputs, expected",
    [
        (list(range(12)), ["a", "b"] * 6, "--input-column 'input'"),
        ([None] + [f"text {i}" for i in range(11)], ["a", "b"] * 6, "--input-column 'input'"),
        ([[f"t{i}"] for i in range(12)], ["a", "b"] * 6, "--input-column 'input'"),
        ([f"text {i}" for i in range(12)], [None] + ["a"] * 11, "--output-column 'output'"),
    ],
    ids=["int-input", "null-input", "list-input", "null-output"],
)
def test_dataset_columns_of_the_wrong_type_are_one_line(inputs, outputs, expected, parquet, capsys, monkeypatch):
    path = parquet("data", inputs, outputs)
    line = refused(["inspect", path, "--instruction", "Do it.", "--demos", "2"], capsys, monkeypatch)
    assert expected in line


def test_inspect_reads_a_dataset_task_with_column_flags_and_refuses_eval_split(tmp_path, capsys, monkeypatch):
    from datasets import Dataset

    path = tmp_path / "reviews.parquet"
    Dataset.from_dict({"text": [f"Review {i}." for i in range(12)], "label": [i % 3 for i in range(12)]}).to_parquet(path)
    code, out, err = run_cli(["inspect", str(path), "--input-column", "text", "--output-column", "label", "--instruction", "Rate it.", "--demos", "2", "--json"], capsys, monkeypatch)
    assert code == 0, err
    info = json.loads(out)
    assert info["examples"] == 2 and info["eval_items"] == 10
    assert "--eval-split" in refused(["inspect", str(path), "--eval-split", "official", "--input-column", "text"], capsys, monkeypatch)


def test_a_non_utf8_csv_in_a_data_folder_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "folder" / "data").mkdir(parents=True)
    (tmp_path / "folder" / "data" / "train.csv").write_bytes(b"input,output\ncaf\xe9,x\n\xff\xfe,y\n")
    line = refused(["inspect", str(tmp_path / "folder"), "--instruction", "x", "--demos", "1"], capsys, monkeypatch)
    assert "folder: dataset" in line

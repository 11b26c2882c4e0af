"""Tasks from `datasets` data: a local save_to_disk folder with a class-label column, a parquet
file (demos held out of the eval), the Natural Instructions layout, and clear errors."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from selfguide.arguments import run_config
from selfguide.run_task import load_run_task
from selfguide.errors import BadInputError
from selfguide.tasks.datasets import DatasetTaskConfig, is_dataset_task, load_dataset_task


def sentiment_folder(tmp_path):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    splits = {
        name: Dataset.from_dict({"text": [f"{name} review {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}, features=features)
        for name, n in (("train", 12), ("test", 6))
    }
    folder = tmp_path / "sentiment"
    DatasetDict(splits).save_to_disk(str(folder))
    return folder


def test_local_datasets_folder_through_the_config(tmp_path):
    folder = sentiment_folder(tmp_path)
    assert is_dataset_task(str(folder)) and is_dataset_task("hf:glue:sst2") and not is_dataset_task("task036")
    config = run_config(str(folder), model="m", overrides=["dataset.input_column=text", "dataset.output_column=label", "dataset.demos=3", "dataset.instruction=Positive or negative?"])
    task = load_run_task(config)
    assert (task.name, task.type, task.labels, task.instruction) == ("sentiment", "classification", ["negative", "positive"], "Positive or negative?")
    assert len(task.examples) == 3 and all(e.input.startswith("train review") and e.output in task.labels for e in task.examples)
    assert [(i.input, i.references) for i in task.eval[:2]] == [("test review 0", ["negative"]), ("test review 1", ["positive"])]
    assert load_run_task(config) == task  # seeded draw


def test_parquet_file_keeps_demos_out_of_the_eval(tmp_path):
    path = tmp_path / "titles.parquet"
    Dataset.from_dict({"input": [f"paragraph {i}" for i in range(10)], "output": [f"title {i}" for i in range(10)]}).to_parquet(str(path))
    task = load_dataset_task(str(path), DatasetTaskConfig(demos=4, instruction="Title it."))
    assert task.type == "generation" and len(task.eval) == 6
    assert not {e.input for e in task.examples} & {i.input for i in task.eval}


def test_natural_instructions_layout(tmp_path):
    rows = {
        "task_name": ["task036_qasc", "task036_qasc", "task999_other", "task036_qasc"],
        "definition": ["Write a related fact.", "Write a related fact.", "Other.", "Write a related fact."],
        "inputs": ["Topic: bees", "Topic: cows", "x", "Topic: ice"],
        "targets": ["Bees make honey.", "Cows give milk.", "y", "Heat melts ice."],
    }
    folder = tmp_path / "ni"
    DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows)}).save_to_disk(str(folder))
    task = load_dataset_task(str(folder), DatasetTaskConfig(demos=2, where="task_name=task036*"))
    assert task.instruction == "Write a related fact." and task.name == "task036"
    assert len(task.eval) == 3 and all(e.input.startswith("Topic") for e in task.examples)


def test_clear_errors(tmp_path):
    folder = str(sentiment_folder(tmp_path))
    cases = [
        (DatasetTaskConfig(input_column="txt", output_column="label", instruction="x"), "--input-column 'txt': expected one of the columns"),
        (DatasetTaskConfig(input_column="text", output_column="label"), "--instruction"),
        (DatasetTaskConfig(input_column="text", output_column="label", instruction="x", eval_split="dev"), "eval split 'dev': expected one of the splits"),
        (DatasetTaskConfig(input_column="text", output_column="label", instruction="x", demos=20), "at least 20 rows"),
        (DatasetTaskConfig(instruction="x"), "--input-column"),
    ]
    for config, message in cases:
        with pytest.raises(BadInputError, match=message):
            load_dataset_task(folder, config)
    with pytest.raises(BadInputError, match="a loadable dataset"):
        load_dataset_task(str(tmp_path / "missing.parquet"), DatasetTaskConfig())

"""Task specs: our own files, SuperNI files, `selfguide inspect`, and every bad-input case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import SUPERNI, superni_task_path

from selfguide.errors import BadInputError
from selfguide.tasks.load import load_task


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env_cmd = [sys.executable, "-c", "from selfguide.cli import main; main()", *args]
    return subprocess.run(env_cmd, capture_output=True, text=True, cwd=cwd, env={"SELFGUIDE_SUPERNI": str(SUPERNI), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


def write_task(tmp_path: Path, data: object, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith((".yaml", ".yml")) else json.dumps(data))
    return path


GOOD = {
    "name": "sentiment",
    "instruction": "Say whether the review is positive or negative.",
    "examples": [{"input": "Loved it.", "output": "positive"}, {"input": "Awful.", "output": "negative"}],
    "labels": ["positive", "negative"],
}


def test_own_task_yaml_and_json(tmp_path):
    task = load_task(write_task(tmp_path, GOOD))
    assert (task.name, task.type, task.labels, len(task.examples)) == ("sentiment", "classification", ["positive", "negative"], 2)
    as_json = load_task(write_task(tmp_path, {**GOOD, "type": "classification"}, "t.json"))
    assert as_json.examples == task.examples


def test_own_task_eval_file_with_several_references(tmp_path):
    (tmp_path / "eval.jsonl").write_text('{"input": "Great.", "output": "positive"}\n\n{"input": "Meh.", "output": ["negative", "positive"]}\n')
    task = load_task(write_task(tmp_path, {**GOOD, "eval": "eval.jsonl"}))
    assert [item.references for item in task.eval] == [["positive"], ["negative", "positive"]]


def test_type_inferred_from_eval_outputs(tmp_path):
    rows = [{"input": f"x{i}", "output": "yes" if i % 2 else "no"} for i in range(10)]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {"instruction": "Answer yes or no.", "examples": [{"input": "a", "output": "yes"}], "eval": "eval.jsonl"}
    task = load_task(write_task(tmp_path, data))
    assert task.type == "classification" and task.labels == ["no", "yes"]
    generation = {"instruction": "Rewrite.", "examples": [{"input": "a", "output": "b"}]}
    assert load_task(write_task(tmp_path, generation, "g.yaml")).type == "generation"


def test_superni_task_labels_come_from_data():
    task = load_task(superni_task_path("task190"))
    assert task.type == "classification"
    assert task.labels == ["C", "N"]  # the definition names E as well; the data never uses it
    assert len(task.eval) == 100 and task.eval[0].id.startswith("task190-")
    assert task.instruction.startswith("In this task")
    assert task.category == "Textual Entailment"


def test_superni_generation_and_selfguide_splits():
    task = load_task(superni_task_path("task036"))
    assert task.type == "generation" and task.labels is None and len(task.examples) == 10
    test_split = load_task(superni_task_path("task036"), "selfguide-test")
    validation = load_task(superni_task_path("task036"), "selfguide-validation")
    assert len(test_split.eval) > len(validation.eval) > 0
    assert all(len(item.references) == 1 for item in test_split.eval)


def test_superni_short_name(monkeypatch):
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    assert load_task("task036").name == "task036"


def test_inspect_task036_windows():
    result = run_cli("inspect", "task036", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["input_window"] == [15, 83]
    assert info["output_window"] == [3, 34]
    assert (info["type"], info["examples"], info["eval_items"]) == ("generation", 10, 100)
    table = run_cli("inspect", "task190")
    assert "classification" in table.stdout and "['C', 'N']" in table.stdout


BAD_CASES = {
    "not_yaml": ("task.yaml", "instruction: [unclosed\n", "valid YAML"),
    "not_json": ("task.json", "{'instruction': ", "valid JSON"),
    "not_a_mapping": ("task.yaml", "- a\n- b\n", "top level"),
    "no_instruction": ("task.yaml", {"examples": GOOD["examples"]}, "field 'instruction'"),
    "empty_instruction": ("task.yaml", {**GOOD, "instruction": "  "}, "field 'instruction'"),
    "no_examples": ("task.yaml", {**GOOD, "examples": []}, "at least one"),
    "example_without_output": ("task.yaml", {**GOOD, "examples": [{"input": "x"}]}, "examples[0].output"),
    "labels_miss_example": ("task.yaml", {**GOOD, "labels": ["positive", "neutral"]}, "examples[1].output"),
    "unknown_field": ("task.yaml", {**GOOD, "instructions": "typo"}, "field 'instructions'"),
    "bad_type": ("task.yaml", {**GOOD, "type": "regression"}, "field 'type'"),
    "bad_category": ("task.yaml", {**GOOD, "category": ["a"]}, "field 'category'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_task_files_exit_2_with_a_clear_message(tmp_path, case):
    name, content, expected_fragment = BAD_CASES[case]
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    with pytest.raises(BadInputError) as err:
        load_task(path)
    assert str(path) in str(err.value) and expected_fragment in str(err.value)
    result = run_cli("inspect", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_and_missing_files(tmp_path):
    binary = tmp_path / "task.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    for path, fragment in [(binary, "UTF-8"), (tmp_path / "missing.yaml", "no such file")]:
        result = run_cli("inspect", str(path))
        assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr


def test_broken_eval_lines_name_the_line(tmp_path):
    cases = {
        '{"input": "a", "output": "positive"}\n{not json}\n': "line 2",
        '{"input": "a"}\n': "line 1 field 'output'",
        '{"input": 3, "output": "x"}\n': "line 1 field 'input'",
        '["a", "b"]\n': "line 1",
        "\n": "empty",
    }
    for content, fragment in cases.items():
        (tmp_path / "eval.jsonl").write_text(content)
        with pytest.raises(BadInputError) as err:
            load_task(write_task(tmp_path, {**GOOD, "eval": "eval.jsonl"}))
        assert "eval.jsonl" in str(err.value) and fragment in str(err.value), str(err.value)
    (tmp_path / "eval.jsonl").write_text("{oops\n")
    result = run_cli("inspect", str(write_task(tmp_path, {**GOOD, "eval": "eval.jsonl"})))
    assert result.returncode == 2 and "eval.jsonl: line 1" in result.stderr


def test_gold_items_outside_the_eval_set():
    from selfguide.methods.baselines import gold_pairs

    task = load_task(superni_task_path("task1622"))
    eval_inputs = {item.input for item in task.eval}
    assert len(task.eval) == 100 and len(task.dev) > 100
    assert not eval_inputs & {item.input for item in task.dev}
    pairs = gold_pairs(task, 30, seed=1)
    assert len(pairs) == 30 and not eval_inputs & {source for source, _ in pairs}
    assert pairs == gold_pairs(task, 30, seed=1) != gold_pairs(task, 30, seed=2)

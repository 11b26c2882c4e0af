"""The Python API: what `import selfguide` exposes, tasks built in memory, keyword settings, and
the one-liner `selfguide.run(task, model=...)` end to end on the tiny model."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.conftest import REPO

import selfguide
from selfguide.arguments import run_config
from selfguide.config import RunConfig
from selfguide.tasks.load import load_task


def test_import_exposes_the_api_without_loading_torch():
    assert set(selfguide.__all__) == {"run", "synthesize", "train", "evaluate", "Task", "load_config"}
    assert all(callable(getattr(selfguide, name)) and getattr(selfguide, name).__doc__ for name in selfguide.__all__)
    code = "import sys, selfguide; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_task_in_memory_from_tuples_and_dicts():
    task = selfguide.Task(
        instruction="Is the review positive or negative?",
        examples=[("A joy.", "positive"), {"input": "Dull.", "output": "negative"}],
        eval=[(f"review {i}", ["positive", "negative"][i % 2]) for i in range(6)] + [{"input": "meh", "output": ["negative"]}],
    )
    assert (task.name, task.type, task.labels) == ("task", "classification", ["negative", "positive"])
    assert task.eval[-1].references == ["negative"] and task.eval[0].id == "eval-0"
    generation = selfguide.Task(instruction="Title it.", examples=[("a long text", "A title")])
    assert generation.type == "generation" and generation.labels is None
    with pytest.raises(ValueError, match="at least one example"):
        selfguide.Task(instruction="x", examples=[])


def test_run_config_from_a_task_and_keywords(tmp_path):
    config = run_config("task036", model="m", limit=3, seed=7, config=REPO / "configs" / "tiny.yaml", overrides=["synth.outputs.n=3"])
    assert (config.task, config.model.name, config.eval.limit, config.seed, config.synth.outputs.n) == ("task036", "m", 3, 7, 3)
    assert config.train.epochs == 1  # from configs/tiny.yaml
    assert run_config(config, model="other").model.name == "other" and run_config(config) == config
    with pytest.raises(TypeError, match="unknown setting 'modle'"):
        run_config("task036", modle="m")
    task = selfguide.Task(name="mine", instruction="Title it.", examples=[("a text", "A title")], eval=[("b text", "B")])
    config = run_config(task, model="m", out=tmp_path / "run")
    assert config.task == str(tmp_path / "run" / "task.yaml")
    loaded = load_task(config.task)
    assert (loaded.name, loaded.instruction, loaded.examples, loaded.type) == (task.name, task.instruction, task.examples, task.type)
    assert [(i.input, i.references) for i in loaded.eval] == [("b text", ["B"])]
    assert isinstance(config, RunConfig)


@pytest.mark.slow
def test_the_one_liner(tiny_model_dir, tmp_path):
    task = tmp_path / "task.yaml"
    (tmp_path / "eval.jsonl").write_text('{"input": "What do plants need to grow?", "output": "sunlight"}\n{"input": "What melts ice?", "output": "heat"}\n')
    task.write_text(
        "instruction: Answer the question with one word.\n"
        "examples:\n  - {input: 'What do bees make?', output: honey}\n  - {input: 'What do cows give?', output: milk}\n"
        "eval: eval.jsonl\n"
    )
    result = selfguide.run(
        str(task), model=str(tiny_model_dir), config=REPO / "configs" / "tiny.yaml", out=tmp_path / "run", overrides=["synth.inputs.rounds=1"]
    )
    assert (tmp_path / "run" / "report.html").is_file() and result.baseline["n"] == 2
    assert result.headline[0].startswith("Verdict") and result.headline[1].startswith("Why")

"""The teacher writes and labels, the student is trained and evaluated; general-purpose data is
scored on the user-oriented instructions in `selfguide run`."""

from __future__ import annotations

import json
import shutil
import sqlite3
from typing import Literal

import pytest
from tests.conftest import REPO, run_cli
from tests.scripted import scripted_model
from tests.methods.test_self_instruct import config as self_instruct_config
from tests.methods.test_self_instruct import script as self_instruct_script

from selfguide import api, layout, methods
from selfguide.backends.resolve import require_teacher
from selfguide.errors import BadInputError
from selfguide.config import load_config
from selfguide.io import read_jsonl, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, get_method, register, synthesize
from selfguide.plan import Calls
from selfguide.stages.funnel import stage_row
from selfguide.tasks.spec import EvalItem, Example, TaskSpec


def cache_models(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT DISTINCT model FROM calls")}


def test_self_instruct_teacher_writes_every_stage(tmp_path):
    """Instructions, the classification answers and the instances all come from the teacher; the
    student is never asked (its backend would fail)."""

    def student_script(messages, params, j):
        raise AssertionError("the student must not write data")

    cache = tmp_path / "cache.sqlite"
    teacher, teacher_backend = scripted_model(self_instruct_script, cache, name="teacher")
    student, _ = scripted_model(student_script, cache, name="student")
    ctx = MethodContext(task=None, model=student, teacher=teacher, out_dir=tmp_path / layout.SYNTH, seed=0, progress=False)
    summary = synthesize(get_method("self-instruct"), ctx, self_instruct_config())
    assert summary["pairs"] == 9 and teacher_backend.calls == summary["model_calls"]["calls"] == 16
    assert summary["models"] == {"wrote": "teacher", "labelled": "teacher", "trained": "student"}
    assert cache_models(cache) == {"teacher"}
    assert "Data written by teacher, labelled by teacher; trained: student." in (tmp_path / layout.SYNTH / layout.SUMMARY_MD).read_text()


def test_teacher_flags_on_the_command_line(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """`--teacher` (a copy of the tiny model: another model to the cache) writes alpaca's data;
    then evaluating the student adds the student's entries beside the teacher's."""
    teacher_dir = shutil.copytree(tiny_model_dir, tmp_path / "teacher-model")
    out = tmp_path / "run"
    tiny = ["--set", "synth.rounds.num_instructions=4", "--set", "synth.rounds.prompts_per_round=2", "--set", "synth.prompt.max_new_tokens=16"]
    code, stdout, stderr = run_cli(["synthesize", "--method", "alpaca", "-m", str(tiny_model_dir), "--teacher", str(teacher_dir), "-o", str(out), "-q", *tiny], capsys, monkeypatch)
    assert code == 0, stderr
    summary = json.loads((out / layout.SYNTH / layout.SUMMARY).read_text())
    assert summary["models"] == {"wrote": str(teacher_dir), "labelled": str(teacher_dir), "trained": str(tiny_model_dir)}
    assert summary["model_calls"]["calls"] == 4 and cache_models(out / layout.CACHE) == {str(teacher_dir)}
    assert f"Data written by {teacher_dir}" in stdout
    assert f"name: {teacher_dir}" in (out / layout.CONFIG).read_text()

    user_oriented = tmp_path / "user.jsonl"
    write_jsonl(user_oriented, [{"id": "u0", "instruction": "Name a colour.", "instances": [{"input": "", "output": "red"}]}])
    code, stdout, stderr = run_cli(
        ["eval", "--user-oriented", "-m", str(tiny_model_dir), "-o", str(out), "-q", "--set", f"eval.user_oriented.path={user_oriented}", "--set", "eval.user_oriented.max_new_tokens=4"],
        capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout[: stdout.rindex("}") + 1])["n"] == 1
    assert (out / layout.EVAL / layout.USER_ORIENTED / layout.PROMPTING / layout.METRICS).is_file()
    assert cache_models(out / layout.CACHE) == {str(teacher_dir), str(tiny_model_dir)}


def test_teacher_settings_are_checked():
    config = load_config(values={"teacher.name": "some/teacher", "teacher.backend": "openai"})
    assert config.teacher.name == "some/teacher" and config.teacher.backend == "openai" and config.model.name == ""
    assert load_config().teacher is None
    with pytest.raises(BadInputError, match="teacher.base_url"):
        require_teacher(config)


# ---- general-purpose data in `selfguide run` -------------------------------------------------


class FixedRowsConfig(MethodConfig):
    """Three fixed rows with their own instruction: general-purpose data for tests."""

    method: Literal["fixed-rows"] = "fixed-rows"


SEEN_EVAL_TEXTS: list[tuple[str, ...]] = []


def fixed_rows_run(ctx: MethodContext, config: FixedRowsConfig) -> dict:
    SEEN_EVAL_TEXTS.append(ctx.eval_texts)
    rows = [{"id": f"f{i}", "instruction": f"Repeat the word number {i}.", "input": "", "output": f"word {i}"} for i in range(3)]
    write_jsonl(ctx.out_dir / layout.DATASET, rows)
    write_jsonl(ctx.out_dir / layout.DROPS, [])
    return {"stages": [stage_row("write", "row", [("kept", None)] * 3)], "pairs": 3}


@pytest.fixture
def registry(monkeypatch):
    methods.discover()
    monkeypatch.setattr(methods, "_registry", dict(methods._registry))


def test_run_scores_general_data_on_user_oriented_instructions(registry, tiny_model_dir, tmp_path):
    register(FixedRowsConfig, run=fixed_rows_run, plan=lambda ctx, config: {"write": Calls.exact(0)}, general=True)
    user_oriented = tmp_path / "user.jsonl"
    write_jsonl(user_oriented, [
        {"id": "u0", "instruction": "Name the colour of the clear daytime sky.", "instances": [{"input": "", "output": "blue"}]},
        {"id": "u1", "instruction": "Fix the grammar.", "instances": [{"input": "she go home", "output": "she goes home"}]},
    ])  # fmt: skip
    task = TaskSpec(
        name="echo",
        instruction="Repeat the input.",
        examples=[Example(input="one", output="one"), Example(input="two", output="two")],
        type="generation",
        eval=[EvalItem(input="three", references=["three"]), EvalItem(input="four", references=["four"])],
    )
    out = tmp_path / "run"
    result = api.run(
        task,
        model=str(tiny_model_dir),
        config=REPO / "configs" / "tiny.yaml",
        out=out,
        overrides=["synth.method=fixed-rows", f"eval.user_oriented.path={user_oriented}", "eval.user_oriented.max_new_tokens=4"],
    )
    assert result.train is not None and result.train.n_train == 3 and result.finetuned["n"] == 2
    assert set(result.user_oriented) == {layout.PROMPTING, layout.FINETUNED} and all(m["n"] == 2 for m in result.user_oriented.values())
    for name in (layout.PROMPTING, layout.FINETUNED):
        assert len(read_jsonl(out / layout.EVAL / layout.USER_ORIENTED / name / layout.PREDICTIONS)) == 2
    # The data was kept from reproducing the task's eval inputs and the user-oriented instructions.
    assert SEEN_EVAL_TEXTS[-1] == ("three", "four", "Name the colour of the clear daytime sky.", "Fix the grammar.", "she go home")
    report = (out / layout.REPORT_MD).read_text()
    assert "User-oriented instructions" in report and "Data written by" in report

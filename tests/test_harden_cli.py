"""Issue 25's reproductions through the real CLI entry point: each bad input is exit 2 and one line
naming the flag, file or field; each valid one works. One table row per refusal, then the cases
that need a run folder, a dataset or the tiny model."""

from __future__ import annotations

import json
import time

import pytest
from tests.cli_workdir import fill, prepare_workdir
from tests.conftest import SUPERNI, run_cli

from selfguide import model_source

TASK = """name: sentiment
instruction: Say whether the review is positive or negative.
examples:
  - {input: "A joy.", output: positive}
  - {input: "A bore.", output: negative}
labels: [positive, negative]
"""
# 9 levels of anchors, 9 aliases each: ~387 million strings once expanded (483 bytes in the issue).
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
FILES = {
    "task.yaml": TASK,
    "bomb_task.yaml": BOMB + "instruction: *i\n",
    "bomb_config.yaml": BOMB + "seed: *i\n",
    "deep_task.json": "[" * 100_000 + "]" * 100_000,
    "deep_task.yaml": "[" * 20_000 + "]" * 20_000,
    "surrogate_task.json": json.dumps({"name": "x\ud800", "instruction": "Say it.", "examples": [{"input": "a", "output": "b"}]}),
    "surrogate_text.json": '{"instruction": "Say \\ud800 it.", "examples": [{"input": "a", "output": "b"}]}',
    "dup_config.yaml": "seed: 1\nseed: 2\n",
    "dup_task.json": '{"instruction": "a", "instruction": "b", "examples": [{"input": "a", "output": "b"}]}',
    "a_file": "not a folder\n",
    "model.gguf": "not really a GGUF\n",
}

CASES = [
    # 1. folder names from user input stay under --out
    ("bench-methods-task-path", ["bench", "methods", "--methods", "few-shot-finetune", "--tasks", "../tasks/task036", "-m", "m", "--dry-run", "-o", "{out}"], ["--tasks", "no path"]),
    ("bench-superni-task-glob", ["bench", "superni", "--tasks", "task03*", "-m", "m", "--dry-run"], ["--tasks", "no path, no pattern"]),
    ("synthesize-empty-out", ["synthesize", "{task.yaml}", "-m", "m", "--out", ""], ["--out", "empty"]),
    ("tiny-model-empty-out", ["tiny-model", ""], ["OUT", "empty"]),
    ("bench-empty-out", ["bench", "superni", "-m", "m", "--out", "", "--dry-run"], ["--out", "empty"]),
    # 2. bounded parsing
    ("alias-bomb-task", ["inspect", "{bomb_task.yaml}"], ["bomb_task.yaml", "aliases expanded"]),
    ("alias-bomb-config", ["config", "--config", "{bomb_config.yaml}"], ["bomb_config.yaml", "aliases expanded"]),
    ("deep-json-task", ["inspect", "{deep_task.json}"], ["deep_task.json", "nesting"]),
    ("deep-yaml-task", ["inspect", "{deep_task.yaml}"], ["deep_task.yaml", "nesting"]),
    ("deep-set-value", ["config", "--set", "seed=" + "[" * 5000 + "]" * 5000], ["--set seed"]),
    # 3. benches refuse what they will not run
    ("bench-task-typo", ["bench", "superni", "--tasks", "tsk190", "-m", "m", "--dry-run"], ["--tasks", "tsk190"]),
    ("bench-task-missing", ["bench", "superni", "--tasks", "task284", "-m", "m", "--dry-run"], ["--tasks", "task284", "no such task"]),
    ("bench-tuning-task-with-setting", ["bench", "superni", "--tasks", "task190", "--setting", "temperature=1.0", "-m", "m", "--dry-run"], ["--tasks", "task190", "tuning task"]),
    ("bench-no-tuning-task", ["bench", "superni", "--tasks", "task1516", "-m", "m", "--dry-run"], ["--tasks", "tuning task", "--setting"]),
    ("bench-tasks-comma", ["bench", "superni", "--tasks", ",", "-m", "m", "--dry-run"], ["--tasks"]),
    ("bench-grid-and-setting", ["bench", "superni", "--grid", "epochs=1", "--setting", "epochs=1", "-m", "m", "--dry-run"], ["--grid", "--setting"]),
    ("bench-baselines-comma", ["bench", "superni", "--baselines", ",", "-m", "m", "--dry-run"], ["--baselines"]),
    ("bench-seeds-empty", ["bench", "superni", "--seeds", "", "-m", "m", "--dry-run"], ["--seeds"]),
    ("bench-setting-repeated", ["bench", "superni", "--setting", "epochs=1,epochs=2", "-m", "m", "--dry-run"], ["--setting", "epochs"]),
    ("bench-setting-inf", ["bench", "superni", "--setting", "temperature=inf", "-m", "m", "--dry-run"], ["--setting", "temperature"]),
    ("bench-max-calls-negative", ["bench", "superni", "--max-calls", "-1", "-m", "m", "--dry-run"], ["--max-calls"]),
    # 5. dataset tasks
    ("hf-no-name", ["inspect", "hf:"], ["hf:", "dataset name"]),
    ("column-flag-on-superni", ["inspect", "task036", "--input-column", "x"], ["--input-column", "dataset task"]),
    ("dataset-type-unknown", ["config", "--set", "dataset.type=regression"], ["--set dataset.type"]),
    # 7. settings between sources
    ("duplicate-config-key", ["config", "--config", "{dup_config.yaml}"], ["dup_config.yaml", "given twice"]),
    ("duplicate-json-key", ["inspect", "{dup_task.json}"], ["dup_task.json", "given twice"]),
    # 9. refused before work
    ("dry-run-missing-model", ["synthesize", "{task.yaml}", "-m", "./no-such-model", "--dry-run"], ["--model", "no-such-model"]),
    ("dry-run-missing-teacher", ["synthesize", "{task.yaml}", "-m", "m", "--teacher", "./no-such-teacher", "--dry-run"], ["--teacher", "no-such-teacher"]),
    # 10. other tracebacks
    ("lone-surrogate", ["inspect", "{surrogate_text.json}"], ["surrogate_text.json", "surrogate"]),
    ("bad-ipv6-base-url", ["synthesize", "{task.yaml}", "-m", "m", "--backend", "openai", "--base-url", "http://[::1/v1"], ["--base-url", "URL"]),
    ("bench-out-is-a-file", ["bench", "superni", "-m", "m", "--tasks", "task1516", "--setting", "epochs=1", "--out", "{a_file}"], ["--out", "a_file"]),
    # 11. the right flag is blamed
    ("setting-nan", ["bench", "superni", "--setting", "temperature=nan", "-m", "m", "--dry-run"], ["--setting", "temperature"]),
    ("user-oriented-limit", ["bench", "methods", "--methods", "alpaca", "--user-oriented-limit", "0", "-m", "m", "--dry-run"], ["--user-oriented-limit"]),
    ("set-into-other-method", ["config", "--config", "configs/cpu.yaml", "--set", "synth.rounds.num_instructions=5"], ["--set synth.rounds.num_instructions"]),
    ("dead-teacher-url", ["synthesize", "{task.yaml}", "-m", "m", "--backend", "openai", "--base-url", "{dead}", "--teacher", "t", "--teacher-backend", "openai", "--teacher-base-url", "{dead}", "--set", "teacher.health_timeout=2"], ["--teacher-base-url"]),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    return prepare_workdir(tmp_path, monkeypatch, FILES)


def one_line_refusal(args: list[str], workdir, capsys, monkeypatch) -> str:
    """Run the CLI; assert exit 2, one `error:` line, no traceback, nothing written in the working
    folder but what was there; return the line."""
    before = {p for p in workdir.rglob("*") if "user-cache" not in p.parts}
    code, _, err = run_cli(args, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    after = {p for p in workdir.rglob("*") if "user-cache" not in p.parts}
    assert after == before, sorted(map(str, after - before))
    return lines[0]


@pytest.mark.parametrize("args, expected", [(args, expected) for _, args, expected in CASES], ids=[case[0] for case in CASES])
def test_refusal_is_one_line_and_exit_2(args, expected, workdir, capsys, monkeypatch):
    started = time.monotonic()
    line = one_line_refusal([fill(a, workdir) for a in args], workdir, capsys, monkeypatch)
    for text in expected:
        assert fill(text, workdir) in line, (text, line)
    if any(word in " ".join(args) for word in ("bomb", "deep", "{dead}")):
        assert time.monotonic() - started < 20  # bounded: no alias expansion, no waiting on a dead server


def test_a_lone_surrogate_in_a_task_name_leaves_no_run_folder(workdir, capsys, monkeypatch, tiny_model_dir):
    line = one_line_refusal(["synthesize", str(workdir / "surrogate_task.json"), "-m", str(tiny_model_dir)], workdir, capsys, monkeypatch)
    assert "surrogate" in line and not (workdir / "runs").exists()


def test_set_before_a_method_switch_is_kept():
    from selfguide.config import load_config

    config = load_config(None, ["synth.rounds.num_instructions=7", "synth.method=self-instruct"])
    assert config.synth.method == "self-instruct" and config.synth.rounds.num_instructions == 7


def test_every_shipped_config_prints_loads_back_and_dry_runs(workdir, capsys, monkeypatch, tiny_model_dir):
    from tests.conftest import REPO

    for path in sorted((REPO / "configs").glob("*.yaml")):
        code, printed, err = run_cli(["config", "--config", str(path)], capsys, monkeypatch)
        assert code == 0, (path.name, err)
        (workdir / "printed.yaml").write_text(printed)
        code, again, err = run_cli(["config", "--config", str(workdir / "printed.yaml")], capsys, monkeypatch)
        assert code == 0 and again == printed, (path.name, err)
        code, out, err = run_cli(["synthesize", "task1622", "--config", str(path), "-m", str(tiny_model_dir), "--dry-run", "-o", str(workdir / "dry")], capsys, monkeypatch)
        assert code == 0 and "model calls:" in out, (path.name, err)
        assert not (workdir / "dry").exists()


def test_bench_takes_any_superni_task_as_held_out_and_a_dry_run_creates_nothing(workdir, capsys, monkeypatch, tiny_model_dir):
    out = workdir / "bench"
    args = ["bench", "superni", "-m", str(tiny_model_dir), "--tasks", "task020", "--setting", "epochs=1", "--limit", "2", "--dry-run", "-o", str(out)]
    code, printed, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    assert "held-out tasks outside the paper's 22: task020" in printed and "training runs:" in printed
    assert not out.exists()


@pytest.mark.skipif(__import__("importlib").util.find_spec("llama_cpp") is not None, reason="llama-cpp-python is installed")
def test_llamacpp_without_the_extra_refuses_before_converting(workdir, capsys, monkeypatch):
    monkeypatch.setattr(model_source, "resolve_model", lambda name: pytest.fail("converted the GGUF before refusing"))
    line = one_line_refusal(["synthesize", str(workdir / "task.yaml"), "--backend", "llamacpp", "-m", str(workdir / "model.gguf")], workdir, capsys, monkeypatch)
    assert "--backend llamacpp needs llama-cpp-python" in line


def test_train_on_a_run_folder_keeps_its_task_under_another_config(workdir, capsys, monkeypatch, tiny_model_dir):
    from selfguide import api
    from selfguide.config import config_yaml, load_config
    from selfguide.errors import SelfGuideError

    run = workdir / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config_yaml(load_config(None, values={"task": str(workdir / "task.yaml"), "model.name": str(tiny_model_dir)})))
    (workdir / "other.yaml").write_text("train:\n  epochs: 2\n")

    def fake_train(config, *args, **kwargs):
        raise SelfGuideError(f"task={config.task} epochs={config.train.epochs:g}")

    monkeypatch.setattr(api, "train", fake_train)
    line = one_line_refusal(["train", str(run), "--config", str(workdir / "other.yaml")], workdir, capsys, monkeypatch)
    assert line == f"error: task={workdir / 'task.yaml'} epochs=2"


def test_ctrl_c_during_train_says_training_stopped(workdir, capsys, monkeypatch, tiny_model_dir):
    from selfguide import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", interrupted)
    (workdir / "data.jsonl").write_text('{"input": "a", "output": "positive"}\n')
    code, _, err = run_cli(["train", str(workdir / "data.jsonl"), "--task", str(workdir / "task.yaml"), "-m", str(tiny_model_dir)], capsys, monkeypatch)
    assert code == 130 and "training stopped" in err and "model calls" not in err


def test_an_unexpected_error_is_one_line_naming_a_log_with_the_traceback(workdir, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("selfguide.cli.build_config", broken)
    code, _, err = run_cli(["config"], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "unexpected ZeroDivisionError" in lines[0]
    log = lines[0].rsplit(" ", 1)[1]
    assert "Traceback" in open(log, encoding="utf-8").read()


def test_tiny_model_on_a_full_disk_is_one_line(workdir, capsys, monkeypatch):
    import selfguide.tinymodel

    def full(*args, **kwargs):
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")

    monkeypatch.setattr(selfguide.tinymodel, "build_tiny_model", full)
    code, _, err = run_cli(["tiny-model", str(workdir / "tm")], capsys, monkeypatch)
    assert code == 2 and "no space left" in err and err.count("\n") == 1


def test_max_new_tokens_beyond_the_models_context_is_refused_before_loading(workdir, capsys, monkeypatch, tiny_model_dir):
    args = ["synthesize", str(workdir / "task.yaml"), "-m", str(tiny_model_dir), "--dry-run", "--set", "synth.outputs.max_new_tokens=1000000"]
    line = one_line_refusal(args, workdir, capsys, monkeypatch)
    assert "synth.outputs.max_new_tokens" in line and "context" in line


def test_backtranslation_checks_its_corpus_first_and_finds_seeds_through_the_environment(workdir, capsys, monkeypatch, tiny_model_dir):
    base = ["synthesize", "--method", "backtranslation", "-m", str(tiny_model_dir), "--dry-run"]
    assert "synth.corpus" in one_line_refusal(base, workdir, capsys, monkeypatch)
    (workdir / "docs.jsonl").write_text('{"text": "A document long enough to be a segment of its own."}\n')
    (workdir / "seeds").mkdir()
    (workdir / "seeds" / "seed_tasks.jsonl").write_text('{"instruction": 5}\n')
    (workdir / "seeds" / "user_oriented_instructions.jsonl").symlink_to(SUPERNI.parent / "self_instruct" / "user_oriented_instructions.jsonl")
    monkeypatch.setenv("SELFGUIDE_SELF_INSTRUCT", str(workdir / "seeds"))
    line = one_line_refusal([*base, "--set", f"synth.corpus.paths=[{workdir / 'docs.jsonl'}]"], workdir, capsys, monkeypatch)
    assert str(workdir / "seeds" / "seed_tasks.jsonl") in line and "line 1" in line

"""Every bad input through the real CLI entry point (`selfguide.cli.main`, what the `selfguide`
script runs): exit code 2, one line on stderr naming the file or flag, the field or line, and what
was expected; never a traceback. One table row per case, over every command and every file it reads."""

from __future__ import annotations

import sys
import time

import pytest
from tests.cli_workdir import fill, prepare_workdir
from tests.conftest import run_cli
from tests.servers import free_port

TASK = """name: sentiment
instruction: Say whether the review is positive or negative.
examples:
  - {input: "A joy.", output: positive}
  - {input: "A bore.", output: negative}
labels: [positive, negative]
"""

FILES = {
    "task.yaml": TASK,
    "bad_yaml_task.yaml": "instruction: [unclosed\n",
    "no_instruction.yaml": "examples:\n  - {input: a, output: b}\n",
    "bad_type.yaml": TASK + "type: regression\n",
    "bad_eval_task.yaml": TASK + "eval: bad_eval.jsonl\n",
    "bad_eval.jsonl": '{"input": "x", "output": "positive"}\n{oops\n',
    "bad_config.yaml": "model:\n  backend: tensorflow\n",
    "list_config.yaml": "- a\n- b\n",
    "good_config.yaml": "eval:\n  limit: 5\n",
    "dataset_ok.jsonl": '{"input": "Great.", "output": "positive"}\n',
    "dataset_bad_json.jsonl": '{"input": "a", "output": "b"}\n{oops\n',
    "dataset_list.jsonl": "[1, 2]\n",
    "dataset_no_output.jsonl": '{"input": "a"}\n',
    "a_file": "not a folder\n",
    "inputs_bad.jsonl": '{"input": "Fine."}\n{oops\n',
    "broken_run/config.yaml": "model: [\n",
    "broken_run/synth/dataset.jsonl": '{"input": "a", "output": "b"}\n',
    "corrupt_run/cache.sqlite": "this is not a database, just text " * 50,
}

# (id, arguments, what stderr must contain). {name} is a file from FILES; {dead} a URL nothing listens on.
CASES = [
    # usage errors from the argument parser
    ("missing-argument", ["inspect"], ["inspect", "task"]),
    ("unknown-option", ["run", "{task.yaml}", "--bogus"], ["--bogus"]),
    ("not-an-integer", ["run", "{task.yaml}", "--seed", "x"], ["--seed", "integer"]),
    ("extra-argument", ["inspect", "{task.yaml}", "extra"], ["extra"]),
    # inspect: task files and flags
    ("inspect-missing-file", ["inspect", "{missing.yaml}"], ["missing.yaml", "no such file"]),
    ("inspect-unknown-superni-task", ["inspect", "task99999"], ["task99999", "SuperNI"]),
    ("inspect-bad-yaml", ["inspect", "{bad_yaml_task.yaml}"], ["bad_yaml_task.yaml", "line", "YAML"]),
    ("inspect-no-instruction", ["inspect", "{no_instruction.yaml}"], ["no_instruction.yaml", "instruction"]),
    ("inspect-bad-type", ["inspect", "{bad_type.yaml}"], ["bad_type.yaml", "type", "classification"]),
    ("inspect-bad-eval-line", ["inspect", "{bad_eval_task.yaml}"], ["bad_eval.jsonl", "line 2", "JSON"]),
    ("inspect-bogus-eval-split", ["inspect", "task036", "--eval-split", "bogus"], ["--eval-split", "bogus", "official"]),
    # config: files and --set
    ("config-unknown-setting", ["config", "--set", "synth.nope=1"], ["synth.nope", "known setting"]),
    ("config-set-bad-yaml", ["config", "--set", "model.name=["], ["--set model.name", "YAML"]),
    ("config-set-no-equals", ["config", "--set", "novalue"], ["--set", "key.path=value"]),
    ("config-set-bad-value", ["config", "--set", "synth.outputs.n=-1"], ["--set synth.outputs.n", "synth.outputs.n"]),
    ("config-set-bad-dtype", ["config", "--set", "model.dtype=fp8"], ["--set model.dtype", "expected auto, native, float32, bfloat16 or float16, got 'fp8'"]),
    ("config-file-bad-field", ["config", "--config", "{bad_config.yaml}"], ["bad_config.yaml", "model.backend"]),
    ("config-file-not-mapping", ["config", "--config", "{list_config.yaml}"], ["list_config.yaml", "mapping"]),
    ("config-file-missing", ["config", "--config", "{missing.yaml}"], ["missing.yaml", "no such file"]),
    # synthesize / run: model, backend, server, run folder, cache
    ("synthesize-no-model", ["synthesize", "{task.yaml}"], ["--model"]),
    ("synthesize-bad-backend", ["synthesize", "{task.yaml}", "-m", "m", "--backend", "tensorflow"], ["--backend", "tensorflow", "llamacpp"]),
    ("synthesize-openai-no-url", ["synthesize", "{task.yaml}", "-m", "m", "--backend", "openai"], ["--base-url"]),
    ("synthesize-dead-server", ["synthesize", "{task.yaml}", "-m", "m", "--backend", "openai", "--base-url", "{dead}", "-o", "{out}"], ["{dead}", "not reachable"]),
    ("synthesize-url-credentials", ["synthesize", "{task.yaml}", "-m", "m", "--backend", "openai", "--base-url", "http://me:s3cr3t@127.0.0.1:9/v1", "-o", "{out}"], ["***@", "model.auth"]),
    ("synthesize-out-is-a-file", ["synthesize", "{task.yaml}", "-m", "m", "--out", "{a_file}"], ["--out", "a_file", "existing file"]),
    ("run-out-not-writable", ["run", "{task.yaml}", "-m", "m", "--out", "/dev/null/run"], ["--out", "/dev/null/run"]),
    ("run-corrupt-cache", ["synthesize", "{task.yaml}", "-m", "m", "--out", "{corrupt_run}"], ["cache.sqlite", "not a usable SQLite", "rerun"]),
    ("run-served-name-not-weights", ["run", "{task.yaml}", "-m", "qwen2.5:1.5b", "--backend", "openai", "--base-url", "{dead}", "-o", "{out}"], ["--model", "qwen2.5:1.5b", "train.model"]),
    ("run-bad-train-model", ["run", "{task.yaml}", "-m", "m", "--set", "train.model=a:b", "-o", "{out}"], ["train.model", "a:b"]),
    ("run-inputs-file-missing", ["run", "{task.yaml}", "-m", "m", "--set", "synth.inputs.file=no_inputs.jsonl", "-o", "{out}"], ["no_inputs.jsonl", "synth.inputs.file", "no such file"]),
    ("run-inputs-file-bad-line", ["run", "{task.yaml}", "-m", "m", "--set", "synth.inputs.file=inputs_bad.jsonl", "-o", "{out}"], ["inputs_bad.jsonl", "line 2", "JSON"]),
    ("run-limit-zero", ["run", "{task.yaml}", "-m", "m", "--limit", "0", "--config", "{good_config.yaml}"], ["--limit", "greater than or equal to 1"]),
    # train: datasets, run folders, flags
    ("train-missing-dataset", ["train", "{missing.jsonl}", "--task", "{task.yaml}", "-m", "m"], ["missing.jsonl", "no such file"]),
    ("train-bad-json-line", ["train", "{dataset_bad_json.jsonl}", "--task", "{task.yaml}", "-m", "m"], ["dataset_bad_json.jsonl", "line 2", "JSON"]),
    ("train-row-not-object", ["train", "{dataset_list.jsonl}", "--task", "{task.yaml}", "-m", "m"], ["dataset_list.jsonl", "line 1", "'input'"]),
    ("train-row-no-output", ["train", "{dataset_no_output.jsonl}", "--task", "{task.yaml}", "-m", "m"], ["dataset_no_output.jsonl", "line 1", "'output'"]),
    ("train-not-utf8", ["train", "{dataset_latin1.jsonl}", "--task", "{task.yaml}", "-m", "m"], ["dataset_latin1.jsonl", "UTF-8"]),
    ("train-broken-run-config", ["train", "{broken_run}", "-m", "m"], ["broken_run", "config.yaml", "YAML"]),
    ("train-epochs-zero", ["train", "{dataset_ok.jsonl}", "--task", "{task.yaml}", "-m", "m", "--epochs", "0"], ["--epochs", "greater than 0"]),
    ("train-epochs-negative", ["train", "{dataset_ok.jsonl}", "--task", "{task.yaml}", "-m", "m", "--epochs", "-2"], ["--epochs", "greater than 0"]),
    ("train-method-typo", ["train", "{dataset_ok.jsonl}", "--task", "{task.yaml}", "-m", "m", "--method", "qlora"], ["--method", "qlora", "'lora', 'full'"]),
    ("train-served-name", ["train", "{dataset_ok.jsonl}", "--task", "{task.yaml}", "-m", "qwen2.5:1.5b"], ["--model", "train.model"]),
    ("train-out-is-a-file", ["train", "{dataset_ok.jsonl}", "--task", "{task.yaml}", "-m", "m", "--out", "{a_file}"], ["--out", "existing file"]),
    # eval
    ("eval-missing-adapter", ["eval", "{task.yaml}", "-m", "m", "--adapter", "{missing_adapter}"], ["--adapter", "adapter_config.json"]),
    ("eval-bogus-eval-split", ["eval", "task036", "-m", "m", "--eval-split", "nope"], ["--eval-split", "nope"]),
    ("eval-limit-zero", ["eval", "{task.yaml}", "-m", "m", "--limit", "0"], ["--limit"]),
    # bench and tiny-model
    ("bench-eval-split", ["bench", "superni", "-m", "m", "--eval-split", "x"], ["--eval-split"]),
    ("bench-grid", ["bench", "superni", "-m", "m", "--grid", "foo=1"], ["--grid", "foo=1"]),
    ("bench-setting", ["bench", "superni", "-m", "m", "--setting", "foo"], ["--setting", "foo"]),
    ("tiny-model-out-is-a-file", ["tiny-model", "{a_file}"], ["OUT", "a_file", "existing file"]),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    prepare_workdir(tmp_path, monkeypatch, FILES)
    (tmp_path / "dataset_latin1.jsonl").write_bytes(b'{"input": "caf\xe9", "output": "x"}\n')
    return tmp_path


@pytest.mark.parametrize("args, expected", [(args, expected) for _, args, expected in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(args, expected, workdir, capsys, monkeypatch):
    started = time.monotonic()
    code, _, err = run_cli([fill(a, workdir) for a in args], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert fill(text, workdir) in lines[0], (text, lines[0])
    assert time.monotonic() - started < 20  # a dead server is found at once, not after minutes of retries


def test_credentials_never_printed(workdir, capsys, monkeypatch):
    args = ["synthesize", "task.yaml", "-m", "m", "--backend", "openai", "--base-url", f"http://me:s3cr3t@127.0.0.1:{free_port()}/v1", "-o", "out"]
    for extra in ([], ["--set", "model.auth=basic"]):
        code, out, err = run_cli(args + extra, capsys, monkeypatch)
        assert code == 2 and "s3cr3t" not in out + err
        assert "s3cr3t" not in (workdir / "out" / "config.yaml").read_text()


def test_console_script_prints_one_line(workdir):
    """The installed `selfguide` script itself, in a fresh process."""
    import subprocess

    result = subprocess.run([sys.executable, "-c", "from selfguide.cli import main; main()", "train", "dataset_bad_json.jsonl", "--task", "task.yaml", "-m", "m"], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "dataset_bad_json.jsonl: line 2: expected one JSON object per line" in result.stderr

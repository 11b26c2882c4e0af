"""The CLI surface: help texts, config printing and loading, shipped recipes, override errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfguide.cli import app
from selfguide.config import RunConfig, load_config
from selfguide.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
COMMANDS = ["inspect", "synthesize", "train", "eval", "run", "tiny-model", "config", "export", "report", "env", "methods"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_lists_commands_and_examples():
    top = runner.invoke(app, ["--help"])
    assert all(command in top.output for command in COMMANDS)
    assert "selfguide synthesize task036" in runner.invoke(app, ["synthesize", "--help"]).output


def test_config_prints_defaults_that_load_back(tmp_path):
    result = runner.invoke(app, ["config", "--set", "synth.inputs.temperature=0.7", "--set", "model.name=m"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["synth"]["inputs"]["temperature"] == 0.7
    assert data["synth"]["outputs"]["n"] == 10 and data["synth"]["outputs"]["min_vote_share"] == 0.3
    (tmp_path / "c.yaml").write_text(result.output)
    assert load_config(tmp_path / "c.yaml") == RunConfig.model_validate(data)


def test_published_defaults():
    config = RunConfig()
    assert (config.synth.inputs.prompts_per_round, config.synth.inputs.top_k, config.synth.inputs.max_new_tokens) == (10, 40, 500)
    assert (config.synth.outputs.n, config.synth.outputs.temperature, config.synth.outputs.top_k) == (10, 0.2, 10)
    assert (config.train.epochs, config.train.batch_size, config.train.max_length) == (3.0, 1, 2000)
    assert config.train.method == "lora" and config.train.resolved(cuda_bf16=False).learning_rate == 2e-4
    assert config.train.model_copy(update={"method": "full"}).resolved(cuda_bf16=False).learning_rate == 5e-5


def test_bad_settings_name_the_field(tmp_path):
    with pytest.raises(BadInputError, match="synth.inputs.temperatur"):
        load_config(None, ["synth.inputs.temperatur=0.7"])
    with pytest.raises(BadInputError, match="synth.outputs.n"):
        load_config(None, ["synth.outputs.n=-1"])
    with pytest.raises(BadInputError, match="key.path=value"):
        load_config(None, ["novalue"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backend: tensorflow\n")
    with pytest.raises(BadInputError) as err:
        load_config(bad)
    assert str(bad) in str(err.value) and "model.backend" in str(err.value)


def test_cli_user_errors_exit_2_without_traceback(tmp_path):
    cases = [
        ["config", "--set", "synth.nope=1"],
        ["synthesize", "task036", "--backend", "openai"],  # no served model name (without --backend, the default model)
        ["synthesize", str(tmp_path / "missing.yaml"), "--model", "m"],
    ]
    for args in cases:
        result = subprocess.run([sys.executable, "-c", "from selfguide.cli import main; main()", *args], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_version_env_and_choices():
    from selfguide import __version__

    assert runner.invoke(app, ["--version"]).output.strip() == f"selfguide {__version__}"
    info = json.loads(runner.invoke(app, ["env", "--json"]).output)
    assert info["versions"]["selfguide"] == __version__ and info["versions"]["torch"] and info["device"] and "hub_cache" in info["caches"]
    wide = {"COLUMNS": "200"}  # the help table cuts long choice lists at 80 columns
    assert "<hf|openai|vllm|llamacpp>" in runner.invoke(app, ["run", "--help"], env=wide).output
    assert "<lora|full>" in runner.invoke(app, ["train", "--help"], env=wide).output
    assert "<official|selfguide-test" in runner.invoke(app, ["eval", "--help"], env=wide).output
    bad = runner.invoke(app, ["run", "task036", "--backend", "tensorflow"])
    assert bad.exit_code == 2 and "tensorflow" in bad.output


def test_config_prints_each_description_as_a_comment(tmp_path):
    result = runner.invoke(app, ["config", "--set", "synth.outputs.n=7"])
    assert "# Seeds every sampling decision and training.\nseed: 0" in result.output
    assert result.output.count("\n  # ") > 20  # nested settings documented too
    (tmp_path / "c.yaml").write_text(result.output)
    assert load_config(tmp_path / "c.yaml").synth.outputs.n == 7

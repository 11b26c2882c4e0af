"""`selfguide bench methods` on the tiny model: task-specific, inference-time and general-purpose
rows side by side, the dry run's count against the calls made, a rerun that redoes nothing, and
the recipe list's errors."""

from __future__ import annotations

import json
import statistics
from typing import Literal

import pytest
from tests.conftest import REPO, SUPERNI, without_seconds
from typer.testing import CliRunner

from selfguide import layout, methods
from selfguide.cli import app
from selfguide.errors import BadInputError
from selfguide.io import write_jsonl
from selfguide.methods import MethodConfig, MethodContext, register
from selfguide.plan import Calls
from selfguide.backends.base import Request, SamplingParams
from selfguide.stages.funnel import stage_row
from selfguide.tasks.load import load_task
from selfguide.tasks.superni import find_superni_task

runner = CliRunner()


class GeneralEchoConfig(MethodConfig):
    """A general-purpose method for tests: one call per row writes its output; rows carry their instruction."""

    method: Literal["general-echo"] = "general-echo"
    rows: int = 4


def general_echo_run(ctx: MethodContext, config: GeneralEchoConfig) -> dict:
    assert ctx.task is None and ctx.eval_texts  # no task; the eval inputs to keep out
    requests = [Request(({"role": "user", "content": f"Say something about {i}."},), SamplingParams(temperature=1.0, max_new_tokens=4, seed=i)) for i in range(config.rows)]
    outputs = [completions[0].text for completions in ctx.writer.generate(requests)]
    rows = [{"id": str(i), "instruction": f"Say something about {i}.", "input": "", "output": text or "x", "provenance": {}} for i, text in enumerate(outputs)]
    write_jsonl(ctx.out_dir / layout.DATASET, rows)
    return {"stages": [stage_row("write", "row", [("kept", None)] * len(rows))], "pairs": len(rows)}


def general_echo_plan(ctx: MethodContext, config: GeneralEchoConfig) -> dict[str, Calls]:
    return {"write": Calls.exact(config.rows)}


@pytest.fixture
def with_general_echo(monkeypatch):
    methods.discover()
    monkeypatch.setattr(methods, "_registry", dict(methods._registry))
    register(GeneralEchoConfig, run=general_echo_run, plan=general_echo_plan, general=True)


def bench(tiny_model_dir, out, *extra: str):
    args = [
        "bench", "methods", "--model", str(tiny_model_dir), "--tasks", "task190,task1562", "--limit", "3",
        "--config", str(REPO / "configs" / "tiny.yaml"), "--set", "synth.inputs.rounds=2", "--set", "synth.outputs.n=3",
        "--user-oriented-limit", "2", "--out", str(out), "--quiet", *extra,
    ]
    return runner.invoke(app, args, env={"SELFGUIDE_SUPERNI": str(SUPERNI)})


def plan_of(output: str) -> tuple[int, int]:
    line = next(line for line in output.splitlines() if line.startswith("model calls:"))
    numbers = [int(word) for word in line.replace("(", " ").split() if word.isdigit()]
    return numbers[0], numbers[-1] if len(numbers) > 1 else numbers[0]


def test_methods_side_by_side(with_general_echo, tiny_model_dir, tmp_path):
    out = tmp_path / "bench"
    filters = tmp_path / "filters.yaml"  # a recipe file: its synth section makes the row
    filters.write_text("synth:\n  method: prompting-with-filters\n  outputs: {n: 2, max_new_tokens: 6}\n")
    rows = ["--methods", "gold-finetune,self-guide,few-shot-finetune", "--methods", f"{filters},general-echo"]
    dry = bench(tiny_model_dir, out, *rows, "--dry-run")
    assert dry.exit_code == 0, dry.output
    low, high = plan_of(dry.output)
    # gold, self-guide and few-shot on each of 2 tasks (self-guide's count is an upper bound before its data exists), general-echo once
    assert "training runs: 7" in dry.output

    result = bench(tiny_model_dir, out, *rows)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    made = summary["model_calls"]["calls"]
    assert low <= made <= high
    exact = bench(tiny_model_dir, out, *rows, "--dry-run")
    assert plan_of(exact.output) == (made, made), exact.output

    assert list(summary["rows"]) == ["gold-finetune", "self-guide", "few-shot-finetune", "filters", "general-echo"]
    # the ceiling trains on as many gold pairs as SELF-GUIDE made on each task, though listed first
    assert summary["rows"]["gold-finetune"]["pairs"] == summary["rows"]["self-guide"]["pairs"]
    general = summary["rows"]["general-echo"]
    # One dataset, one finetuning, that one model evaluated on both tasks and the user-oriented set.
    assert general["general"] and general["pairs"] == {"task190": 4, "task1562": 4}
    assert len(list((out / "general" / "general-echo").rglob("done.json"))) == 1
    assert {p.parent.name for p in (out / "general" / "general-echo" / "eval").glob("*/metrics.json")} == {"task190", "task1562"}
    assert general["user_oriented"]["n"] == 2 and summary["prompting"]["user_oriented"]["n"] == 2
    demos = {t: len(load_task(find_superni_task(t, SUPERNI)).examples) for t in ("task190", "task1562")}
    assert summary["rows"]["few-shot-finetune"]["pairs"] == demos  # each task's gold demos
    assert summary["tasks"]["task190"]["metric"] == "exact_match" and summary["tasks"]["task1562"]["metric"] == "rougeL"

    table = (out / "results.md").read_text()
    assert "| prompting |" in table and "general-echo [general]" in table and "self-guide [per task]" in table and "filters (prompting-with-filters) [per task]" in table
    assert "user-oriented ROUGE-L" in table and "## Data funnel" in table and "| general-echo | general | write (row) | 4 | 4 | - |" in table

    # The gain column is the row's mean over tasks minus prompting's.
    def score(metrics, task):
        return metrics["superni"][summary["tasks"][task]["metric"]]

    few = summary["rows"]["few-shot-finetune"]["metrics"]
    gain = statistics.fmean(score(few[t], t) - score(summary["prompting"]["metrics"][t], t) for t in ("task190", "task1562"))
    few_line = next(line for line in table.splitlines() if line.startswith("| few-shot-finetune"))
    assert f"{gain:+.2f}" in few_line

    again = bench(tiny_model_dir, out, *rows)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["model_calls"]["calls"] == 0


def test_tasks_at_once_match_one_at_a_time(with_general_echo, tiny_model_dir, tmp_path):
    """A task-specific row's tasks two at once, and a general-purpose row's evals: the results of one
    at a time, each eval's call count its own."""
    runs = []
    for parallel in (1, 2):
        out = tmp_path / f"parallel-{parallel}"
        pinned = ["--set", "model.device=cpu", "--set", "model.dtype=float32"]  # batch layout leaves float32 alone
        result = bench(tiny_model_dir, out, "--methods", "few-shot-finetune,general-echo", "--no-user-oriented", "--parallel", str(parallel), *pinned)
        assert result.exit_code == 0, result.output
        runs.append(without_seconds(json.loads((out / "results.json").read_text())))
    assert runs[1] == runs[0]
    rows = {"prompting": runs[1]["prompting"]["metrics"]} | {name: row["metrics"] for name, row in runs[1]["rows"].items()}
    calls = {name: metrics["task190"]["model_calls"]["calls"] for name, metrics in rows.items()}
    assert len(set(calls.values())) == 1, calls  # the same eval on each row, counted apart from task1562's beside it


def test_seeds_give_mean_and_spread(tiny_model_dir, tmp_path):
    result = bench(tiny_model_dir, tmp_path / "b", "--methods", "few-shot-finetune", "--tasks", "task1562", "--seeds", "0,1", "--no-user-oriented")
    assert result.exit_code == 0, result.output
    table = (tmp_path / "b" / "results.md").read_text()
    assert "Seeds 0, 1" in table and " ± " in table and "user-oriented" not in table
    assert (tmp_path / "b" / "seed-1" / "results.md").is_file()


def test_recipes_from_names_and_files(tiny_model_dir, tmp_path):
    recipe = tmp_path / "my-rebase.yaml"
    recipe.write_text("synth:\n  method: rebase\n  rows: 7\n")
    from selfguide.benchmark.methods import parse_recipes
    from selfguide.config import load_config

    base = load_config(REPO / "configs" / "tiny.yaml")
    parsed = parse_recipes(["prompting,self-guide", str(recipe)], base)
    assert [r.name for r in parsed] == ["self-guide", "my-rebase"]  # prompting is always the reference row
    assert parsed[0].synth == base.synth and parsed[1].synth.method == "rebase" and parsed[1].synth.rows == 7
    for bad in (["nonsense"], [str(tmp_path / "missing.yaml")], ["self-guide,self-guide"], ["prompting"]):
        with pytest.raises(BadInputError):
            parse_recipes(bad, base)
    cli = bench(tiny_model_dir, tmp_path / "b", "--methods", "nonsense", "--dry-run")
    assert isinstance(cli.exception, BadInputError) and "--methods" in str(cli.exception)

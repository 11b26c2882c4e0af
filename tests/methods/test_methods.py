"""The methods layer: a method registered here runs through `api.run` untouched by any other file;
SELF-GUIDE through the registry writes what the pipeline wrote before it; the dry run's planned
calls are the calls made; `--method` on the command line; the baselines as methods; rows that
carry their own instruction are trained and exported zero-shot."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import pytest
from tests.conftest import REPO, SUPERNI, TINY_SYNTH, run_cli
from tests.scripted import scripted_model

from selfguide import api, layout, methods
from selfguide.config import RunConfig, config_yaml, load_config
from selfguide.errors import BadInputError
from selfguide.io import read_jsonl, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, get_method, known_methods, register, synthesize
from selfguide.methods.self_guide import SelfGuideConfig
from selfguide.plan import Calls, total
from selfguide.stages.annotate import OutputGenConfig, annotate
from selfguide.stages.funnel import stage_row
from selfguide.tasks.spec import EvalItem, Example, TaskSpec

TINY = [*TINY_SYNTH, "synth.self_label.items=3"]


@pytest.fixture
def registry(monkeypatch):
    """The registry as a copy, so what a test registers is gone after it."""
    methods.discover()
    monkeypatch.setattr(methods, "_registry", dict(methods._registry))


# ---- a method defined here, through api.run ----------------------------------------------


class VariantsConfig(MethodConfig):
    """Each demo input with a numbered suffix, labelled by label scoring: a two-stage method for tests."""

    method: Literal["demo-variants"] = "demo-variants"
    per_demo: int = 2


def variants_run(ctx: MethodContext, config: VariantsConfig) -> dict:
    task = ctx.task
    candidates = [{"id": f"v{i}-{j}", "text": f"{e.input} ({j})"} for i, e in enumerate(task.examples) for j in range(config.per_demo)]
    labelled = annotate(task, candidates, ctx.writer, OutputGenConfig(labeler="score", min_label_prob=0.0), ctx.seed)
    rows = [{"id": a["input_id"], "input": a["input"], "output": a["output"], "provenance": {}} for a in labelled if a["status"] == "kept"]
    write_jsonl(ctx.out_dir / layout.DATASET, rows)
    return {"task": task.name, "type": task.type, "stages": [stage_row("label", "variant", [(a["status"], a["reason"]) for a in labelled])], "pairs": len(rows)}


def variants_plan(ctx: MethodContext, config: VariantsConfig) -> dict[str, Calls]:
    return {"label": Calls.exact(len(ctx.task.examples) * config.per_demo)}


def sentiment_task(folder: Path) -> Path:
    (folder / "eval.jsonl").write_text("".join(json.dumps({"input": f"review {i}", "output": ["good", "bad"][i % 2]}) + "\n" for i in range(4)))
    path = folder / "task.yaml"
    path.write_text(
        "instruction: Is the review good or bad?\nlabels: [good, bad]\neval: eval.jsonl\n"
        "examples:\n  - {input: 'A joy to watch.', output: good}\n  - {input: 'Dull and long.', output: bad}\n"
    )
    return path


@pytest.mark.slow
def test_a_method_registered_in_a_test_runs_through_api_run(registry, tiny_model_dir, tmp_path):
    register(VariantsConfig, run=variants_run, plan=variants_plan)
    task = sentiment_task(tmp_path)
    out = tmp_path / "run"
    planned = api.plan(str(task), model=str(tiny_model_dir), out=out, overrides=["synth.method=demo-variants"])
    result = api.run(str(task), model=str(tiny_model_dir), config=REPO / "configs" / "tiny.yaml", out=out, overrides=["synth.method=demo-variants", "synth.per_demo=3"])
    assert result.method == "demo-variants" and result.synth.summary["method"] == "demo-variants"
    rows = read_jsonl(out / layout.SYNTH / layout.DATASET)
    assert len(rows) == 6 == result.synth.summary["pairs"] and {r["output"] for r in rows} <= {"good", "bad"}
    assert result.synth.summary["model_calls"]["calls"] == 6 and planned == {"label": Calls.exact(4)}  # per_demo 2 by default
    assert result.train is not None and result.train.n_train == 6 and result.finetuned["n"] == 4
    assert "method: demo-variants" in (out / layout.CONFIG).read_text() and "per_demo: 3" in (out / layout.CONFIG).read_text()
    assert (out / layout.REPORT_HTML).is_file() and "demo-variants" in (out / layout.REPORT_MD).read_text()


# ---- SELF-GUIDE through the registry ---------------------------------------------------------

# What the synthesis pipeline wrote before the methods layer (commit 57277b5, synth/pipeline.py)
# for the scripted noisy task of test_filters, 8 rounds, seed 1: the registry path must not change a byte.
BEFORE = {
    layout.INPUTS: "7a0108431d1f096007ac053417922b3c2c68c6ec79ec5cfd33358f8a92cdf2d6",
    layout.ANNOTATIONS: "3397300da10bc75416ec2379a6dfef252a83c6b41001550161b8af6ea2825f2c",
    layout.DATASET: "79eedfdf5d019320c6023c8bd58d191c6d8d5fad4b14deb57c33315fdd3eb0d2",
    layout.DROPS: "3c3880a819dd1475b24e36e88156e1f0152c5a245e394430a04de6a91b4f9cd3",
}


def test_self_guide_through_the_registry_writes_what_the_pipeline_wrote(tmp_path):
    from tests.stages.test_filters import noisy_script, noisy_task

    model, _ = scripted_model(noisy_script, tmp_path / "cache.sqlite")
    config = SelfGuideConfig()
    config.inputs.rounds = 8
    summary = synthesize(get_method("self-guide"), MethodContext(noisy_task(), model, tmp_path / "synth", seed=1), config)
    assert summary["method"] == "self-guide" and summary["pairs"] == 9 and summary["model_calls"]["calls"] == 99
    for name, digest in BEFORE.items():
        assert hashlib.sha256((tmp_path / "synth" / name).read_bytes()).hexdigest() == digest, name


def test_self_guide_on_the_tiny_model_plans_the_calls_it_makes(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """The dry run before synthesis brackets the calls; after it, it is exact. Through the CLI with --method."""
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    out = tmp_path / "t"
    args = ["synthesize", "task190", "--model", str(tiny_model_dir), "--out", str(out), "--method", "self-guide", "-q"] + [a for item in TINY for a in ("--set", item)]
    code, dry, _ = run_cli([*args, "--dry-run"], capsys, monkeypatch)
    assert code == 0 and "inputs: 20 model calls" in dry and "annotate: 0 to 20 model calls" in dry and not out.exists()
    config = load_config(None, TINY, {"task": "task190", "model.name": str(tiny_model_dir), "out": str(out)})
    before = total(api.plan(config))

    code, printed, _ = run_cli(args, capsys, monkeypatch)
    assert code == 0 and "Synthesis summary: task190" in printed
    summary = json.loads((out / layout.SYNTH / layout.SUMMARY).read_text())
    made = summary["model_calls"]["calls"]
    assert before.at_least <= made <= before.at_most
    after = api.plan(config)
    assert total(after) == Calls(made, made, total(after).tokens)
    assert after["annotate"].at_least == summary["stages"][0]["kept"] and after["self-label diagnostic"] == Calls.exact(3)
    code, dry, _ = run_cli([*args, "--dry-run"], capsys, monkeypatch)
    assert f"model calls: {made}\n" in dry


def test_an_unknown_method_is_one_line_and_exit_2(tiny_model_dir, capsys, monkeypatch):
    code, out, err = run_cli(["synthesize", "task036", "--model", str(tiny_model_dir), "--method", "nope"], capsys, monkeypatch)
    assert code == 2 and not out
    assert err.count("\n") == 1 and "--method" in err and "'nope'" in err and "self-guide" in err and "prompting" in err
    with pytest.raises(BadInputError, match="one of .*self-guide"):
        load_config(None, ["synth.method=nope"])


# ---- the config: a union on `method` ----------------------------------------------------------


def test_old_configs_load_as_self_guide_and_the_method_is_written_back():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(path)
        if "method:" not in path.read_text():  # the recipes of other methods name theirs
            assert isinstance(config.synth, SelfGuideConfig) and config.synth.method == "self-guide", path
        assert load_config(None, values=None, base=RunConfig.model_validate(yaml_of(config))) == config
    tiny = load_config(REPO / "configs" / "tiny.yaml")
    assert tiny.synth.inputs.rounds == 3 and "  method: self-guide" in config_yaml(tiny)


def yaml_of(config: RunConfig) -> dict:
    import yaml

    return yaml.safe_load(config_yaml(config))


def test_switching_method_starts_the_synth_section_afresh():
    config = load_config(REPO / "configs" / "tiny.yaml", ["synth.method=few-shot-finetune", "synth.epochs=2"])
    assert config.synth.method == "few-shot-finetune" and config.synth.epochs == 2 and config.train.epochs == 1
    assert load_config(base=config, values={"synth.method": "prompting"}).synth.method == "prompting"
    with pytest.raises(BadInputError, match="synth.inputs"):  # self-guide's settings are not another method's
        load_config(None, ["synth.method=prompting", "synth.inputs.rounds=2"])
    in_context = load_config(REPO / "configs" / "tiny.yaml", ["synth.method=synthetic-in-context", "synth.inputs.rounds=2"])
    assert in_context.synth.inputs.rounds == 2  # it shows SELF-GUIDE's data, so it takes SELF-GUIDE's settings


def test_every_method_describes_itself_and_names_must_match_their_config():
    assert {"self-guide", "prompting", "few-shot-finetune", "gold-finetune", "synthetic-in-context", "prompting-with-filters"} <= set(known_methods())
    assert all(get_method(name).description for name in known_methods())

    class Mismatched(MethodConfig):
        method: Literal["a"] = "b"

    with pytest.raises(TypeError, match="Literal"):
        register(Mismatched, run=lambda ctx, config: {}, plan=lambda ctx, config: {})


# ---- the baselines as methods ----------------------------------------------------------------


def small_task() -> TaskSpec:
    return TaskSpec(
        name="small",
        instruction="Answer.",
        examples=[Example(input="q1", output="a1"), Example(input="q2", output="a2")],
        type="generation",
        eval=[EvalItem(input="e1", references=["r1"])],
        dev=[EvalItem(input=f"d{i}", references=[f"g{i}"], id=f"dev-{i}") for i in range(5)],
    )


def test_data_only_baselines_make_their_data_without_a_model_call(tmp_path):
    model, backend = scripted_model(lambda messages, params, j: "x", tmp_path / "cache.sqlite")
    cases = {
        "few-shot-finetune": ({"q1", "q2"}, {"epochs": 3}, "Data written by the task's gold demos"),
        "gold-finetune": ({"d0", "d1", "d2", "d3", "d4"}, None, "Data written by the task's gold instances"),
        "prompting": (set(), None, None),
    }
    for name, (inputs, train, written_by) in cases.items():
        method = get_method(name)
        ctx = MethodContext(small_task(), model, tmp_path / name, seed=0)
        assert total(method.plan(ctx, method.config())) == Calls(0, 0)
        summary = synthesize(method, ctx, method.config())
        assert {r["input"] for r in read_jsonl(tmp_path / name / layout.DATASET)} == inputs and summary.get("train") == train
        funnel = (tmp_path / name / layout.SUMMARY_MD).read_text()
        assert (written_by in funnel) if written_by else ("Data written by" not in funnel)  # not by the model: no call wrote it
    gold = get_method("gold-finetune")
    synthesize(gold, MethodContext(small_task(), model, tmp_path / "gold2", seed=0), gold.config(pairs=2))
    assert len(read_jsonl(tmp_path / "gold2" / layout.DATASET)) == 2
    assert backend.calls == 0
    assert get_method("prompting").evaluate is not None and get_method("few-shot-finetune").evaluate is None


# ---- rows with their own instruction ----------------------------------------------------------


def test_rows_with_their_own_instruction_train_and_export_zero_shot(tiny_model_dir):
    from transformers import AutoTokenizer

    from selfguide.backends.chat import encode_prompt
    from selfguide.export.rows import alpaca_row, openai_row
    from selfguide.prompts.task import instruction_messages, pair_of, task_messages
    from selfguide.train.sft import build_training_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = small_task()
    general = {"id": "1", "instruction": "List two fruits.", "input": "", "output": "apple, pear", "provenance": {}}
    plain = {"id": "2", "input": "q3", "output": "a3", "provenance": {}}
    assert pair_of(general) == ("", "apple, pear", "List two fruits.") and pair_of(plain) == ("q3", "a3")
    rows, dropped = build_training_rows(task, [pair_of(general), pair_of(plain)], tokenizer, 2000)
    assert dropped == 0
    prompts = [encode_prompt(tokenizer, instruction_messages("List two fruits.")), encode_prompt(tokenizer, task_messages("Answer.", [("q1", "a1"), ("q2", "a2")], "q3"))]
    for row, prompt in zip(rows, prompts):
        assert row["input_ids"][: len(prompt)] == prompt and row["completion_mask"].count(0) == len(prompt)
    assert build_training_rows(None, [pair_of(general)], tokenizer, 2000)[0] == rows[:1]  # no task needed
    assert instruction_messages("Sum.", "1 2") == [{"role": "user", "content": "Sum.\n\n1 2"}]
    assert alpaca_row(task, general) == {"system": "", "history": [], "instruction": "List two fruits.", "input": "", "output": "apple, pear"}
    assert openai_row(task, general)["messages"] == [{"role": "user", "content": "List two fruits."}, {"role": "assistant", "content": "apple, pear"}]
    assert alpaca_row(task, plain)["history"] == [["q1", "a1"], ["q2", "a2"]] and alpaca_row(task, plain)["system"] == "Answer."


def test_a_teacher_writes_and_labels_the_data(tmp_path):
    from tests.stages.test_filters import noisy_script, noisy_task

    student, student_backend = scripted_model(noisy_script, tmp_path / "cache.sqlite", name="student")
    teacher, teacher_backend = scripted_model(noisy_script, tmp_path / "cache.sqlite", name="teacher")
    config = SelfGuideConfig()
    config.inputs.rounds = 2
    summary = synthesize(get_method("self-guide"), MethodContext(noisy_task(), student, tmp_path / "synth", seed=1, teacher=teacher), config)
    assert student_backend.calls == 0 and teacher_backend.calls == summary["model_calls"]["calls"] > 20

"""The self-instruct method end to end: on a scripted model whose every answer is known (accounting
adds up, classification routes instances output-first, the dry run equals the calls made) and on
the tiny model through the real backend (kill and resume gives identical data)."""

from __future__ import annotations

import json
import random
import re

from tests.methods.resume import kill_and_resume
from tests.scripted import scripted_model
from selfguide import layout
from selfguide.io import read_jsonl
from selfguide.methods import MethodContext, get_method, synthesize
from selfguide.methods.self_instruct import SelfInstructConfig
from selfguide.plan import total
from selfguide.prompts.self_instruct import CLASSIFICATION_REQUEST, CLASSIFY_QUESTION, LIST_REQUEST


def words(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(10**9)}" for _ in range(n))


def script(messages, params, j):
    """Each bootstrap prompt: a generation task, a classification task, a blacklisted one and a copy
    of the first; classification is told by the instruction's first word; instances: one good and
    one echo (generation), two labels (classification)."""
    request = messages[0]["content"]
    rng = random.Random(params.seed)
    if request == LIST_REQUEST:
        first = f"Explain {words(rng, 6)}"
        return f" {first}\n10. Classify {words(rng, 5)} as yes or no.\n11. Plot {words(rng, 5)}\n12. {first}"
    task = re.findall(r"Task: (.*)", messages[-1]["content"])[-1]
    if request == CLASSIFY_QUESTION:
        return " Yes" if task.startswith("Classify") else " No"
    if request == CLASSIFICATION_REQUEST:
        return f" yes\nInput: first {task}\nClass label: no\nInput: second {task}"
    return f"Example 1\nInput: in {task}\nOutput: out {task}\nExample 2\nInput: echo\nOutput: echo"


def config(**rounds) -> SelfInstructConfig:
    return SelfInstructConfig(rounds={"num_instructions": 6, "prompts_per_round": 2, **rounds})


def run_scripted(tmp_path, cfg: SelfInstructConfig, name: str = "run", max_calls: int | None = None):
    model, backend = scripted_model(script, tmp_path / "cache.sqlite")
    model.max_calls = max_calls
    ctx = MethodContext(task=None, model=model, out_dir=tmp_path / name / layout.SYNTH, seed=0, progress=False)
    method = get_method("self-instruct")
    return ctx, method, backend, synthesize(method, ctx, cfg)


def test_accounting_adds_up(tmp_path):
    ctx, _, backend, summary = run_scripted(tmp_path, config())
    out = ctx.out_dir
    candidates = read_jsonl(out / layout.INSTRUCTIONS)
    kept = [c for c in candidates if c["status"] == "kept"]
    # Each prompt gives two new instructions: 6 need 3 prompts, so two rounds of 2.
    assert len(kept) == summary["instructions"] == 6 and backend.calls == 4 + 6 + 6
    bootstrap, instance_filter, per_instruction = summary["stages"]
    assert bootstrap["total"] == len(candidates) == 4 * 4 and bootstrap["kept"] == 6
    assert bootstrap["dropped"] == {"blacklisted_word": 4, "near_duplicate": 2, "over_count": 4}

    classifications = read_jsonl(out / layout.CLASSIFICATIONS)
    assert [c["is_classification"] for c in classifications] == [c["instruction"].startswith("Classify") for c in kept]
    assert summary["classification"] == {"generation": 3, "classification": 3, "unclear_answers": 0}

    instances = read_jsonl(out / layout.INSTANCES)
    assert instance_filter["total"] == len(instances) == 12 and instance_filter["dropped"] == {"output_equals_input": 3}
    assert per_instruction == {"stage": "instances", "unit": "instruction", "total": 6, "kept": 6, "dropped": {}}
    dataset = read_jsonl(out / layout.DATASET)
    assert summary["pairs"] == len(dataset) == 9
    for row in dataset:
        assert set(row) == {"id", "instruction", "input", "output", "provenance"}
        if row["provenance"]["is_classification"]:  # output-first: the label is the output
            assert row["output"] in {"yes", "no"} and row["input"].endswith(row["instruction"])
        else:
            assert row["output"] == f"out {row['instruction']}"
    drops = read_jsonl(out / layout.DROPS)
    assert len(drops) == sum(stage["total"] - stage["kept"] for stage in summary["stages"][:2])
    assert json.loads((out / layout.SUMMARY).read_text())["model_calls"]["calls"] == backend.calls
    assert summary["models"] == {"wrote": "scripted", "labelled": "scripted", "trained": "scripted"}


def test_dry_run_plans_the_calls_made(tmp_path):
    """Three prompts fill the pool in one round: the plan's upper bound is what is spent, and once
    the instructions are on disk the plan is exact."""
    cfg = config(num_instructions=6, prompts_per_round=3, max_rounds=1)
    model, _ = scripted_model(script, tmp_path / "plan.sqlite")
    ctx = MethodContext(task=None, model=model, out_dir=tmp_path / "run" / layout.SYNTH, seed=0, progress=False)
    planned = total(get_method("self-instruct").plan(ctx, cfg))
    _, method, backend, _ = run_scripted(tmp_path, cfg)
    assert planned.at_least <= backend.calls == planned.at_most == 3 + 6 + 6
    after = method.plan(ctx, cfg)
    assert {stage: (c.at_least, c.at_most) for stage, c in after.items()} == {"bootstrap": (3, 3), "classify": (6, 6), "instances": (6, 6)}


def test_filters_configurable(tmp_path):
    """Plotting allowed and the novelty threshold off: every parsed instruction is a candidate kept."""
    cfg = config(num_instructions=100, max_rounds=1)
    cfg.instruction_filters.blacklist = []
    cfg.near_dup.enabled = False
    _, _, _, summary = run_scripted(tmp_path, cfg)
    assert summary["stages"][0]["dropped"] == {} and summary["instructions"] == 8


def tiny_config() -> SelfInstructConfig:
    return SelfInstructConfig(
        rounds={"num_instructions": 4, "prompts_per_round": 2, "max_rounds": 2},
        prompt={"max_new_tokens": 24},
        classify={"demos": 4},
        instances={"demos": 2, "max_new_tokens": 24},
    )


def test_kill_and_resume_gives_identical_data(tmp_path, tiny_model_dir):
    """The tiny model through the real backend: a run stopped by a call budget part way, then
    resumed, writes the same files as a run never stopped."""
    files = [layout.INSTRUCTIONS, layout.CLASSIFICATIONS, layout.INSTANCES, layout.DATASET, layout.DROPS]
    kill_and_resume(tmp_path, tiny_model_dir, "self-instruct", tiny_config(), seed=3, files=files)

"""The alpaca method end to end: one call per list of whole tasks, every candidate accounted for,
the dry run equal to the calls made, and kill-and-resume on the tiny model."""

from __future__ import annotations

import random

from tests.methods.resume import kill_and_resume
from tests.scripted import scripted_model
from selfguide import layout
from selfguide.io import read_jsonl
from selfguide.methods import MethodContext, get_method, synthesize
from selfguide.methods.alpaca import AlpacaConfig
from selfguide.plan import Calls, total
from selfguide.tasks.self_instruct import load_seed_tasks

SEEDS = load_seed_tasks()


def words(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(10**9)}" for _ in range(n))


def script(messages, params, j):
    """Items 4-9 of each list: good, blacklisted, echo, good, malformed, a copy of a seed task."""
    assert messages[0]["content"].startswith("Write a list of 20 diverse tasks")
    assert messages[-1]["content"].endswith("###\n4. Instruction:") and messages[-1]["content"].count("Instruction:") == 4
    rng = random.Random(params.seed)
    return (
        f" Explain {words(rng, 5)}.\n4. Input:\n<noinput>\n4. Output:\nAnswer {words(rng, 3)}.\n"
        f"###\n5. Instruction: Draw a map of {words(rng, 4)}\n5. Input:\n<noinput>\n5. Output:\nA map.\n"
        f"###\n6. Instruction: Repeat the words {words(rng, 4)}\n6. Input:\nsame text\n6. Output:\nsame text\n"
        f"###\n7. Instruction: Summarize {words(rng, 5)}\n7. Input:\nA long text {words(rng, 8)}\n7. Output:\nShort.\n"
        f"###\n8. Instruction: Missing its other fields\n"
        f"###\n9. Instruction: {SEEDS[0].instruction}\n9. Input:\n<noinput>\n9. Output:\nYes.\n###\n"
    )


def run_scripted(tmp_path, cfg: AlpacaConfig, name: str = "run"):
    model, backend = scripted_model(script, tmp_path / "cache.sqlite")
    ctx = MethodContext(task=None, model=model, out_dir=tmp_path / name / layout.SYNTH, seed=0, progress=False)
    return ctx, backend, synthesize(get_method("alpaca"), ctx, cfg)


def test_accounting_adds_up(tmp_path):
    ctx, backend, summary = run_scripted(tmp_path, AlpacaConfig(rounds={"num_instructions": 6, "prompts_per_round": 2}))
    candidates = read_jsonl(ctx.out_dir / layout.INSTRUCTIONS)
    [stage] = summary["stages"]
    assert backend.calls == 4 and stage["total"] == len(candidates) == 4 * 6 and stage["kept"] == 6
    assert stage["dropped"] == {"blacklisted_word": 4, "malformed": 4, "near_duplicate": 2, "output_equals_input": 4, "over_count": 4}
    dataset = read_jsonl(ctx.out_dir / layout.DATASET)
    assert summary["pairs"] == len(dataset) == 6
    assert [row["instruction"].split()[0] for row in dataset] == ["Explain", "Summarize"] * 3
    assert all(row["input"] == "" for row in dataset if row["instruction"].startswith("Explain"))
    assert all(set(row) == {"id", "instruction", "input", "output", "provenance"} for row in dataset)
    assert len(read_jsonl(ctx.out_dir / layout.DROPS)) == stage["total"] - stage["kept"]
    assert summary["model_calls"]["calls"] == 4


def test_dry_run_plans_the_calls_made(tmp_path):
    cfg = AlpacaConfig(rounds={"num_instructions": 6, "prompts_per_round": 3, "max_rounds": 1})
    model, _ = scripted_model(script, tmp_path / "plan.sqlite")
    ctx = MethodContext(task=None, model=model, out_dir=tmp_path / "run" / layout.SYNTH, seed=0, progress=False)
    planned = total(get_method("alpaca").plan(ctx, cfg))
    _, backend, summary = run_scripted(tmp_path, cfg)
    assert planned.at_least == planned.at_most == backend.calls == 3 and summary["pairs"] == 6
    # Two rounds allowed, one needed: a range before, exact once the candidates are on disk.
    wider = AlpacaConfig(rounds={"num_instructions": 6, "prompts_per_round": 3, "max_rounds": 2})
    assert get_method("alpaca").plan(MethodContext(task=None, model=model, out_dir=tmp_path / "none", progress=False), wider)["generate"].at_most == 6
    assert get_method("alpaca").plan(ctx, wider)["generate"] == Calls(3, 3, 3 * wider.prompt.max_new_tokens)


def test_kill_and_resume_gives_identical_data(tmp_path, tiny_model_dir):
    cfg = AlpacaConfig(rounds={"num_instructions": 50, "prompts_per_round": 2, "max_rounds": 2}, prompt={"max_new_tokens": 32})

    whole, resumed = kill_and_resume(tmp_path, tiny_model_dir, "alpaca", cfg, seed=1, files=[layout.INSTRUCTIONS, layout.DATASET, layout.DROPS])
    assert whole["stages"][0]["total"] >= 4 and resumed["model_calls"]["calls"] == 1

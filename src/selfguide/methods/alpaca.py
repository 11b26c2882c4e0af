"""Alpaca (Taori et al. 2023): one call writes up to 20 whole tasks (instruction, input, output) after 3 seed tasks.

Self-Instruct simplified: the seed tasks are sampled from the 175, and there is no classification
step and no separate instance step. Alpaca had text-davinci-003 teach LLaMA: give a `teacher`.

    write task lists (rounds of prompts) -> output checks, heuristic instruction filters,
        ROUGE-L novelty (< 0.7 with every pooled instruction), eval overlap, stop at the count
                                         -> dataset.jsonl

Files in `<run>/synth/`:
  instructions.jsonl  every candidate task, kept or dropped with its reason (written per round)
  dataset.jsonl       {id, instruction, input, output, provenance}
  drops.jsonl         every drop, with its reason
  summary.json/.md    the funnel, the models and the calls
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from selfguide import layout
from selfguide.io import append_jsonl, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, register
from selfguide.plan import Calls
from selfguide.prompts.alpaca import parse_alpaca
from selfguide.stages.bootstrap import RoundsConfig, bootstrap, finished_on_disk
from selfguide.stages.funnel import stage_row
from selfguide.stages.instruction_filters import InstanceFilterConfig, InstructionFilter, InstructionFilterConfig, check_instance
from selfguide.stages.near_dup import NearDupConfig, NearDupFilter
from selfguide.stages.write_tasks import WriteTasksConfig, task_list_requests
from selfguide.tasks.self_instruct import load_seed_tasks


class AlpacaConfig(MethodConfig):
    method: Literal["alpaca"] = "alpaca"
    seed_tasks: str | None = Field(None, description="The seed tasks JSONL (or its folder); unset: $SELFGUIDE_SELF_INSTRUCT or ../shared/self_instruct.")
    rounds: RoundsConfig = Field(default_factory=RoundsConfig)
    prompt: WriteTasksConfig = Field(default_factory=WriteTasksConfig)
    instruction_filters: InstructionFilterConfig = Field(default_factory=InstructionFilterConfig)
    near_dup: NearDupConfig = Field(
        default_factory=NearDupConfig, description="ROUGE-L novelty against every pooled instruction, seed ones included (< 0.7 enters), and eval overlap."
    )
    check_outputs: bool = Field(
        True, description="Drop tasks whose output is empty, repeats the input or ends with ':' (Self-Instruct's instance rules; Alpaca's generator had none)."
    )


def run(ctx: MethodContext, config: AlpacaConfig) -> dict:
    seeds = load_seed_tasks(config.seed_tasks)
    instructions_path = ctx.out_dir / layout.INSTRUCTIONS
    dataset_path = ctx.out_dir / layout.DATASET
    write_jsonl(instructions_path, [])
    write_jsonl(dataset_path, [])

    def on_round(rows: list[dict]) -> None:
        append_jsonl(instructions_path, rows)
        append_jsonl(dataset_path, [dataset_row(row) for row in rows if row["status"] == "kept"])

    pair_rules = InstanceFilterConfig()
    candidates = bootstrap(
        ctx.writer,
        config.rounds,
        lambda r, _machine: task_list_requests(config.prompt, seeds, r, config.rounds.prompts_per_round, ctx.seed),
        lambda text: parse_alpaca(text, config.prompt.seed_demos + 1),
        InstructionFilter(config.instruction_filters),
        NearDupFilter(config.near_dup, ctx.eval_texts, accepted=[t.instruction for t in seeds]),
        check=(lambda c: check_instance(c["input"], c["output"], pair_rules)) if config.check_outputs else None,
        on_round=on_round,
        desc="writing tasks",
    )
    dataset = [dataset_row(c) for c in candidates if c["status"] == "kept"]
    drops = [{"kind": "task", "stage": "generate", "id": c["id"], "reason": c["reason"], "detail": c["detail"], "text": c["instruction"]} for c in candidates if c["status"] == "dropped"]
    write_jsonl(ctx.out_dir / layout.DROPS, drops)
    return {
        "type": "general",
        "stages": [stage_row("generate", "candidate task", [(c["status"], c["reason"]) for c in candidates])],
        "instructions": len(dataset),
        "pairs": len(dataset),
    }


def plan(ctx: MethodContext, config: AlpacaConfig) -> dict[str, Calls]:
    """One call per prompt: the first round at least, every round at most; exact once
    instructions.jsonl holds a finished run."""
    rounds = config.rounds
    done = finished_on_disk(ctx.out_dir / layout.INSTRUCTIONS, rounds)
    least, most = (done[0] * rounds.prompts_per_round,) * 2 if done else (rounds.prompts_per_round, rounds.planned_calls())
    return {"generate": Calls(least, most, most * config.prompt.max_new_tokens)}


register(AlpacaConfig, run=run, plan=plan, general=True, title="Alpaca", paper="[Alpaca](https://crfm.stanford.edu/2023/03/13/alpaca.html) (Taori et al., 2023)")


def dataset_row(candidate: dict) -> dict:
    return {
        "id": candidate["id"],
        "instruction": candidate["instruction"],
        "input": candidate["input"],
        "output": candidate["output"],
        "provenance": {"round": candidate["round"], "slot": candidate["slot"], "position": candidate["position"]},
    }

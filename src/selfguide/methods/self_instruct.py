"""Self-Instruct (Wang et al. 2022): general instructions and their instances, bootstrapped from 175 seed tasks.

The model grows a general instruction-tuning dataset from the human-written seed tasks; with a
teacher, the teacher writes it all (distillation) and the model is trained on it.

    bootstrap instructions (rounds of 6 seed + 2 pooled instructions) -> heuristic filters,
        ROUGE-L novelty (< 0.7 with every pooled instruction), eval overlap, stop at the count
    identify classification tasks (few-shot Yes/No)
    write instances: input-first (generation), output-first (classification)
        -> instance filters                                               -> dataset.jsonl

Files in `<run>/synth/`:
  instructions.jsonl     every candidate instruction, kept or dropped with its reason (per round)
  classifications.jsonl  each kept instruction's Yes/No answer
  instances.jsonl        every candidate instance, kept or dropped with its reason
  dataset.jsonl          {id, instruction, input, output, provenance}
  drops.jsonl            every drop, with its stage and reason
  summary.json/.md       the funnel, the classification split, the models and the calls
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import Field

from selfguide import layout
from selfguide.io import append_jsonl, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, register
from selfguide.plan import Calls
from selfguide.prompts.self_instruct import parse_numbered
from selfguide.stages.bootstrap import RoundsConfig, bootstrap, finished_on_disk
from selfguide.stages.classify_task import ClassifyConfig, classification_demos, classify_instructions
from selfguide.stages.funnel import stage_row
from selfguide.stages.instruction_filters import InstanceFilterConfig, InstructionFilter, InstructionFilterConfig, filter_instances
from selfguide.stages.near_dup import NearDupConfig, NearDupFilter
from selfguide.stages.write_instances import InstanceGenConfig, write_instances
from selfguide.stages.write_instructions import WriteInstructionsConfig, instruction_requests
from selfguide.tasks.self_instruct import load_seed_tasks

CHUNK = 64  # instructions classified and given instances per step; each step's rows are written at once


class SelfInstructConfig(MethodConfig):
    method: Literal["self-instruct"] = "self-instruct"
    seed_tasks: str | None = Field(None, description="The seed tasks JSONL (or its folder); unset: $SELFGUIDE_SELF_INSTRUCT or ../shared/self_instruct.")
    rounds: RoundsConfig = Field(default_factory=RoundsConfig)
    prompt: WriteInstructionsConfig = Field(default_factory=WriteInstructionsConfig)
    instruction_filters: InstructionFilterConfig = Field(default_factory=InstructionFilterConfig)
    near_dup: NearDupConfig = Field(
        default_factory=NearDupConfig, description="ROUGE-L novelty against every pooled instruction, seed ones included (< 0.7 enters), and eval overlap."
    )
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    instances: InstanceGenConfig = Field(default_factory=InstanceGenConfig)
    instance_filters: InstanceFilterConfig = Field(default_factory=InstanceFilterConfig)


def run(ctx: MethodContext, config: SelfInstructConfig) -> dict:
    """Every stage in order; each writes its rows as it finishes. Returns the funnel summary."""
    seeds, writer = load_seed_tasks(config.seed_tasks), ctx.writer
    seed_instructions = [t.instruction for t in seeds]
    paths = {name: ctx.out_dir / name for name in (layout.INSTRUCTIONS, layout.CLASSIFICATIONS, layout.INSTANCES, layout.DATASET)}
    for path in paths.values():
        write_jsonl(path, [])

    novelty = NearDupFilter(config.near_dup, ctx.eval_texts, accepted=seed_instructions)
    candidates = bootstrap(
        writer,
        config.rounds,
        lambda r, machine: instruction_requests(config.prompt, seed_instructions, machine, r, config.rounds.prompts_per_round, ctx.seed),
        parse_numbered,
        InstructionFilter(config.instruction_filters),
        novelty,
        on_round=lambda rows: append_jsonl(paths[layout.INSTRUCTIONS], rows),
    )
    kept = [c for c in candidates if c["status"] == "kept"]

    demos = classification_demos(seeds, config.classify.demos, ctx.seed)
    classifications, instances, dataset = [], [], []
    for start in range(0, len(kept), CHUNK):
        chunk = kept[start : start + CHUNK]
        labels = classify_instructions(writer, [c["instruction"] for c in chunk], demos, config.classify)
        for candidate, label in zip(chunk, labels):
            label["instruction_id"] = candidate["id"]
        written = write_instances(writer, [(c["instruction"], label["is_classification"]) for c, label in zip(chunk, labels)], seeds, config.instances, ctx.seed)
        rows = [row for candidate, record in zip(chunk, written) for row in instance_rows(candidate, record, config.instance_filters)]
        new_pairs = [dataset_row(row) for row in rows if row["status"] == "kept"]
        append_jsonl(paths[layout.CLASSIFICATIONS], labels)
        append_jsonl(paths[layout.INSTANCES], rows)
        append_jsonl(paths[layout.DATASET], new_pairs)
        classifications += labels
        instances += rows
        dataset += new_pairs

    write_jsonl(ctx.out_dir / layout.DROPS, drop_rows(candidates, instances))
    return summarize(candidates, classifications, instances, dataset)


def plan(ctx: MethodContext, config: SelfInstructConfig) -> dict[str, Calls]:
    """Bootstrapping: one round at least, every round at most; then one classification call and one
    instance call per kept instruction. Exact once instructions.jsonl holds a finished bootstrap."""
    rounds = config.rounds
    done = finished_on_disk(ctx.out_dir / layout.INSTRUCTIONS, rounds)
    if done is not None:
        ran, kept = done
        bootstrap_calls = Calls.exact(ran * rounds.prompts_per_round)
        least = most = kept
    else:
        bootstrap_calls = Calls(rounds.prompts_per_round, rounds.planned_calls())
        least, most = 0, rounds.num_instructions
    return {
        "bootstrap": Calls(bootstrap_calls.at_least, bootstrap_calls.at_most, bootstrap_calls.at_most * config.prompt.max_new_tokens),
        "classify": Calls(least, most, most * config.classify.max_new_tokens),
        "instances": Calls(least, most, most * config.instances.max_new_tokens),
    }


register(SelfInstructConfig, run=run, plan=plan, general=True, title="Self-Instruct", paper="[Self-Instruct](https://arxiv.org/abs/2212.10560) (Wang et al., ACL 2023)")


# ---- helpers ---------------------------------------------------------------------------------


def instance_rows(candidate: dict, record: dict, config: InstanceFilterConfig) -> list[dict]:
    """One row per parsed instance, kept or dropped; an instruction with none parsed gets one
    `unparsed` row, so it too is accounted for."""
    base = {"instruction_id": candidate["id"], "instruction": candidate["instruction"], "is_classification": record["is_classification"]}
    if not record["instances"]:
        return [{"id": f"{candidate['id']}i00", **base, "input": None, "output": None, "raw": record["raw"], "status": "dropped", "reason": "unparsed", "detail": None}]
    rows = []
    for k, (instance, drop) in enumerate(zip(record["instances"], filter_instances(record["instances"], config))):
        rows.append(
            {
                "id": f"{candidate['id']}i{k:02d}",
                **base,
                "input": instance["input"],
                "output": instance["output"],
                "status": "kept" if drop is None else "dropped",
                "reason": None if drop is None else drop.reason,
                "detail": None if drop is None else drop.detail,
            }
        )
    return rows


def dataset_row(row: dict) -> dict:
    return {
        "id": row["id"],
        "instruction": row["instruction"],
        "input": row["input"],
        "output": row["output"],
        "provenance": {"instruction_id": row["instruction_id"], "is_classification": row["is_classification"]},
    }


def drop_rows(candidates: list[dict], instances: list[dict]) -> list[dict]:
    rows = [
        {"kind": "instruction", "stage": "bootstrap", "id": c["id"], "reason": c["reason"], "detail": c["detail"], "text": c["instruction"]}
        for c in candidates
        if c["status"] == "dropped"
    ]
    rows += [
        {"kind": "instance", "stage": "instance_filter", "id": r["id"], "reason": r["reason"], "detail": r["detail"], "text": r["output"]}
        for r in instances
        if r["status"] == "dropped"
    ]
    return rows


def summarize(candidates: list[dict], classifications: list[dict], instances: list[dict], dataset: list[dict]) -> dict:
    by_instruction: dict[str, list[dict]] = {}
    for row in instances:
        by_instruction.setdefault(row["instruction_id"], []).append(row)
    with_data = [("kept", None) if any(r["status"] == "kept" for r in rows) else ("dropped", "no_instances") for rows in by_instruction.values()]
    kinds = Counter("classification" if c["is_classification"] else "generation" for c in classifications)
    return {
        "type": "general",
        "stages": [
            stage_row("bootstrap", "candidate instruction", [(c["status"], c["reason"]) for c in candidates]),
            stage_row("instance_filter", "candidate instance", [(r["status"], r["reason"]) for r in instances]),
            stage_row("instances", "instruction", with_data),
        ],
        "instructions": sum(c["status"] == "kept" for c in candidates),
        "classification": {**kinds, "unclear_answers": sum(not c["parsed"] for c in classifications)},
        "pairs": len(dataset),
    }


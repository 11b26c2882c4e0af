"""Bootstrapping a pool of new instructions in rounds (Self-Instruct §2.1; Alpaca's generator too).

Each round sends a few prompts at once; each completion is parsed into candidate instructions (with
an input and output where the method writes them together). A candidate passes its method's own
checks, the heuristic instruction filters, then the ROUGE-L novelty check against every pooled
instruction (the seed ones included); kept ones join the pool that later rounds' prompts show.
Prompting stops once the pool holds the requested count: later candidates of that round are
dropped as `over_count`. Every candidate is returned kept or dropped with its reason, and each
round's records are handed to `on_round` (written at once), so a killed run keeps finished rounds
and a rerun rebuilds the same prompts from the call cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Completion, Request
from selfguide.backends.cache import CachedModel
from selfguide.io import read_jsonl
from selfguide.progress import bar as progress_bar
from selfguide.stages.instruction_filters import InstructionFilter, clean_instruction
from selfguide.stages.near_dup import NearDupFilter
from selfguide.stages.filters import Drop


class RoundsConfig(BaseModel):
    """How many prompts bootstrapping sends."""

    model_config = ConfigDict(extra="forbid")

    num_instructions: int = Field(100, ge=1, description="New instructions to collect (the released code's default; the papers made 52k).")
    prompts_per_round: int = Field(5, ge=1, description="Prompts sent together; their instructions join the pool after the round (the released request batch).")
    max_rounds: int | None = Field(
        None, ge=1, description="Give up after this many rounds even short of the count; unset: one prompt per requested instruction."
    )

    def rounds(self) -> int:
        return self.max_rounds if self.max_rounds is not None else math.ceil(self.num_instructions / self.prompts_per_round)

    def planned_calls(self) -> int:
        """At most this many calls (fewer when the count is reached early)."""
        return self.rounds() * self.prompts_per_round


# A parser: completion text -> candidates {"instruction": str, ...method fields (input, output)},
# with "rejected": (reason, detail) on one it rejects itself (see `selfguide.prompts.self_instruct`).
Parse = Callable[[str], list[dict]]
MakeRequests = Callable[[int, list[str]], list[Request]]  # (round, machine instructions so far) -> requests


def bootstrap(
    model: CachedModel,
    rounds: RoundsConfig,
    make_requests: MakeRequests,
    parse: Parse,
    instruction_filter: InstructionFilter,
    novelty: NearDupFilter,
    *,
    check: Callable[[dict], Drop | None] | None = None,
    on_round: Callable[[list[dict]], None] | None = None,
    desc: str = "writing instructions",
) -> list[dict]:
    """Run rounds until the pool holds `num_instructions` new instructions or rounds run out; return
    every candidate as {"id", "round", "slot", "position", "instruction", ..., "status", "reason", "detail"}."""
    pool: list[str] = []  # kept machine instructions, in order
    records: list[dict] = []
    bar = progress_bar(desc, total=rounds.num_instructions, unit="instruction", disable=not model.progress)
    for round_index in range(rounds.rounds()):
        if len(pool) >= rounds.num_instructions:
            break
        completions = model.generate(make_requests(round_index, list(pool)), desc=desc, progress=False)
        round_records = []
        for slot, [completion] in enumerate(completions):
            for position, candidate in enumerate(parse_completion(completion, parse)):
                candidate = {**candidate, "instruction": clean_instruction(candidate["instruction"])}
                drop = candidate.pop("drop", None) or (check(candidate) if check else None)
                drop = drop or instruction_filter.check(candidate["instruction"])
                if drop is None and len(pool) >= rounds.num_instructions:
                    drop = Drop("over_count", f"the pool already holds {rounds.num_instructions}")
                drop = drop or novelty.check(candidate["instruction"])
                if drop is None:
                    novelty.accept(candidate["instruction"])
                    pool.append(candidate["instruction"])
                    bar.update(1)
                round_records.append(
                    {
                        "id": f"r{round_index:04d}s{slot:02d}p{position:02d}",
                        "round": round_index,
                        "slot": slot,
                        "position": position,
                        **candidate,
                        "finish_reason": completion.finish_reason,
                        "status": "kept" if drop is None else "dropped",
                        "reason": None if drop is None else drop.reason,
                        "detail": None if drop is None else drop.detail,
                    }
                )
        records.extend(round_records)
        if on_round:
            on_round(round_records)
    bar.close()
    return records


def parse_completion(completion: Completion, parse: Parse) -> list[dict]:
    """The parser's pieces, each with "drop" where it already has one: a piece the parser rejected,
    and the last piece of a completion cut off by the token limit (half-written)."""
    pieces = parse(completion.text)
    for piece in pieces:
        if "rejected" in piece:
            piece["drop"] = Drop(*piece.pop("rejected"))
    if pieces and completion.finish_reason == "length":
        pieces[-1]["drop"] = Drop("truncated", "the completion hit max_new_tokens")
    return pieces


def finished_on_disk(path: Path, rounds: RoundsConfig) -> tuple[int, int] | None:
    """(rounds run, instructions kept) from the candidates file of a bootstrap that finished (the
    count reached or every round run), else None: then what is left is not known yet."""
    rows = read_jsonl(path) if path.exists() else []
    if not rows:
        return None
    ran, kept = max(r["round"] for r in rows) + 1, sum(r["status"] == "kept" for r in rows)
    return (ran, kept) if kept >= rounds.num_instructions or ran == rounds.rounds() else None

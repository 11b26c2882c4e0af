"""The kept/dropped record: every candidate a stage judges ends kept or dropped with a reason, and
each drop is one line of synth/drops.jsonl. The funnel counts the first; the report shows the second."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Outcome(BaseModel):
    """What a stage decided about one candidate (an input, a sample, a pair, an instruction)."""

    status: Literal["kept", "dropped"]
    reason: str | None = None  # why it was dropped; None when kept


class Drop(BaseModel):
    """One line of drops.jsonl. Methods add their own ids (`input_id`, `id`, `sample`): kept as extras."""

    model_config = ConfigDict(extra="allow")

    kind: str | None = None  # what was dropped: input, sample, pair, instruction, instance, segment, ...
    stage: str | None = None  # the funnel stage that dropped it
    reason: str | None = None
    detail: Any = None  # the filter's evidence (a matched phrase, a vote count, a score)
    text: Any = None  # the dropped text itself


def outcomes(statuses: list[tuple[str, str | None]]) -> list[Outcome]:
    return [Outcome(status=status, reason=reason) for status, reason in statuses]

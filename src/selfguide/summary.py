"""summary.json, typed: what a method's synthesis kept and dropped at each stage, the pairs it
made, which models made them and what the calls cost.

Every method writes the same core (`stages`, `pairs`, `models`, `model_calls`) and may add fields
of its own (`datastore`, `scores_by_round`, ...), which stay readable as extras. Reading is
tolerant: a summary.json written by an earlier version (no `method`, no `models`, no call
counts) loads with those fields left unset, so the report, the verdict and the bench read
every run folder the same way. Writing stays with the methods (`methods.synthesize`), as JSON in
their own key order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

# A summary without `method` predates the method registry: only SELF-GUIDE existed then.
LEGACY_METHOD = "self-guide"


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class StageRow(Lenient):
    """One funnel row: how many entered the stage, how many it kept, and its drops by reason."""

    stage: str
    unit: str = ""
    total: int = 0
    kept: int = 0
    dropped: dict[str, int] = {}

    @property
    def n_dropped(self) -> int:
        return self.total - self.kept

    def main_reason(self) -> str:
        return max(self.dropped.items(), key=lambda kv: kv[1])[0] if self.dropped else "unknown"


class ModelRoles(Lenient):
    """Which model wrote the data, which labelled it (wrote the outputs) and which was trained on it;
    for gold data, the task file "wrote" it."""

    wrote: str = "?"
    labelled: str = "?"
    trained: str = "?"

    @property
    def from_file(self) -> bool:
        """The inputs are the user's own, read from a file (synth.inputs.file), not written by a model."""
        return self.wrote.startswith(FILE_SOURCE)


FILE_SOURCE = "the file "  # `wrote` of inputs read from a file: "the file <path>"


class ModelCalls(Lenient):
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class SelfLabelAccuracy(Lenient):
    """How well the model's own labels matched gold answers before training (SELF-GUIDE's diagnostic)."""

    accuracy: float | None = None
    metric: str = ""
    n: int | str = "?"
    source: str = "gold items"
    labeler: str = "?"
    passed_vote: int | None = None
    majority_label: str | None = None
    majority_accuracy: float | None = None
    top_self_label: str | None = None
    top_self_label_share: float = 0.0


class LabelCounts(Lenient):
    """Classification: each label's count after each stage, and the labels no final pair has."""

    pseudo_labels_of_kept_inputs: dict[str, int] = {}
    voted: dict[str, int] = {}
    final: dict[str, int] = {}
    missing_from_final: list[str] = []


class SynthSummary(Lenient):
    method: str = LEGACY_METHOD
    task: str | None = None
    type: str | None = None
    stages: list[StageRow] = []
    pairs: int = 0
    labels: LabelCounts | None = None
    self_label_accuracy: SelfLabelAccuracy | None = None
    models: ModelRoles | None = None
    model_calls: ModelCalls | None = None
    model_calls_by_invocation: list[ModelCalls] = []
    model_calls_total: ModelCalls | None = None
    train: dict[str, Any] = {}  # training settings the method asks for (few-shot finetuning: its epochs)

    @field_validator("models", "labels", "self_label_accuracy", "model_calls", "model_calls_total", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A method that used no model writes `models: {}`; an older run wrote no accuracy as {} or null.
        return value or None

    @field_validator("train", mode="before")
    @classmethod
    def _no_train_settings(cls, value: object) -> object:
        return value or {}

    def stage(self, name: str) -> StageRow | None:
        return next((row for row in self.stages if row.stage == name), None)

    def calls_so_far(self) -> ModelCalls | None:
        """Every invocation's calls together (a resumed synthesis), else this invocation's."""
        return self.model_calls_total or self.model_calls


def summary_of(data: dict) -> SynthSummary:
    return SynthSummary.model_validate(data)


def read_summary(path: Path) -> SynthSummary | None:
    """synth/summary.json as a SynthSummary; None when it is missing or unreadable."""
    try:
        return summary_of(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError, TypeError):
        return None

"""TaskSpec: what a task is: instruction, demos, type, labels, eval set, gold items outside it.

Loading one is `selfguide.tasks.load.load_task` (a task file, ours or SuperNI's, or a name).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

TaskType = Literal["classification", "generation"]
EvalSplit = Literal["official", "selfguide-test", "selfguide-validation"]

# A task whose eval outputs take at most this many distinct values (each seen at least twice on
# average) is taken to be classification when the file does not say.
MAX_INFERRED_LABELS = 20


class Example(BaseModel):
    input: str
    output: str


class EvalItem(BaseModel):
    input: str
    references: list[str]
    id: str | None = None


class TaskSpec(BaseModel):
    name: str
    instruction: str
    examples: list[Example]
    type: TaskType
    labels: list[str] | None = None
    eval: list[EvalItem] = Field(default_factory=list)
    # Gold items outside the eval set (SuperNI instances not evaluated on): for the self-label
    # diagnostic and the gold-data ceiling, never for synthesis or evaluation.
    dev: list[EvalItem] = Field(default_factory=list)
    category: str | None = None
    source: str = ""

    @property
    def is_classification(self) -> bool:
        return self.type == "classification"


def infer_type(outputs: list[str]) -> TaskType:
    """Classification when few distinct outputs repeat across the eval set; generation otherwise."""
    distinct = Counter(o.strip() for o in outputs)
    if 2 <= len(distinct) <= MAX_INFERRED_LABELS and len(outputs) >= 2 * len(distinct):
        return "classification"
    return "generation"

"""What identifies a training: the pairs, the task prompt they are trained with, the weights and
the settings that change the trained weights. One fingerprint serves both the reuse of a finished
training (train/reuse.py) and the resume of an interrupted one (train/sft.py)."""

from __future__ import annotations

import hashlib
import json

from selfguide.backends.fingerprint import model_fingerprint
from selfguide.prompts.task import Pair
from selfguide.tasks.spec import TaskSpec
from selfguide.train.config import TrainConfig


def training_fingerprint(task: TaskSpec | None, pairs: list[Pair], weights: str, config: TrainConfig) -> str:
    demos = [(e.input, e.output) for e in task.examples] if task is not None else []
    payload = {
        "pairs": pairs,
        "instruction": task.instruction if task is not None else None,
        "demos": demos,
        "model": str(weights),
        "weights": model_fingerprint(str(weights)),
        "train": config.model_dump(mode="json", exclude={"model", "report_to"}),  # neither changes the trained weights
    }
    if any(tuple(pair) in demos for pair in pairs):
        # Demo rows are prompted with the other demos only (train/sft.build_training_rows); a training made
        # before that had each demo's answer in its own prompt and must not be reused.
        payload["demo_rows"] = "leave-one-out"
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

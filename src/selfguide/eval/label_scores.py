"""Label scoring: the model's probability of each label as the whole answer to the task prompt,
one forward pass per label instead of sampling. Annotation labels inputs with it; evaluation
reports the most likely label beside the generated answer."""

from __future__ import annotations

import math

from selfguide.backends.base import ScoreRequest
from selfguide.backends.cache import CachedModel
from selfguide.prompts.task import task_messages
from selfguide.tasks.spec import TaskSpec


def label_score_requests(task: TaskSpec, inputs: list[str], extra_demos: list[tuple[str, str]] = ()) -> list[ScoreRequest]:
    """Every label as a candidate answer to the task prompt of each input."""
    demos = [(e.input, e.output) for e in task.examples] + list(extra_demos)
    return [ScoreRequest(task_messages(task.instruction, demos, text), tuple(task.labels or ())) for text in inputs]


def label_probabilities(
    model: CachedModel, task: TaskSpec, inputs: list[str], calibrate: bool, desc: str = "scoring labels", extra_demos: list[tuple[str, str]] = ()
) -> list[dict[str, float]]:
    """Per input, a probability per label from the log-likelihood of each label as the whole answer
    (end of turn included), normalised over the labels; with `calibrate`, each label's probability
    is first divided by its mean over `inputs` (batch calibration, Zhou et al. 2023)."""
    labels = list(task.labels or ())
    scores = model.score(label_score_requests(task, inputs, extra_demos), desc=desc) if inputs else []
    probs = [softmax([s.logprob for s in row]) for row in scores]
    if calibrate and probs:
        prior = [sum(row[k] for row in probs) / len(probs) for k in range(len(labels))]
        probs = [normalise([p / q if q > 0 else 0.0 for p, q in zip(row, prior)]) for row in probs]
    return [dict(zip(labels, row)) for row in probs]


def softmax(logprobs: list[float]) -> list[float]:
    top = max(logprobs)
    return normalise([math.exp(x - top) for x in logprobs])


def normalise(values: list[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values] if total > 0 else [1 / len(values)] * len(values)

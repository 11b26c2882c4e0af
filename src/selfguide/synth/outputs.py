"""Stage 2: the model labels each kept input by in-context learning; samples are filtered and
voted on; classification pairs are mapped to labels and balanced (SPEC §2.3)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Request, SamplingParams, ScoreRequest
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.prompts import task_messages
from selfguide.synth.filters import Drop, NoiseConfig, check_length, check_noise, length_window, noise_terms_for, normalize_label
from selfguide.tasks.spec import TaskSpec


class OutputGenConfig(BaseModel):
    """Output annotation, filters and vote; defaults are the published SELF-GUIDE settings."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(10, ge=1, description="Samples per input (the original drew 20 and kept the 10 most likely).")
    temperature: float = Field(0.2, ge=0, description="Sampling temperature.")
    top_k: int = Field(10, ge=0, description="Top-k sampling; 0 = off.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling; 1 = off.")
    max_new_tokens: int = Field(500, ge=1, description="Upper bound per sample; answers normally end at the end of the turn.")
    length_filter: bool = Field(True, description="Generation tasks: keep samples inside the demo outputs' mean +/- 2 std character window.")
    degenerate_width: float = Field(0.5, gt=0, description="When the output window is empty: mean x (1 +/- this).")
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    min_vote_share: float = Field(0.3, ge=0, le=1, description="The winning answer must hold this share of the surviving samples.")
    balance_classes: bool = Field(True, description="Classification: downsample every label to the rarest one present.")
    labeler: Literal["auto", "score", "sample"] = Field(
        "auto",
        description="Classification: 'score' ranks every label by the model's log-likelihood after the prompt (one forward "
        "pass per label, no sampling) and keeps the input when the top label's probability reaches min_label_prob; "
        "'sample' draws n answers, filters and votes (the paper); 'auto': score on an in-process model, sample on a "
        "server. On SmolLM2 both self-labelled the tuning tasks equally well, and scoring was 2-4x cheaper.",
    )
    min_label_prob: float = Field(0.5, ge=0, le=1, description="labeler 'score': the top label's (calibrated) probability needed to keep an input.")
    calibrate: bool = Field(
        False,
        description="labeler 'score': divide each label's probability by its mean over all inputs labelled together "
        "(batch calibration), so a label the model favours for every input does not win every input.",
    )


def annotation_requests(task: TaskSpec, inputs: list[str], config: OutputGenConfig, seed: int, salt: str = "outputs") -> list[Request]:
    """n samples per input with the task prompt; `salt` keeps other users' seeds apart from annotation's."""
    demos = [(e.input, e.output) for e in task.examples]
    return [
        Request(
            task_messages(task.instruction, demos, text),
            SamplingParams(
                temperature=config.temperature,
                top_k=config.top_k,
                top_p=config.top_p,
                max_new_tokens=config.max_new_tokens,
                n=config.n,
                seed=derive_seed(seed, salt, text),
            ),
        )
        for text in inputs
    ]


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


def annotate(task: TaskSpec, inputs: list[dict], model: CachedModel, config: OutputGenConfig, seed: int) -> list[dict]:
    """One record per kept input: its samples (each kept or dropped, and why) and the vote, or with
    labeler 'score' its label probabilities and the top label."""
    if task.is_classification and task.labels and uses_label_scores(config, model):
        return annotate_by_scores(task, inputs, model, config)
    requests = annotation_requests(task, [record["text"] for record in inputs], config, seed)
    all_completions = model.generate(requests, desc="labelling inputs")
    window = length_window([len(e.output) for e in task.examples], config.degenerate_width)
    terms = noise_terms_for(config.noise, task.is_classification)
    records = []
    for record, completions in zip(inputs, all_completions):
        samples = []
        for completion in completions:
            text = completion.text.strip()
            drop = check_sample(text, task, config, window, terms)
            label = normalize_label(text, task.labels) if task.is_classification and task.labels else None
            samples.append(
                {
                    "text": text,
                    "answer": label if label is not None else text,
                    "status": "kept" if drop is None else "dropped",
                    "reason": None if drop is None else drop.reason,
                    "detail": None if drop is None else drop.detail,
                }
            )
        vote = vote_answer([s["answer"] for s in samples if s["status"] == "kept"], config.min_vote_share)
        drop = vote_drop(vote, task)
        records.append(
            {
                "input_id": record["id"],
                "input": record["text"],
                "pseudo_label": record.get("pseudo_label"),
                "samples": samples,
                "vote": vote,
                "output": vote["winner"] if drop is None else None,
                "status": "kept" if drop is None else "dropped",
                "reason": None if drop is None else drop.reason,
                "detail": None if drop is None else drop.detail,
            }
        )
    return records


def uses_label_scores(config: OutputGenConfig, model: CachedModel) -> bool:
    return config.labeler == "score" or (config.labeler == "auto" and model.supports_scoring)


def annotate_by_scores(task: TaskSpec, inputs: list[dict], model: CachedModel, config: OutputGenConfig) -> list[dict]:
    """Label scoring: the most likely label wins when its probability reaches `min_label_prob`."""
    probabilities = label_probabilities(model, task, [record["text"] for record in inputs], config.calibrate)
    records = []
    for record, probs in zip(inputs, probabilities):
        winner = max(probs, key=lambda label: (probs[label], label))
        vote = {"winner": winner, "count": 1, "valid": 1, "share": probs[winner], "passed": probs[winner] >= config.min_label_prob, "label_probs": probs}
        drop = None if vote["passed"] else Drop("low_label_prob", f"{winner} {probs[winner]:.2f}")
        records.append(
            {
                "input_id": record["id"],
                "input": record["text"],
                "pseudo_label": record.get("pseudo_label"),
                "samples": [],
                "vote": vote,
                "output": winner if drop is None else None,
                "status": "kept" if drop is None else "dropped",
                "reason": None if drop is None else drop.reason,
                "detail": None if drop is None else drop.detail,
            }
        )
    return records


def check_sample(text: str, task: TaskSpec, config: OutputGenConfig, window: tuple[int, int], terms: list[str]) -> Drop | None:
    if not text:
        return Drop("empty")
    if config.length_filter and not task.is_classification and (drop := check_length(text, window)):
        return drop
    if config.noise.enabled and (drop := check_noise(text, config.noise.phrases, terms)):
        return drop
    return None


def vote_answer(answers: list[str], min_share: float) -> dict:
    """The most frequent answer and its share of `answers`; ties go to the shortest (then the
    alphabetically first, so the outcome never depends on sample order)."""
    if not answers:
        return {"winner": None, "count": 0, "valid": 0, "share": 0.0, "passed": False}
    counts = Counter(answers)
    winner, count = min(counts.items(), key=lambda item: (-item[1], len(item[0]), item[0]))
    share = count / len(answers)
    return {"winner": winner, "count": count, "valid": len(answers), "share": share, "passed": share >= min_share}


def vote_drop(vote: dict, task: TaskSpec) -> Drop | None:
    if vote["valid"] == 0:
        return Drop("no_valid_sample")
    if not vote["passed"]:
        return Drop("no_majority", f"{vote['count']}/{vote['valid']}")
    if task.is_classification and task.labels and vote["winner"] not in task.labels:
        return Drop("not_a_label", vote["winner"][:80])
    return None


def balance_classes(pairs: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """Downsample every label to the rarest label present; returns (kept, dropped)."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for pair in pairs:
        by_label[pair["output"]].append(pair)
    if not by_label:
        return [], []
    smallest = min(len(group) for group in by_label.values())
    chosen: set[str] = set()
    for label in sorted(by_label):
        group = by_label[label]
        rng = random.Random(derive_seed(seed, "balance", label))
        chosen.update(p["input_id"] for p in rng.sample(group, smallest))
    kept = [p for p in pairs if p["input_id"] in chosen]
    dropped = [p for p in pairs if p["input_id"] not in chosen]
    return kept, dropped

"""Annotate: the model labels each kept input by in-context learning with n samples, each sample
kept or dropped by the output filters, then the vote (stages/vote.py); or, for classification on
an in-process model, label scoring (not in the paper; docs/methods.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.eval.label_scores import label_probabilities
from selfguide.prompts.task import task_messages
from selfguide.stages.filters import Drop, NoiseConfig, check_length, check_noise, check_rewrite, length_window, noise_terms_for, normalize_label, rewrite_window
from selfguide.stages.vote import consensus_answer, vote_answer, vote_drop
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
    rewrite_filter: Literal["off", "window", "upper"] = Field(
        "off",
        description="Generation tasks, by the ROUGE-L F1 of a sample with its input against the demos' mean +/- 2 std "
        "(how much the task's answers rewrite their input): 'window' keeps samples inside it; 'upper' drops only those "
        "above it, answers that keep more of their input than the demos' answers do (on a repair task, a copy of a fluent "
        "input), so the vote picks among the samples that rewrite. true/false mean 'window'/'off'. Not in the paper.",
    )
    rewrite_degenerate_width: float = Field(0.1, gt=0, description="When the demos' rewrite window is empty (one demo, or all alike): mean +/- this.")
    min_vote_share: float = Field(0.3, ge=0, le=1, description="The winning answer must hold this share of the surviving samples.")
    vote: Literal["majority", "consensus"] = Field(
        "majority",
        description="Generation tasks: 'majority' keeps the most frequent answer when it holds min_vote_share of the samples "
        "(the paper); 'consensus' keeps the sample with the highest mean ROUGE-L F1 to the other samples (minimum Bayes "
        "risk, universal self-consistency) when that mean reaches min_consensus: free text seldom repeats exactly. "
        "Classification always takes the majority.",
    )
    min_consensus: float = Field(0.5, ge=0, le=1, description="vote 'consensus': the winner's mean ROUGE-L F1 to the other samples needed to keep the input.")
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

    @field_validator("rewrite_filter", mode="before")
    @classmethod
    def _rewrite_filter_bool(cls, value: object) -> object:
        return {True: "window", False: "off"}.get(value, value) if isinstance(value, bool) else value


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


def annotate(task: TaskSpec, inputs: list[dict], model: CachedModel, config: OutputGenConfig, seed: int, progress: bool | None = None) -> list[dict]:
    """One record per kept input: its samples (each kept or dropped, and why) and the vote, or with
    labeler 'score' its label probabilities and the top label."""
    if task.is_classification and task.labels and uses_label_scores(config, model):
        return annotate_by_scores(task, inputs, model, config)
    requests = annotation_requests(task, [record["text"] for record in inputs], config, seed)
    all_completions = model.generate(requests, desc="labelling inputs", progress=progress)
    window = length_window([len(e.output) for e in task.examples], config.degenerate_width)
    terms = noise_terms_for(config.noise, task.is_classification)
    rewrites = (
        rewrite_window([(e.input, e.output) for e in task.examples], config.rewrite_degenerate_width)
        if config.rewrite_filter != "off" and not task.is_classification
        else None
    )
    consensus = config.vote == "consensus" and not task.is_classification
    records = []
    for record, completions in zip(inputs, all_completions):
        samples = []
        for completion in completions:
            text = completion.text.strip()
            drop = check_sample(text, task, config, window, terms)
            if drop is None and rewrites is not None:
                drop = check_rewrite(text, record["text"], rewrites, lower=config.rewrite_filter == "window")
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
        kept = [s["answer"] for s in samples if s["status"] == "kept"]
        vote = consensus_answer(kept, config.min_consensus) if consensus else vote_answer(kept, config.min_vote_share)
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

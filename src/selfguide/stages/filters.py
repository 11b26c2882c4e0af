"""Rule-based filters for generated inputs and sampled outputs (the paper's noise and length filters; docs/methods.md).

Each check returns None (keep) or a `Drop` naming the reason, so every decision can be recorded.
"""

from __future__ import annotations

import re
import statistics
import string
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from selfguide.eval.metrics import rouge_l

# Chatbot boilerplate that marks a sample as the model talking about the task rather than doing it.
DEFAULT_NOISE_PHRASES = [
    "Sure, I'd be happy to help",
    "I'd be happy to help",
    "Sure, here",
    "Of course!",
    "Great question!",
    "Absolutely!",
    "I'm here to help",
    "Certainly!",
    "Here is a new input",
    "Here's a new input",
    "As an AI",
    "I hope this helps",
    "I apologize",
    "Let me know if",
]
# Per-task terms the original filtered on: prompt words leaking into the text, blank lines, blanks.
DEFAULT_NOISE_TERMS = ["input", "output", "\n\n", "__"]
DEFAULT_CLASSIFICATION_NOISE_TERMS = ["therefore", "Hence"]


class NoiseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Drop texts that contain a noise phrase or term.")
    phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_NOISE_PHRASES), description="Boilerplate phrases, matched case-insensitively.")
    terms: list[str] = Field(default_factory=lambda: list(DEFAULT_NOISE_TERMS), description="Per-task terms, matched case-sensitively as substrings.")
    classification_terms: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CLASSIFICATION_NOISE_TERMS), description="Extra terms for classification tasks."
    )


class InputFilterConfig(BaseModel):
    """Filters on generated inputs, applied in this order: empty, length, noise, duplicates."""

    model_config = ConfigDict(extra="forbid")

    length_filter: bool = Field(True, description="Keep inputs inside the demo inputs' mean +/- 2 std character window (tuned in the paper).")
    degenerate_width: float = Field(0.5, gt=0, description="When the window is empty (all demos one length, or one demo): mean x (1 +/- this).")
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    require_demo_fields: bool = Field(
        True,
        description="Drop inputs that lack a field marker every demo input has (such as 'Premise:' and 'Hypothesis:'), "
        "so the model learns from inputs in the task's form (not in the paper).",
    )
    drop_demo_copies: bool = Field(True, description="Drop inputs equal to a demo input (the original did not).")
    drop_eval_copies: bool = Field(True, description="Drop inputs equal to an eval input, so the eval set stays held out (the original did not).")


@dataclass(frozen=True)
class Drop:
    reason: str  # a short code: empty, too_short, too_long, noise_phrase, noise_term, duplicate, demo_copy, eval_copy, ...
    detail: str = ""


def length_window(lengths: list[int], degenerate_width: float = 0.5) -> tuple[int, int]:
    """[lo, hi) in characters: int(mu - 2 sigma) <= len < int(mu + 2 sigma), sigma the population std.

    The original rejected everything when the lower bound was <= 0 or sigma was 0; here the lower
    bound is clamped at 0 and an empty window gets mean x (1 +/- degenerate_width).
    """
    mean = statistics.fmean(lengths)
    std = statistics.pstdev(lengths)
    lo, hi = max(0, int(mean - 2 * std)), int(mean + 2 * std)
    if hi <= lo:
        lo = max(0, int(mean * (1 - degenerate_width)))
        hi = max(lo + 1, int(mean * (1 + degenerate_width)) + 1)
    return lo, hi


def check_length(text: str, window: tuple[int, int]) -> Drop | None:
    lo, hi = window
    if len(text) < lo:
        return Drop("too_short", f"{len(text)} < {lo}")
    if len(text) >= hi:
        return Drop("too_long", f"{len(text)} >= {hi}")
    return None


def rewrite_window(demos: list[tuple[str, str]], degenerate_width: float = 0.1) -> tuple[float, float]:
    """[lo, hi] of ROUGE-L F1 between a demo's input and its output, mean +/- 2 sigma (population
    std) clamped to [0, 1]: how much the task's answers rewrite their input. An empty window (one
    demo, or all alike) gets mean +/- degenerate_width."""
    values = [rouge_l(output, [text]) for text, output in demos]
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    if std == 0:
        std = degenerate_width / 2
    return max(0.0, mean - 2 * std), min(1.0, mean + 2 * std)


def check_rewrite(text: str, source: str, window: tuple[float, float], lower: bool = True) -> Drop | None:
    """Drop an answer that keeps more (or, with `lower`, less) of its input than the demos' answers
    do: on a task that repairs its input, a copy of a fluent input is no answer."""
    lo, hi = window
    value = rouge_l(text, [source])
    if value > hi:
        return Drop("rewrites_too_little", f"{value:.2f} > {hi:.2f}")
    if lower and value < lo:
        return Drop("rewrites_too_much", f"{value:.2f} < {lo:.2f}")
    return None


def noise_terms_for(config: NoiseConfig, classification: bool) -> list[str]:
    return config.terms + (config.classification_terms if classification else [])


def check_noise(text: str, phrases: list[str], terms: list[str]) -> Drop | None:
    lowered = text.lower()
    for phrase in phrases:
        if phrase.lower() in lowered:
            return Drop("noise_phrase", phrase)
    for term in terms:
        if term in text:
            return Drop("noise_term", term)
    return None


# A field marker: one or two words, or a number, followed by a colon ("Premise:", "POS tag:", "1:").
FIELD_MARKER = re.compile(r"([A-Za-z_]\w*(?: \w+)?|\d+) ?:(?!\d)")


def demo_field_markers(demo_inputs: list[str]) -> list[str]:
    """The field markers that every demo input has, in the order of the first demo, without those
    that only repeat the tail of a longer one ("1" of "Sentence 1")."""
    def markers(text: str) -> list[str]:
        found = []
        for match in FIELD_MARKER.findall(text):
            found.append(match)
            if " " in match:
                found.append(match.split(" ", 1)[1])  # "the claim" also counts as "claim"
        return found

    if not demo_inputs:
        return []
    common = [m for m in dict.fromkeys(markers(demo_inputs[0])) if all(m in markers(text) for text in demo_inputs[1:])]
    return [m for m in common if not any(other != m and other.endswith(" " + m) for other in common)]


def check_fields(text: str, fields: list[str]) -> Drop | None:
    missing = [field for field in fields if f"{field}:" not in text and f"{field} :" not in text]
    return Drop("missing_fields", ", ".join(missing)) if missing else None


class InputFilter:
    """Applies the input filters in order and remembers accepted inputs for the duplicate check."""

    def __init__(self, config: InputFilterConfig, demo_inputs: list[str], eval_inputs: list[str], classification: bool):
        self.config = config
        self.window = length_window([len(x) for x in demo_inputs], config.degenerate_width)
        self.terms = noise_terms_for(config.noise, classification)
        self.fields = demo_field_markers(demo_inputs) if config.require_demo_fields else []
        self.demo_inputs = {x.strip() for x in demo_inputs} if config.drop_demo_copies else set()
        self.eval_inputs = {x.strip() for x in eval_inputs} if config.drop_eval_copies else set()
        self.accepted: set[str] = set()

    def check(self, text: str) -> Drop | None:
        text = text.strip()
        if not text:
            return Drop("empty")
        if self.config.length_filter and (drop := check_length(text, self.window)):
            return drop
        if self.config.noise.enabled and (drop := check_noise(text, self.config.noise.phrases, self.terms)):
            return drop
        if self.fields and (drop := check_fields(text, self.fields)):
            return drop
        if text in self.accepted:
            return Drop("duplicate")
        if text in self.demo_inputs:
            return Drop("demo_copy")
        if text in self.eval_inputs:
            return Drop("eval_copy")
        return None

    def accept(self, text: str) -> None:
        self.accepted.add(text.strip())


def normalize_label(sample: str, labels: list[str]) -> str | None:
    """The label a sample names, ignoring case and surrounding punctuation ("entails." -> "entails")."""
    key = sample.strip().strip(string.punctuation + string.whitespace).lower()
    for label in labels:
        if key == label.strip(string.punctuation + string.whitespace).lower():
            return label
    return None

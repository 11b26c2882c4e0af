"""Self-Instruct's heuristic filters for generated instructions and their instances (Wang et al.
2022 §2.3; the same rules in Alpaca's generator). Each check returns None (keep) or a `Drop` with
its reason code, so every candidate is accounted for.

Instruction reasons: empty, too_short, too_long, blacklisted_word, banned_prefix,
starts_with_punctuation, starts_non_english.
Instance reasons: empty_output, output_equals_input, ends_with_colon, conflicting_outputs,
duplicate_instance, over_instance_limit.
"""

from __future__ import annotations

import re
import string

from pydantic import BaseModel, ConfigDict, Field

from selfguide.stages.filters import Drop

# Words naming what a text-only model cannot see or produce (Self-Instruct's list, with the words
# Alpaca added: video, audio, music, flowchart, diagram).
DEFAULT_BLACKLIST = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
]  # fmt: skip


class InstructionFilterConfig(BaseModel):
    """Rules on a generated instruction, in this order; defaults are the published ones."""

    model_config = ConfigDict(extra="forbid")

    min_words: int = Field(4, ge=1, description="Fewest whitespace-separated words (the paper keeps 3 < words).")
    max_words: int = Field(150, ge=1, description="Most words (the paper keeps words <= 150).")
    blacklist: list[str] = Field(default_factory=lambda: list(DEFAULT_BLACKLIST), description="Whole words or phrases, any case, that drop an instruction.")
    banned_prefixes: list[str] = Field(
        default_factory=lambda: ["Write a program"],
        description="Instruction starts that drop it: the released code dropped 'Write a program', which the model kept "
        "adding to existing tasks.",
    )
    drop_punctuation_start: bool = Field(True, description="Drop instructions whose first character is ASCII punctuation.")
    drop_non_english_start: bool = Field(True, description="Drop instructions whose first character is not ASCII.")


class InstanceFilterConfig(BaseModel):
    """Rules on the instances written for one instruction (the released Self-Instruct code's)."""

    model_config = ConfigDict(extra="forbid")

    drop_colon_endings: bool = Field(True, description="An input or output ending with ':' is usually cut off: drop it.")
    drop_conflicting: bool = Field(True, description="When one input got two different outputs, drop the instruction's instances.")
    max_instances: int = Field(5, ge=1, description="Instances kept per instruction (the paper: at most 5).")


def clean_instruction(text: str) -> str:
    """Whitespace collapsed, a trailing colon dropped, the first letter upper-cased.

    The released code used `str.capitalize()`, which also lower-cases the rest ("POS" -> "pos");
    only the first letter is changed here."""
    text = re.sub(r"\s+", " ", text).strip().rstrip(":").strip()
    return text[:1].upper() + text[1:]


class InstructionFilter:
    def __init__(self, config: InstructionFilterConfig):
        self.config = config
        words = "|".join(re.escape(word) for word in config.blacklist)
        self._blacklist = re.compile(rf"\b({words})\b", re.IGNORECASE) if config.blacklist else None

    def check(self, text: str) -> Drop | None:
        if not text:
            return Drop("empty")
        words = len(text.split())
        if words < self.config.min_words:
            return Drop("too_short", f"{words} words < {self.config.min_words}")
        if words > self.config.max_words:
            return Drop("too_long", f"{words} words > {self.config.max_words}")
        if self._blacklist and (match := self._blacklist.search(text)):
            return Drop("blacklisted_word", match.group(0))
        for prefix in self.config.banned_prefixes:
            if text.startswith(prefix):
                return Drop("banned_prefix", prefix)
        if self.config.drop_punctuation_start and text[0] in string.punctuation:
            return Drop("starts_with_punctuation", text[0])
        if self.config.drop_non_english_start and not text[0].isascii():
            return Drop("starts_non_english", text[0])
        return None


def check_instance(instance_input: str, output: str, config: InstanceFilterConfig) -> Drop | None:
    """The rules on one (input, output) pair by itself."""
    if not output:
        return Drop("empty_output")
    if instance_input == output:
        return Drop("output_equals_input")
    if config.drop_colon_endings and (instance_input.endswith(":") or output.endswith(":")):
        return Drop("ends_with_colon", "input" if instance_input.endswith(":") else "output")
    return None


def filter_instances(instances: list[dict], config: InstanceFilterConfig) -> list[Drop | None]:
    """One decision per {"input", "output"[, "drop"]} of one instruction, in order: a drop parsing
    already made, the pair rules, then conflicting outputs for one input (all of the instruction's
    pairs go), duplicates, and the per-instruction limit (the first ones are kept)."""
    pairs = [(row["input"], row["output"]) for row in instances]
    decisions = [row.get("drop") or check_instance(i, o, config) for row, (i, o) in zip(instances, pairs)]
    outputs_by_input: dict[str, set[str]] = {}
    for (i, o), drop in zip(pairs, decisions):
        if drop is None and i:
            outputs_by_input.setdefault(i, set()).add(o)
    conflict = next((i for i, outs in outputs_by_input.items() if len(outs) > 1), None)
    seen: set[tuple[str, str]] = set()
    kept = 0
    for k, (pair, drop) in enumerate(zip(pairs, decisions)):
        if drop is not None:
            continue
        if config.drop_conflicting and conflict is not None:
            decisions[k] = Drop("conflicting_outputs", f"input {conflict[:40]!r} has {len(outputs_by_input[conflict])} outputs")
        elif pair in seen:
            decisions[k] = Drop("duplicate_instance")
        elif kept >= config.max_instances:
            decisions[k] = Drop("over_instance_limit", f"> {config.max_instances}")
        else:
            seen.add(pair)
            kept += 1
    return decisions

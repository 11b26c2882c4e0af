"""Instance generation (Self-Instruct §2.2): the model writes (input, output) examples for each new
instruction. Generation tasks go input-first (an input, then its output); classification tasks go
output-first (a class label, then an input for it), so inputs are not all of the label the model
happens to think of first (prompts and parsers: `selfguide.prompts.self_instruct`).

The few-shot demos are short seed tasks of the same kind with their gold instance, fixed per run
so every prompt shares one prefix. Greedy, as the released code.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.prompts.self_instruct import instance_messages, instance_stops, parse_classification, parse_generation
from selfguide.stages.bootstrap import parse_completion
from selfguide.tasks.self_instruct import SeedTask


class InstanceGenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    demos: int = Field(8, ge=1, description="Seed tasks of the same kind shown with their instance.")
    max_demo_chars: int = Field(600, ge=1, description="Only seed tasks whose instance (input and output) is at most this long are shown, to keep the prompt short.")
    max_examples: int = Field(5, ge=1, description="Generation stops at the next 'Example' after this many (the released code's 5).")
    max_new_tokens: int = Field(350, ge=1, description="Upper bound per completion (the released code: 350, 300 for classification).")


def instance_demos(seeds: list[SeedTask], classification: bool, config: InstanceGenConfig, seed: int) -> list[SeedTask]:
    short = [t for t in seeds if t.is_classification == classification and len(t.instances[0].input + t.instances[0].output) <= config.max_demo_chars]
    rng = random.Random(derive_seed(seed, "instance-demos", classification))
    return rng.sample(short, min(config.demos, len(short)))


def instance_requests(instructions: list[tuple[str, bool]], seeds: list[SeedTask], config: InstanceGenConfig, seed: int) -> list[Request]:
    demos = {kind: instance_demos(seeds, kind, config, seed) for kind in (False, True)}
    params = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens, stop=instance_stops(config.max_examples), seed=0)
    return [Request(instance_messages(demos[kind], text, kind), params) for text, kind in instructions]


def write_instances(model: CachedModel, instructions: list[tuple[str, bool]], seeds: list[SeedTask], config: InstanceGenConfig, seed: int) -> list[dict]:
    """For each (instruction, is_classification): the raw completion and its parsed instances."""
    completions = model.generate(instance_requests(instructions, seeds, config, seed), desc="writing instances", progress=False)
    records = []
    for (text, kind), [completion] in zip(instructions, completions):
        parsed = parse_completion(completion, parse_classification if kind else parse_generation)
        records.append({"instruction": text, "is_classification": kind, "raw": completion.text, "finish_reason": completion.finish_reason, "instances": parsed})
    return records

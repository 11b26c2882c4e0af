"""Alpaca's one-call generation: each prompt shows a few seed tasks (instruction, input, output),
sampled anew for every prompt from the seed tasks only, and asks for a list of 20 (prompt and
parser: `selfguide.prompts.alpaca`). A call yields up to 16 whole tasks.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import derive_seed
from selfguide.prompts.alpaca import alpaca_messages, list_stops
from selfguide.tasks.self_instruct import SeedTask


class WriteTasksConfig(BaseModel):
    """Alpaca's prompt and sampling; defaults are the released generator's."""

    model_config = ConfigDict(extra="forbid")

    seed_demos: int = Field(3, ge=1, description="Seed tasks shown per prompt, sampled anew for each prompt.")
    list_size: int = Field(20, ge=2, description="The list the prompt asks for; generation stops at this item's number.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(3072, ge=1, description="Upper bound per completion.")


def task_list_requests(config: WriteTasksConfig, seeds: list[SeedTask], round_index: int, prompts: int, seed: int) -> list[Request]:
    rng = random.Random(derive_seed(seed, "alpaca", round_index))
    requests = []
    for slot in range(prompts):
        demos = rng.sample(seeds, min(config.seed_demos, len(seeds)))
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            stop=list_stops(config.list_size),
            seed=derive_seed(seed, "alpaca", round_index, slot),
        )
        requests.append(Request(alpaca_messages(demos, config.list_size), params))
    return requests

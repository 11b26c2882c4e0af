"""Self-Instruct's instruction writing (§2.1): each prompt is a numbered list of 8 instructions, 6
from the seed tasks and 2 from the machine pool, shuffled, which the model continues up to item 15
(prompt and parser: `selfguide.prompts.self_instruct`). While the pool holds fewer than 2, seed
instructions fill in, as in the released code.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import derive_seed
from selfguide.prompts.self_instruct import list_stops, numbered_messages


class WriteInstructionsConfig(BaseModel):
    """The prompt and sampling of instruction writing; defaults are the released code's."""

    model_config = ConfigDict(extra="forbid")

    human_per_prompt: int = Field(6, ge=0, description="Seed instructions per prompt.")
    machine_per_prompt: int = Field(2, ge=0, description="Pooled machine instructions per prompt (seed ones fill in while the pool is smaller).")
    last_item: int = Field(15, ge=2, description="The list ends at this item: generation stops at the next number.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.5, gt=0, le=1, description="Nucleus sampling (the released code's 0.5; its presence penalty of 2 has no equivalent here).")
    max_new_tokens: int = Field(1024, ge=1, description="Upper bound per completion.")


def instruction_requests(
    config: WriteInstructionsConfig, seed_instructions: list[str], machine: list[str], round_index: int, prompts: int, seed: int
) -> list[Request]:
    """One round's prompts: `machine_per_prompt` pooled and the rest seed instructions, shuffled."""
    rng = random.Random(derive_seed(seed, "bootstrap", round_index))
    total = config.human_per_prompt + config.machine_per_prompt
    requests = []
    for slot in range(prompts):
        shown = rng.sample(machine, min(config.machine_per_prompt, len(machine)))
        shown += rng.sample(seed_instructions, min(total - len(shown), len(seed_instructions)))
        rng.shuffle(shown)
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            stop=list_stops(config.last_item),
            seed=derive_seed(seed, "bootstrap", round_index, slot),
        )
        requests.append(Request(numbered_messages(shown), params))
    return requests

"""Self-Instruct's instruction-writing prompt and its parser (Wang et al. 2022, Table 5).

The prompt is a numbered list of 8 instructions (6 from the seed tasks, 2 from the machine pool,
shuffled), which the model continues with new ones: "9. ...", "10. ...", up to item 15. In a chat
format the list sits in the assistant's own turn and ends with the next number, so the model
continues the list (few-shot completion) instead of talking about it.
"""

from __future__ import annotations

import random
import re

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Completion, Message, Request, SamplingParams
from selfguide.backends.cache import derive_seed
from selfguide.stages.bootstrap import mark_truncated

REQUEST = "Write a numbered list of diverse tasks, one instruction per item."
# A new item: a line starting with its number and a period ("\n12. ", "\n12 . ", or a bare "\n12." at the end).
ITEM = re.compile(r"\n\s*\d+\s?\.(?=\s|$)")


class NumberedPromptConfig(BaseModel):
    """The prompt and sampling of instruction writing; defaults are the released code's."""

    model_config = ConfigDict(extra="forbid")

    human_per_prompt: int = Field(6, ge=0, description="Seed instructions per prompt.")
    machine_per_prompt: int = Field(2, ge=0, description="Pooled machine instructions per prompt (seed ones fill in while the pool is smaller).")
    last_item: int = Field(15, ge=2, description="The list ends at this item: generation stops at the next number.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.5, gt=0, le=1, description="Nucleus sampling (the released code's 0.5; its presence penalty of 2 has no equivalent here).")
    max_new_tokens: int = Field(1024, ge=1, description="Upper bound per completion.")


def numbered_messages(instructions: list[str]) -> list[Message]:
    """The request, then the list so far in the assistant's turn, ending with the next number."""
    items = [f"{i}. {one_line(text)}" for i, text in enumerate(instructions, start=1)]
    items.append(f"{len(instructions) + 1}.")
    return [{"role": "user", "content": REQUEST}, {"role": "assistant", "content": "\n".join(items)}]


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


def numbered_requests(
    config: NumberedPromptConfig, seed_instructions: list[str], machine: list[str], round_index: int, prompts: int, seed: int
) -> list[Request]:
    """One round's prompts: `machine_per_prompt` pooled and the rest seed instructions, shuffled."""
    rng = random.Random(derive_seed(seed, "bootstrap", round_index))
    total = config.human_per_prompt + config.machine_per_prompt
    stops = ("\n\n", f"\n{config.last_item + 1}", f"{config.last_item + 1}.", f"{config.last_item + 1} .")
    requests = []
    for slot in range(prompts):
        shown = rng.sample(machine, min(config.machine_per_prompt, len(machine)))
        shown += rng.sample(seed_instructions, min(total - len(shown), len(seed_instructions)))
        rng.shuffle(shown)
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            stop=stops,
            seed=derive_seed(seed, "bootstrap", round_index, slot),
        )
        requests.append(Request(numbered_messages(shown), params))
    return requests


def parse_numbered(completion: Completion) -> list[dict]:
    """The instructions of a completion that continues the list: the text before the first numbered
    line is the item whose number ended the prompt, then one per numbered line; blank items are skipped."""
    return mark_truncated([{"instruction": piece.strip()} for piece in ITEM.split(completion.text) if piece.strip()], completion)

"""Alpaca's one-call generation (Taori et al. 2023): a single prompt asks for a list of 20 tasks,
each an instruction, an input and an output, after 3 seed tasks shown in the same format:

    ###
    1. Instruction: ...
    1. Input:
    ...
    1. Output:
    ...
    ###
    4. Instruction:

The model continues from item 4; generation stops at item 20, so a call yields up to 16 tasks. The
requirements the prompt lists are Alpaca's (diverse verbs, wording and task types; doable by a
text-only model; English; 1-2 sentence instructions; a realistic input under 100 words or
"<noinput>"; an output under 100 words), worded here afresh.
"""

from __future__ import annotations

import random
import re

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Completion, Message, Request, SamplingParams
from selfguide.backends.cache import derive_seed
from selfguide.stages.bootstrap import mark_truncated
from selfguide.stages.numbered_instructions import one_line
from selfguide.synth.filters import Drop
from selfguide.tasks.self_instruct import SeedTask

NO_INPUT = "<noinput>"


def alpaca_request(list_size: int) -> str:
    return f"""Write a list of {list_size} diverse tasks for a language model: each one an instruction, an input, and the output the model should give.

Requirements:
1. Vary the verbs: avoid starting two instructions with the same verb.
2. Vary the wording: mix questions with imperative instructions.
3. Vary the kinds of task: open-ended generation, classification, editing, and more.
4. A text-only model must be able to do every task: no visual or audio output, and no actions in the world such as setting a reminder.
5. Write the instructions in English.
6. Keep each instruction to 1 or 2 sentences, either an imperative or a question.
7. Give each instruction a specific, realistic input (no placeholders) with enough content to make the task challenging, ideally under 100 words.
8. A task that needs no input, such as a general knowledge question, gets "{NO_INPUT}" as its input.
9. Give an output that answers the instruction for that input, in under 100 words.

List of {list_size} tasks:"""


class AlpacaPromptConfig(BaseModel):
    """Alpaca's prompt and sampling; defaults are the released generator's."""

    model_config = ConfigDict(extra="forbid")

    seed_demos: int = Field(3, ge=1, description="Seed tasks shown per prompt, sampled anew for each prompt.")
    list_size: int = Field(20, ge=2, description="The list the prompt asks for; generation stops at this item's number.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(3072, ge=1, description="Upper bound per completion.")


def task_block(number: int, instruction: str, instance_input: str, output: str) -> str:
    return f"###\n{number}. Instruction: {one_line(instruction)}\n{number}. Input:\n{instance_input or NO_INPUT}\n{number}. Output:\n{output}"


def alpaca_messages(demos: list[SeedTask], list_size: int) -> list[Message]:
    blocks = [task_block(i, t.instruction, t.instances[0].input, t.instances[0].output) for i, t in enumerate(demos, start=1)]
    blocks.append(f"###\n{len(demos) + 1}. Instruction:")
    return [{"role": "user", "content": alpaca_request(list_size)}, {"role": "assistant", "content": "\n".join(blocks)}]


def alpaca_requests(config: AlpacaPromptConfig, seeds: list[SeedTask], round_index: int, prompts: int, seed: int) -> list[Request]:
    """One round's prompts, each with its own `seed_demos` seed tasks (Alpaca samples seeds only)."""
    rng = random.Random(derive_seed(seed, "alpaca", round_index))
    stops = (f"\n{config.list_size}", f"{config.list_size}.")
    requests = []
    for slot in range(prompts):
        demos = rng.sample(seeds, min(config.seed_demos, len(seeds)))
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            stop=stops,
            seed=derive_seed(seed, "alpaca", round_index, slot),
        )
        requests.append(Request(alpaca_messages(demos, config.list_size), params))
    return requests


def parse_alpaca(completion: Completion, first_number: int) -> list[dict]:
    """Each "###" block as {instruction, input, output}; a block whose fields are not the three
    numbered ones in order is kept as a `malformed` drop, so it is still accounted for."""
    candidates = []
    blocks = (f"{first_number}. Instruction:" + completion.text).split("###")
    for offset, block in enumerate(blocks):
        if not block.strip():
            continue
        number = first_number + offset
        parts = re.split(rf"{number}\.\s+(Instruction|Input|Output):", block)
        if len(parts) != 7 or parts[1::2] != ["Instruction", "Input", "Output"]:
            candidates.append({"instruction": one_line(block)[:200], "input": "", "output": "", "drop": Drop("malformed", f"item {number}")})
            continue
        instance_input = parts[4].strip()
        candidates.append({"instruction": parts[2].strip(), "input": "" if instance_input.lower() == NO_INPUT else instance_input, "output": parts[6].strip()})
    return mark_truncated(candidates, completion)

"""Alpaca's prompt (Taori et al. 2023) and the parser of its completions: a list of 20 whole tasks,
each an instruction, an input and an output, after a few seed tasks in the same format:

    ###
    1. Instruction: ...
    1. Input:
    ...
    1. Output:
    ...
    ###
    4. Instruction:

The model continues from the item after the seed tasks. The requirements the request lists are
Alpaca's (diverse verbs, wording and task types; doable by a text-only model; English; 1-2
sentence instructions; a realistic input under 100 words or "<noinput>"; an output under 100
words), worded here afresh.
"""

from __future__ import annotations

import re

from selfguide.backends.base import Message
from selfguide.prompts.self_instruct import one_line
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


def task_block(number: int, instruction: str, instance_input: str, output: str) -> str:
    return f"###\n{number}. Instruction: {one_line(instruction)}\n{number}. Input:\n{instance_input or NO_INPUT}\n{number}. Output:\n{output}"


def alpaca_messages(demos: list[SeedTask], list_size: int) -> list[Message]:
    """The request, then the seed tasks in the assistant's turn, ending where the next one begins."""
    blocks = [task_block(i, t.instruction, t.instances[0].input, t.instances[0].output) for i, t in enumerate(demos, start=1)]
    blocks.append(f"###\n{len(demos) + 1}. Instruction:")
    return [{"role": "user", "content": alpaca_request(list_size)}, {"role": "assistant", "content": "\n".join(blocks)}]


def list_stops(list_size: int) -> tuple[str, ...]:
    """The list ends at item `list_size` (Alpaca's stop strings)."""
    return (f"\n{list_size}", f"{list_size}.")


def parse_alpaca(text: str, first_number: int) -> list[dict]:
    """Each "###" block as {instruction, input, output}; a block whose fields are not the three
    numbered ones in order is `rejected` as malformed, so it is still accounted for."""
    candidates = []
    for offset, block in enumerate((f"{first_number}. Instruction:" + text).split("###")):
        if not block.strip():
            continue
        number = first_number + offset
        parts = re.split(rf"{number}\.\s+(Instruction|Input|Output):", block)
        if len(parts) != 7 or parts[1::2] != ["Instruction", "Input", "Output"]:
            candidates.append({"instruction": one_line(block)[:200], "input": "", "output": "", "rejected": ("malformed", f"item {number}")})
            continue
        instance_input = parts[4].strip()
        candidates.append({"instruction": parts[2].strip(), "input": "" if instance_input.lower() == NO_INPUT else instance_input, "output": parts[6].strip()})
    return candidates

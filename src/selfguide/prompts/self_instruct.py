"""Self-Instruct's prompts (Wang et al. 2022, Tables 5-8) and the parsers of their completions.

Each prompt is few-shot completion inside the chat format: a one-line request in the user turn,
then the examples in the assistant's own turn, which ends where the model's answer begins (the
next list number, "Is it classification?", the new task). The formats and the parsers follow the
released code; the request lines are worded afresh and the examples are seed tasks, not the
released templates' hand-picked ones.

Parsers return plain dicts; a piece the parser already rejects carries `"rejected": (reason,
detail)`, and the stage turns it into a recorded drop.
"""

from __future__ import annotations

import re

from selfguide.backends.base import Message
from selfguide.tasks.self_instruct import SeedTask


def one_line(text: str) -> str:
    """An instruction as a list item: whitespace collapsed, no trailing colon."""
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


# ---- writing instructions: a numbered list the model continues --------------------------------

LIST_REQUEST = "Write a numbered list of diverse tasks, one instruction per item."
# A new item: a line starting with its number and a period ("\n12. ", "\n12 . ", a bare "\n12." at the end).
ITEM = re.compile(r"\n\s*\d+\s?\.(?=\s|$)")


def numbered_messages(instructions: list[str]) -> list[Message]:
    """The request, then the list so far in the assistant's turn, ending with the next number."""
    items = [f"{i}. {one_line(text)}" for i, text in enumerate(instructions, start=1)]
    items.append(f"{len(instructions) + 1}.")
    return [{"role": "user", "content": LIST_REQUEST}, {"role": "assistant", "content": "\n".join(items)}]


def list_stops(last_item: int) -> tuple[str, ...]:
    """Where the list ends: a blank line, or the number after `last_item` (the released stops)."""
    after = last_item + 1
    return ("\n\n", f"\n{after}", f"{after}.", f"{after} .")


def parse_numbered(text: str) -> list[dict]:
    """The instructions of a completion that continues the list: the text before the first numbered
    line is the item whose number ended the prompt, then one per numbered line; blank items are skipped."""
    return [{"instruction": piece.strip()} for piece in ITEM.split(text) if piece.strip()]


# ---- is it a classification task? -------------------------------------------------------------

CLASSIFY_QUESTION = "Can the following task be regarded as a classification task with finite output labels?"
ASK = "Is it classification?"
CLASSIFY_STOPS = ("\n", "Task")


def classify_messages(demos: list[tuple[str, bool]], instruction: str) -> list[Message]:
    """Answered examples (instruction, is classification), then the new instruction's question."""
    blocks = [f"Task: {one_line(text)}\n{ASK} {'Yes' if answer else 'No'}" for text, answer in demos]
    blocks.append(f"Task: {one_line(instruction)}\n{ASK}")
    return [{"role": "user", "content": CLASSIFY_QUESTION}, {"role": "assistant", "content": "\n\n".join(blocks)}]


def parse_answer(text: str) -> bool | None:
    """True for Yes, False for No, None when the answer is neither."""
    words = text.strip().split()
    word = words[0].strip(".,!").lower() if words else ""
    return {"yes": True, "no": False}.get(word)


# ---- writing instances: input-first (generation), output-first (classification) ----------------

GENERATION_REQUEST = (
    "Write examples for each task below. Give several examples where you can, each an input and its output; "
    "for a task that needs no input, write the output directly."
)
CLASSIFICATION_REQUEST = (
    "Each task below is a classification task. For as many of its class labels as you can, give the class label "
    "and then an input that belongs to it; for a task that needs no input, give the labels only."
)
EXAMPLE = re.compile(r"Example\s?\d*\.?")
OUTPUT = re.compile(r"Output\s*\d*\s*:")
INPUT = re.compile(r"Input\s*\d*\s*:")
LEADING_INPUT = re.compile(r"^\s*Input\s*\d*\s*:")
LABEL = "Class label:"


def instance_stops(max_examples: int) -> tuple[str, ...]:
    return ("Task:", f"Example {max_examples + 1}")


def demo_block(task: SeedTask, classification: bool) -> str:
    """A seed task and its instance in the format the model is to continue."""
    instance = task.instances[0]
    lines = [f"Task: {one_line(task.instruction)}"]
    if classification:
        lines.append(f"{LABEL} {instance.output.strip()}")
        if instance.input.strip():
            lines.append(f"Input: {instance.input.strip()}")
    elif instance.input.strip():
        lines += ["Example 1", f"Input: {instance.input.strip()}", f"Output: {instance.output.strip()}"]
    else:
        lines.append(f"Output: {instance.output.strip()}")
    return "\n".join(lines)


def instance_messages(demos: list[SeedTask], instruction: str, classification: bool) -> list[Message]:
    """The request, then the demos in the assistant's turn and the new task, its first label asked
    for when it is a classification task."""
    blocks = [demo_block(task, classification) for task in demos]
    blocks.append(f"Task: {one_line(instruction)}\n" + (LABEL if classification else ""))
    request = CLASSIFICATION_REQUEST if classification else GENERATION_REQUEST
    return [{"role": "user", "content": request}, {"role": "assistant", "content": "\n\n".join(blocks)}]


def parse_input_output(text: str) -> tuple[str, str]:
    """(input, output) of one example: the text before 'Output:' is the input (without its 'Input:'
    label), the text after it the output (up to a next 'Input:'); no 'Output:' means no input."""
    parts = OUTPUT.split(text)
    instance_input, output = (parts[0], parts[1]) if len(parts) > 1 else ("", text)
    return LEADING_INPUT.sub("", instance_input).strip(), INPUT.split(output)[0].strip()


def parse_generation(text: str) -> list[dict]:
    """Examples split on "Example N"; a completion without any is one example if it has an output."""
    text = text.strip()
    if EXAMPLE.search(text):
        pieces = [piece for piece in EXAMPLE.split(text) if piece.strip()]
    elif OUTPUT.search(text):
        pieces = [text]
    else:
        return []
    return [dict(zip(("input", "output"), parse_input_output(piece))) for piece in pieces]


def parse_classification(text: str) -> list[dict]:
    """The prompt ended with the first 'Class label:', so the completion starts with that label."""
    instances = []
    for piece in (LABEL + text).split(LABEL)[1:]:
        label, _, rest = piece.strip().partition("\n")
        instances.append({"input": LEADING_INPUT.sub("", rest).strip(), "output": label.strip()})
    return instances

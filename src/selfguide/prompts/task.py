"""The task prompt, built once here and used by annotation, training and evaluation alike.

SELF-GUIDE trains on exactly the prompt the model sees at test time: the instruction, the gold
demos as earlier chat turns, then the input (`task_messages`). Rows of general-purpose methods
carry their own instruction and are prompted zero-shot (`instruction_messages`). Either becomes
token ids through `selfguide.backends.chat.encode_prompt`, in training and in every in-process
backend alike, so the two can never drift.
"""

from __future__ import annotations

from selfguide.backends.base import Message


def task_messages(instruction: str, demos: list[tuple[str, str]], source_input: str) -> list[Message]:
    """Instruction as the system turn, each demo as a user/assistant pair, then the new input."""
    messages: list[Message] = [{"role": "system", "content": instruction}]
    for demo_input, demo_output in demos:
        messages.append({"role": "user", "content": demo_input})
        messages.append({"role": "assistant", "content": demo_output})
    messages.append({"role": "user", "content": source_input})
    return messages


def instruction_messages(instruction: str, source_input: str = "") -> list[Message]:
    """A zero-shot prompt for a row with its own instruction: one user turn, the instruction
    then the input (when there is one) after a blank line, as Alpaca's prompt orders them."""
    content = f"{instruction}\n\n{source_input}" if source_input.strip() else instruction
    return [{"role": "user", "content": content}]


# A training pair: (input, output), prompted with the task prompt, or (input, output, instruction)
# for a row that carries its own instruction, prompted zero-shot with it.
Pair = tuple[str, str] | tuple[str, str, str]


def pair_of(row: dict) -> Pair:
    """The pair of a dataset.jsonl row: its own instruction, when it has one, comes along."""
    if row.get("instruction") is not None:
        return (row["input"], row["output"], row["instruction"])
    return (row["input"], row["output"])


def pair_messages(pair: Pair, instruction: str | None, demos: list[tuple[str, str]]) -> list[Message]:
    """The prompt a pair is trained on: its own instruction zero-shot, else the task prompt
    (`instruction` and `demos`), exactly what evaluation sends."""
    source_input, _, *own = pair
    if own:
        return instruction_messages(own[0], source_input)
    if instruction is None:
        raise ValueError("a pair without its own instruction needs the task's")
    return task_messages(instruction, demos, source_input)

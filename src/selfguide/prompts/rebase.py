"""ReBase's transform prompt: rewrite a row retrieved from another dataset into one example of the task.

The prompt follows the released ReBase transform prompt in structure (our wording): the task's
directions, its demos as JSON objects with "input" and "output", then the retrieved row as JSON
with each field cut to 250 characters, and a request for one JSON object in the demos' format whose
content comes from the row. With chain of thought the object opens with a "rationale" (the
reasoning behind the answer), as ReBase asks for reasoning tasks.
"""

from __future__ import annotations

import json

from selfguide.backends.base import Message

FIELD_CHARS = 250  # ReBase's truncate_row: each retrieved field shown up to this many characters


def truncate(text: str, limit: int = FIELD_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def reply_prefill(chain_of_thought: bool = False) -> str:
    """How the reply opens when prefilled: the JSON object's first key, so a small model writes the object."""
    return '{"rationale": "' if chain_of_thought else '{"input": "'


def transform_messages(
    instruction: str,
    demos: list[tuple[str, str]],
    row_input: str,
    row_output: str,
    chain_of_thought: bool = False,
    field_chars: int = FIELD_CHARS,
    prefill: bool = False,
) -> list[Message]:
    """The transform prompt; with `prefill` the assistant turn is opened with `reply_prefill` (the
    reply then continues it: parse `reply_prefill() + reply`)."""
    keys = '"rationale", "input" and "output"' if chain_of_thought else '"input" and "output"'
    examples = "\n".join(json.dumps({"input": i, "output": o}, ensure_ascii=False) for i, o in demos)
    row = json.dumps({"input": truncate(row_input, field_chars), "output": truncate(row_output, field_chars)}, ensure_ascii=False)
    parts = [
        "I am writing examples for a task. The task's directions are:",
        f"```\n{instruction}\n```",
        "Examples of the task, one JSON object each:",
        examples,
        "Here is a record from a different dataset:",
        row,
        "Write one new example of the task: its format and kind of question must match the examples above, "
        "and its content must come from the record. Decide which parts of the record to use.",
    ]
    if chain_of_thought:
        parts.append('Put the reasoning that leads to the answer in "rationale", and only the final answer in "output".')
    parts.append(f"Reply with one JSON object with exactly the fields {keys}, and nothing else.")
    messages: list[Message] = [{"role": "user", "content": "\n\n".join(parts)}]
    if prefill:
        messages.append({"role": "assistant", "content": reply_prefill(chain_of_thought)})
    return messages


def parse_transform(text: str, chain_of_thought: bool = False) -> dict[str, str] | None:
    """The fields of the first JSON object in the reply, fenced or not, that has "input" and
    "output" (strings; a number or a one-item list is taken as its text), or None. The first, not
    the last: small models go on to repeat or vary the object after writing it."""
    for obj in json_objects(text):
        fields = {key: as_text(obj.get(key)) for key in ("rationale", "input", "output")}
        if fields["input"] is not None and fields["output"] is not None:
            return {key: value for key, value in fields.items() if value is not None and (key != "rationale" or chain_of_thought)}
    return None


def json_objects(text: str):
    """Every JSON object that starts at a "{" in text and decodes, in order."""
    decoder = json.JSONDecoder(strict=False)
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            yield obj
        start = text.find("{", start + 1)


def as_text(value: object) -> str | None:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return None
    return str(value).strip()

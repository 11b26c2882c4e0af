"""The input-writing prompt (the paper's input generation). The output-writing prompt is the task prompt itself,
`selfguide.prompts.task_messages`, the same one used in training and evaluation."""

from __future__ import annotations

import re

from selfguide.backends.base import Message

# Generated inputs end at the next example header: the natural delimiter of this format. A reply
# that opens with a header of its own is not cut there: the header is stripped instead.
EXAMPLE_HEADER = "[Example"
INPUT_STOP = ("\n" + EXAMPLE_HEADER,)
LEADING_HEADER = re.compile(r"^\s*\[Example[^\]\n]*\]\s*")


def clean_generated_input(text: str) -> str:
    """The generated input without a leading "[Example N]" header and surrounding whitespace."""
    return LEADING_HEADER.sub("", text).strip()


def input_generation_messages(
    instruction: str,
    demo_inputs: list[str],
    earlier_inputs: list[str],
    pseudo_label: str | None = None,
    style: str = "prefill",
    demo_answers: dict[str, str] | None = None,
) -> list[Message]:
    """Instruction, the demo inputs as reference examples, earlier generated inputs as extra
    (possibly imperfect) examples, then a request for one new input (for a given label, if any).

    style "published": the request ends the user turn and the model replies freely, as in the paper;
    small chat models then tend to talk about the task instead of writing an input. style "prefill":
    the examples are a numbered list in the assistant's own turn, which ends with the next example's
    header, so the model continues the list with one new input (few-shot completion inside the chat
    format). A pseudo-label is asked for by tagging each demo header with its answer
    (`demo_answers`) and the new header with the wanted one."""
    if style == "published":
        blocks = [f"Task instruction:\n{instruction}", "Reference examples of inputs for this task:"]
        blocks += [f"{EXAMPLE_HEADER} {i}]\n{text}" for i, text in enumerate(demo_inputs, start=1)]
        if earlier_inputs:
            blocks.append("More inputs written earlier for this task (they may be imperfect):")
            blocks += [f"{EXAMPLE_HEADER} {i}]\n{text}" for i, text in enumerate(earlier_inputs, start=len(demo_inputs) + 1)]
        request = "Write one new input for this task, different from every example above"
        if pseudo_label is not None:
            request += f", such that the correct answer for it is: {pseudo_label}"
        blocks.append(request + ". Reply with the new input only, in the same format as the examples.")
        return [{"role": "user", "content": "\n\n".join(blocks)}]

    def tag(answer: str | None) -> str:
        return f" (answer: {answer})" if pseudo_label is not None and answer is not None else ""

    answers = demo_answers or {}
    items = [f"{EXAMPLE_HEADER} {i}]{tag(answers.get(text))}\n{text}" for i, text in enumerate([*demo_inputs, *earlier_inputs], start=1)]
    items.append(f"{EXAMPLE_HEADER} {len(items) + 1}]{tag(pseudo_label)}\n")
    request = f"Task instruction:\n{instruction}\n\nWrite a numbered list of inputs for this task, each one new and in the same format"
    request += ", each tagged with its correct answer." if pseudo_label is not None else "."
    return [{"role": "user", "content": request}, {"role": "assistant", "content": "\n\n".join(items)}]


def input_stops(style: str, demo_inputs: list[str]) -> tuple[str, ...]:
    """Where a generated input ends: the next example header; with a prefilled turn also a header
    without its newline, and a blank line unless the demo inputs themselves contain one."""
    if style == "published":
        return INPUT_STOP
    stops = (*INPUT_STOP, EXAMPLE_HEADER)
    return stops if any("\n\n" in text for text in demo_inputs) else (*stops, "\n\n")

"""Instance generation (Self-Instruct §2.2): the model writes (input, output) examples for each new
instruction. Generation tasks go input-first (an input, then its output); classification tasks go
output-first (a class label, then an input for it), so inputs are not all of the label the model
happens to think of first.

The few-shot demos are seed tasks of the same kind with their gold instance, in the released
templates' format ("Task:", "Example 1", "Input:", "Output:" / "Class label:"), fixed per run so
every prompt shares one prefix. Greedy, as the released code. The parsers follow the released
code's: examples split on "Example N", input and output on "Output:"; labels on "Class label:".
"""

from __future__ import annotations

import random
import re

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Completion, Message, Request, SamplingParams
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.stages.bootstrap import mark_truncated
from selfguide.stages.numbered_instructions import one_line
from selfguide.tasks.self_instruct import SeedTask

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
LABEL = "Class label:"


class InstanceGenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    demos: int = Field(8, ge=1, description="Seed tasks of the same kind shown with their instance.")
    max_demo_chars: int = Field(600, ge=1, description="Only seed tasks whose instance (input and output) is at most this long are shown, to keep the prompt short.")
    max_examples: int = Field(5, ge=1, description="Generation stops at the next 'Example' after this many (the released code's 5).")
    max_new_tokens: int = Field(350, ge=1, description="Upper bound per completion (the released code: 350, 300 for classification).")


def instance_demos(seeds: list[SeedTask], classification: bool, config: InstanceGenConfig, seed: int) -> list[SeedTask]:
    kind = [t for t in seeds if t.is_classification == classification and len(t.instances[0].input + t.instances[0].output) <= config.max_demo_chars]
    rng = random.Random(derive_seed(seed, "instance-demos", classification))
    return rng.sample(kind, min(config.demos, len(kind)))


def demo_block(task: SeedTask, classification: bool) -> str:
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


def instance_requests(instructions: list[tuple[str, bool]], seeds: list[SeedTask], config: InstanceGenConfig, seed: int) -> list[Request]:
    demos = {kind: instance_demos(seeds, kind, config, seed) for kind in (False, True)}
    stops = ("Task:", f"Example {config.max_examples + 1}")
    params = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens, stop=stops, seed=0)
    return [Request(instance_messages(demos[kind], text, kind), params) for text, kind in instructions]


def parse_input_output(text: str) -> tuple[str, str]:
    """(input, output) of one example: the text before 'Output:' is the input (without its 'Input:'
    label), the text after it the output (up to a next 'Input:'); no 'Output:' means no input."""
    parts = OUTPUT.split(text)
    instance_input, output = (parts[0], parts[1]) if len(parts) > 1 else ("", text)
    output = INPUT.split(output)[0]
    instance_input = re.sub(r"^\s*Input\s*\d*\s*:", "", instance_input)
    return instance_input.strip(), output.strip()


def parse_generation(completion: Completion) -> list[dict]:
    text = completion.text.strip()
    if EXAMPLE.search(text):
        pieces = [piece for piece in EXAMPLE.split(text) if piece.strip()]
    elif OUTPUT.search(text):
        pieces = [text]
    else:
        return []
    return mark_truncated([dict(zip(("input", "output"), parse_input_output(piece))) for piece in pieces], completion)


def parse_classification(completion: Completion) -> list[dict]:
    """The prompt ended with the first 'Class label:', so the completion starts with that label."""
    instances = []
    for piece in (LABEL + completion.text).split(LABEL)[1:]:
        label, _, rest = piece.strip().partition("\n")
        instances.append({"input": re.sub(r"^\s*Input\s*\d*\s*:", "", rest).strip(), "output": label.strip()})
    return mark_truncated(instances, completion)


def write_instances(model: CachedModel, instructions: list[tuple[str, bool]], seeds: list[SeedTask], config: InstanceGenConfig, seed: int) -> list[dict]:
    """For each (instruction, is_classification): the raw completion and its parsed instances."""
    completions = model.generate(instance_requests(instructions, seeds, config, seed), desc="writing instances", progress=False)
    records = []
    for (text, kind), [completion] in zip(instructions, completions):
        parsed = (parse_classification if kind else parse_generation)(completion)
        records.append({"instruction": text, "is_classification": kind, "raw": completion.text, "finish_reason": completion.finish_reason, "instances": parsed})
    return records

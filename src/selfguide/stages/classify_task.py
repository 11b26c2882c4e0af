"""Classification task identification (Self-Instruct §2.2): a few-shot prompt asks of each new
instruction whether it is a classification task with finite output labels, answered Yes or No.

The demos are seed tasks with their `is_classification` flag, as many of each kind as possible up
to `demos`, in one fixed order per run so every prompt shares one prefix. Greedy, a few tokens.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Message, Request, SamplingParams
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.stages.numbered_instructions import one_line
from selfguide.tasks.self_instruct import SeedTask

QUESTION = "Can the following task be regarded as a classification task with finite output labels?"
ASK = "Is it classification?"


class ClassifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    demos: int = Field(24, ge=2, description="Seed tasks shown as answered examples, half classification where the seeds allow.")
    max_new_tokens: int = Field(3, ge=1, description="Tokens for the answer (Yes / No).")


def classification_demos(seeds: list[SeedTask], count: int, seed: int) -> list[tuple[str, bool]]:
    """`count` seed tasks, alternating classification and not while both last, in a seeded order."""
    rng = random.Random(derive_seed(seed, "classify-demos"))
    yes = rng.sample([t.instruction for t in seeds if t.is_classification], sum(t.is_classification for t in seeds))
    no = rng.sample([t.instruction for t in seeds if not t.is_classification], sum(not t.is_classification for t in seeds))
    half = min(count // 2, len(yes))
    chosen = [(text, True) for text in yes[:half]] + [(text, False) for text in no[: count - half]]
    rng.shuffle(chosen)
    return chosen


def classify_messages(demos: list[tuple[str, bool]], instruction: str) -> list[Message]:
    blocks = [f"Task: {one_line(text)}\n{ASK} {'Yes' if answer else 'No'}" for text, answer in demos]
    blocks.append(f"Task: {one_line(instruction)}\n{ASK}")
    return [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "\n\n".join(blocks)}]


def parse_answer(text: str) -> bool | None:
    """True for Yes, False for No, None when the answer is neither."""
    words = text.strip().split()
    word = words[0].strip(".,!").lower() if words else ""
    return {"yes": True, "no": False}.get(word)


def classify_instructions(model: CachedModel, instructions: list[str], demos: list[tuple[str, bool]], config: ClassifyConfig) -> list[dict]:
    """One record per instruction: the raw answer and `is_classification` (an unclear answer counts
    as No, as the released code did, and says so in `parsed`)."""
    params = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens, stop=("\n", "Task"), seed=0)
    completions = model.generate([Request(classify_messages(demos, text), params) for text in instructions], desc="classifying", progress=False)
    records = []
    for text, [completion] in zip(instructions, completions):
        answer = parse_answer(completion.text)
        records.append({"instruction": text, "answer": completion.text.strip(), "parsed": answer is not None, "is_classification": bool(answer)})
    return records

"""Classification task identification (Self-Instruct §2.2): a few-shot prompt asks of each new
instruction whether it is a classification task with finite output labels, answered Yes or No
(prompt: `selfguide.prompts.self_instruct`).

The demos are seed tasks with their `is_classification` flag, half of each kind where the seeds
allow, in one fixed order per run so every prompt shares one prefix. Greedy, a few tokens.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.prompts.self_instruct import CLASSIFY_STOPS, classify_messages, parse_answer
from selfguide.tasks.self_instruct import SeedTask


class ClassifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    demos: int = Field(24, ge=2, description="Seed tasks shown as answered examples, half classification where the seeds allow.")
    max_new_tokens: int = Field(3, ge=1, description="Tokens for the answer (Yes / No).")


def classification_demos(seeds: list[SeedTask], count: int, seed: int) -> list[tuple[str, bool]]:
    """`count` seed tasks, half of them classification tasks (as many as there are), in a seeded order."""
    rng = random.Random(derive_seed(seed, "classify-demos"))
    yes = [t.instruction for t in seeds if t.is_classification]
    no = [t.instruction for t in seeds if not t.is_classification]
    half = min(count // 2, len(yes))
    chosen = [(text, True) for text in rng.sample(yes, half)] + [(text, False) for text in rng.sample(no, min(count - half, len(no)))]
    rng.shuffle(chosen)
    return chosen


def classify_instructions(model: CachedModel, instructions: list[str], demos: list[tuple[str, bool]], config: ClassifyConfig) -> list[dict]:
    """One record per instruction: the raw answer and `is_classification` (an unclear answer counts
    as No, as the released code did, and says so in `parsed`)."""
    params = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens, stop=CLASSIFY_STOPS, seed=0)
    completions = model.generate([Request(classify_messages(demos, text), params) for text in instructions], desc="classifying", progress=False)
    records = []
    for text, [completion] in zip(instructions, completions):
        answer = parse_answer(completion.text)
        records.append({"instruction": text, "answer": completion.text.strip(), "parsed": answer is not None, "is_classification": bool(answer)})
    return records

"""Stage 1: the model writes task inputs in rounds; the input filters keep or drop each (paper: input generation and filters).

Rounds run one after another because each round's prompts show inputs accepted in earlier
rounds. Every choice (demo order, which earlier inputs, the pseudo-label) comes from a random
generator seeded by (run seed, round), so a rerun builds the same prompts and hits the cache.

With `pool_lag` L > 0, round r's prompts show the pool as it was after round r-1-L, so up to L+1
rounds are written at once (their calls merge into shared batches, backends/batcher.py). Rounds
are still filtered one by one in order, so the data depends on L, never on timing.

With `file`, the inputs are the user's own (unlabelled inputs of the task) instead of written
ones; they pass the same filters and checks, in file order (`given_inputs`).
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from selfguide import interruptible
from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.errors import BadInputError
from selfguide.progress import bar as progress_bar
from selfguide.prompts.self_guide import clean_generated_input, input_generation_messages, input_stops
from selfguide.stages.corpus import read_file
from selfguide.stages.filters import Drop, InputFilter, InputFilterConfig
from selfguide.tasks.spec import TaskSpec


class InputGenConfig(BaseModel):
    """Input generation; defaults are the published SELF-GUIDE settings."""

    model_config = ConfigDict(extra="forbid")

    rounds: int | None = Field(None, ge=1, description="Rounds of prompts; unset: 20 for generation, 40 for classification tasks.")
    prompts_per_round: int = Field(10, ge=1, description="Prompts per round, one sample each (P).")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature (tuned over 0.6-1.0 in the paper).")
    top_k: int = Field(40, ge=0, description="Top-k sampling; 0 = off.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling; 1 = off.")
    max_new_tokens: int = Field(500, ge=1, description="Upper bound per input; generation normally ends earlier at the example delimiter.")
    max_earlier_examples: int = Field(10, ge=0, description="At most this many earlier accepted inputs per prompt (k ~ U[1, min(pool, this)]).")
    pool_lag: int = Field(
        0,
        ge=0,
        description="Round r's prompts show the inputs accepted up to round r-1-pool_lag, so pool_lag+1 rounds are written "
        "at once and share batches. 0 = the paper's protocol; any other value changes the data (not the paper's protocol).",
    )
    prompt: Literal["prefill", "published"] = Field(
        "prefill",
        description="'prefill': the examples are a numbered list in the assistant's own turn, which ends at the next "
        "item's header, so the reply is the new input itself (small chat models follow it); 'published': a request the "
        "model answers freely, as in the paper.",
    )
    file: str | None = Field(
        None,
        description="Label these inputs instead of writing them (not in the paper): unlabelled inputs of the task, a JSONL file "
        "with an 'input' string per line or a text file with one input per line. They pass the input filters like written ones "
        "(input_filters.length_filter: false keeps every length); the rounds settings are then unused.",
    )

    def rounds_for(self, task: TaskSpec) -> int:
        return self.rounds if self.rounds is not None else (40 if task.is_classification else 20)

    def attempts(self, task: TaskSpec) -> int:
        """Input-writing calls: one per prompt, every round."""
        return self.rounds_for(task) * self.prompts_per_round


class Check(Protocol):
    """A filter after the rule filters (such as the near-duplicate stage): it sees every candidate
    the rules kept, and `accept` tells it which ones joined the pool."""

    def check(self, text: str) -> Drop | None: ...

    def accept(self, text: str) -> None: ...


def generate_inputs(
    task: TaskSpec,
    model: CachedModel,
    gen: InputGenConfig,
    filters: InputFilterConfig,
    seed: int,
    on_round: Callable[[list[dict]], None] | None = None,
    checks: Sequence[Check] = (),
) -> list[dict]:
    """Run every round and return one record per candidate input: kept or dropped, and why.
    `checks` run after the input filters, in order; the first drop decides."""
    demo_inputs = [e.input for e in task.examples]
    stops = input_stops(gen.prompt, demo_inputs)
    demo_answers = {e.input: e.output for e in task.examples}
    stages = input_stages(task, filters, checks)
    pool: list[str] = []
    records: list[dict] = []
    rounds = progress_bar("writing inputs", total=gen.rounds_for(task), unit="round", disable=not model.progress)

    def round_requests(round_index: int) -> tuple[list[Request], list[str | None]]:
        rng = random.Random(derive_seed(seed, "inputs", round_index))
        requests, labels = [], []
        for slot in range(gen.prompts_per_round):
            demos = rng.sample(demo_inputs, len(demo_inputs))
            k = rng.randint(1, min(len(pool), gen.max_earlier_examples)) if pool and gen.max_earlier_examples else 0
            earlier = rng.sample(pool, k)
            label = rng.choice(task.labels) if task.is_classification and task.labels else None
            params = SamplingParams(
                temperature=gen.temperature,
                top_k=gen.top_k,
                top_p=gen.top_p,
                max_new_tokens=gen.max_new_tokens,
                n=1,
                stop=stops,
                seed=derive_seed(seed, "inputs", round_index, slot),
            )
            requests.append(Request(input_generation_messages(task.instruction, demos, earlier, label, gen.prompt, demo_answers), params))
            labels.append(label)
        return requests, labels

    def filter_round(round_index: int, labels: list[str | None], completions) -> None:
        if isinstance(completions, Future):
            completions = interruptible.result(completions)
        round_records = []
        for slot, (label, [completion]) in enumerate(zip(labels, completions)):
            text = clean_generated_input(completion.text)
            drop = admit(stages, text)
            if drop is None:
                pool.append(text)
            round_records.append(candidate_record(f"r{round_index:03d}s{slot:02d}", round_index, slot, text, label, completion.finish_reason, drop))
        records.extend(round_records)
        rounds.update()
        rounds.set_postfix(kept=len(pool), dropped=len(records) - len(pool))
        if on_round:
            on_round(round_records)

    # Rounds written but not yet filtered, oldest first: at most pool_lag of them between rounds.
    in_flight: deque = deque()
    writers = ThreadPoolExecutor(gen.pool_lag + 1, thread_name_prefix="write-inputs") if gen.pool_lag else None
    with rounds, writers or contextlib.nullcontext():
        for round_index in range(gen.rounds_for(task)):
            requests, labels = round_requests(round_index)
            if writers is None:
                completions = model.generate(requests, desc="inputs", progress=False)
            else:
                completions = writers.submit(model.generate, requests, desc="inputs", progress=False)
            in_flight.append((round_index, labels, completions))
            if len(in_flight) > gen.pool_lag:
                filter_round(*in_flight.popleft())
        while in_flight:
            filter_round(*in_flight.popleft())
    return records


def given_inputs(task: TaskSpec, path: str, filters: InputFilterConfig, checks: Sequence[Check] = ()) -> list[dict]:
    """The file's inputs as candidate records, in file order, through the same filters and checks
    as written inputs (a repeat is a duplicate, an eval input an eval copy)."""
    stages = input_stages(task, filters, checks)
    records = []
    for slot, raw in enumerate(read_input_file(path)):
        text = raw.strip()
        records.append(candidate_record(f"f{slot:05d}", 0, slot, text, None, None, admit(stages, text)))
    return records


def read_input_file(path: str) -> list[str]:
    """The inputs of a JSONL file (an 'input' string per line) or of a text file (one per line)."""
    file = Path(path)
    if not file.is_file():
        raise BadInputError(file, "synth.inputs.file", "an existing JSONL or text file of inputs", "no such file")
    try:
        texts = list(read_file(file, "input")) if file.suffix.lower() in (".jsonl", ".json") else file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise BadInputError(file, "synth.inputs.file", "UTF-8 text", f"a byte that is not UTF-8 at offset {err.start}") from None
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise BadInputError(file, "synth.inputs.file", "at least one input", "none")
    return texts


def candidate_record(record_id: str, round_index: int, slot: int, text: str, label: str | None, finish_reason: str | None, drop: Drop | None) -> dict:
    return {
        "id": record_id,
        "round": round_index,
        "slot": slot,
        "text": text,
        "pseudo_label": label,
        "finish_reason": finish_reason,
        "status": "kept" if drop is None else "dropped",
        "reason": None if drop is None else drop.reason,
        "detail": None if drop is None else drop.detail,
    }


def input_stages(task: TaskSpec, filters: InputFilterConfig, checks: Sequence[Check]) -> list[Check]:
    """The input filters, then `checks`, in the order a candidate meets them."""
    return [InputFilter(filters, [e.input for e in task.examples], [item.input for item in task.eval], task.is_classification), *checks]


def admit(stages: Sequence[Check], text: str) -> Drop | None:
    """The first stage's drop of `text`; with none, every stage accepts it (it joins the pool the
    duplicate and novelty checks compare with) and None is returned."""
    for stage in stages:
        if (drop := stage.check(text)) is not None:
            return drop
    for stage in stages:
        stage.accept(text)
    return None

"""SELF-GUIDE (Zhao et al. 2024): a model writes and labels data for one task, then learns from it.

The model writes inputs from the task's demos, labels them by in-context learning, and is
finetuned on what survives (docs/methods.md). With a teacher, the teacher writes and labels: the paper's
teacher-distillation baseline.

    write inputs (rounds of prompts)    -> input filters, then near-duplicates and eval overlap
      (or read them: synth.inputs.file)
    annotate (n samples per kept input) -> output filters, vote (or label scoring)
    balance classes (classification)    -> dataset.jsonl
    self-label diagnostic: the same labelling on gold items, scored

Files in `<run>/synth/`:
  inputs.jsonl       every candidate input, kept or dropped with its reason (written per round)
  annotations.jsonl  every labelled input with its samples, their fates and the vote
  dataset.jsonl      the final pairs with provenance
  drops.jsonl        every drop of an input, a sample or a pair, with its stage and reason
  summary.json/.md   the funnel per stage and reason, and the label counts

With `pipeline` on, each round's kept inputs are labelled (in a second thread) while the next
rounds are written: writing needs only the pool after the input filters, never the labels. The
annotations are put together in round order, so the files are those of serial rounds (given
batch-independent sampling: float32, or model.batch_invariant). Label scores are not pipelined:
see SelfGuideConfig.pipeline. The two threads register as producers of the model (CachedModel.producer),
so a round's labelling call and the next round's writing call meet and share one backend call.
The labelling thread is a daemon that the main thread never waits for on an error or Ctrl-C: the
labelling in progress is given up (its finished model calls are cached) and queued rounds are
cancelled.
"""

from __future__ import annotations

import contextlib
import queue
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import Literal

from pydantic import Field

from selfguide import interruptible, layout
from selfguide.errors import BudgetExceeded
from selfguide.io import append_jsonl, read_jsonl, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, models_summary, register, require_task
from selfguide.plan import Calls
from selfguide.stages.annotate import OutputGenConfig, annotate, uses_label_scores
from selfguide.stages.filters import InputFilterConfig
from selfguide.stages.funnel import stage_row
from selfguide.stages.near_dup import NearDupConfig, NearDupFilter
from selfguide.stages.self_label import SelfLabelConfig, self_label_accuracy, self_label_calls
from selfguide.stages.vote import balance_classes
from selfguide.stages.write_inputs import InputGenConfig, generate_inputs, given_inputs, read_input_file
from selfguide.summary import FILE_SOURCE
from selfguide.tasks.spec import TaskSpec


class SelfGuideConfig(MethodConfig):
    method: Literal["self-guide"] = "self-guide"
    inputs: InputGenConfig = Field(default_factory=InputGenConfig)
    input_filters: InputFilterConfig = Field(default_factory=InputFilterConfig)
    near_dup: NearDupConfig = Field(
        default_factory=lambda: NearDupConfig(enabled=False),
        description="After the input filters. The paper drops exact duplicates only, so the ROUGE-L novelty check is off; "
        "decontamination (inputs that reproduce an n-gram of an eval input) is on.",
    )
    outputs: OutputGenConfig = Field(default_factory=OutputGenConfig)
    self_label: SelfLabelConfig = Field(default_factory=SelfLabelConfig)
    demo_copies: int = Field(
        0,
        ge=0,
        description="Add each demo to the training pairs this many times (0 = off, the paper): the demos are the only gold "
        "pairs there are, and the copies weight them against the self-labelled ones. Not in the paper.",
    )
    pipeline: bool = Field(
        False,
        description="Label each round's kept inputs while the next rounds are written, and run the self-label diagnostic "
        "meanwhile, so an in-process model's calls merge into shared batches and a server gets both at once. The same "
        "data as serial rounds; off (default): label everything after the last round, in one call with the largest batches, "
        "which was faster on a CPU (SmolLM2, task036, 4 rounds: pipelined 0.83x serial); meant for GPUs and servers. Labelling by label scores always waits for "
        "the last round: a score's last float bits depend on which prompts share its batch, and with `calibrate` every "
        "input's probabilities depend on all the others.",
    )
    pipeline_gather_ms: float = Field(
        20.0,
        ge=0,
        description="With `pipeline`: how long a call to an in-process model waits for the other thread's call, so that "
        "a round's labelling and the next round's writing share one backend call (and its batches). Waits only while "
        "both threads have work.",
    )


def run(ctx: MethodContext, config: SelfGuideConfig) -> dict:
    """Every stage in order; each writes its rows as it finishes. Returns the funnel summary."""
    task, writer = require_task(ctx), ctx.writer
    inputs_path = ctx.out_dir / layout.INPUTS
    write_jsonl(inputs_path, [])
    # Demo inputs start the novelty pool: a near-copy of a demo teaches nothing new.
    eval_texts = [item.input for item in task.eval] + list(ctx.eval_texts)
    near_dup = NearDupFilter(config.near_dup, eval_texts, accepted=[e.input for e in task.examples])
    outputs = config.outputs
    scored = task.is_classification and bool(task.labels) and uses_label_scores(outputs, writer)
    pipelined = config.pipeline and not scored  # each round labelled on its own
    labelled: list[Future] = []  # each round's annotations, in round order
    annotator = Worker("annotate") if config.pipeline else None
    gather = config.pipeline_gather_ms / 1000

    def in_step(fn: Callable, *args, **kwargs):
        """`fn` in the labelling thread, its model calls in step with the writing thread's."""
        with writer.producer(gather):
            return fn(*args, **kwargs)

    def on_round(rows: list[dict]) -> None:
        append_jsonl(inputs_path, rows)
        if not pipelined:
            return
        for future in labelled:  # a failed round fails the run now, not after the last round
            if future.done() and future.exception() is not None:
                raise future.exception()
        kept = [r for r in rows if r["status"] == "kept"]
        if kept:
            # No bar per round: the rounds' bar shows the progress.
            labelled.append(annotator.submit(in_step, annotate, task, kept, writer, outputs, ctx.seed, progress=False))

    try:
        self_labelled = annotator.submit(in_step, self_label_accuracy, task, writer, outputs, config.self_label, ctx.seed) if annotator else None
        with writer.producer(gather) if annotator else contextlib.nullcontext():
            if config.inputs.file:
                candidates = given_inputs(task, config.inputs.file, config.input_filters, checks=[near_dup])
                on_round(candidates)
            else:
                candidates = generate_inputs(task, writer, config.inputs, config.input_filters, ctx.seed, on_round=on_round, checks=[near_dup])
        # Before the labels are scored: two scoring calls at once would share batches.
        self_label = interruptible.result(self_labelled) if self_labelled else None
        if pipelined:
            annotations = [a for future in labelled for a in interruptible.result(future)]
        else:
            annotations = annotate(task, [r for r in candidates if r["status"] == "kept"], writer, outputs, ctx.seed)
    except BudgetExceeded:
        if annotator is not None:
            annotator.close(wait=True)  # a clean stop: the labelling in progress is within the budget; keep it
        raise
    finally:
        if annotator is not None:
            annotator.close()  # Ctrl-C or a fatal error: the labelling in progress is given up
    write_jsonl(ctx.out_dir / layout.ANNOTATIONS, annotations)
    voted = [a for a in annotations if a["status"] == "kept"]
    if task.is_classification and outputs.balance_classes:
        pairs, unbalanced = balance_classes(voted, ctx.seed)
    else:
        pairs, unbalanced = voted, []

    by_id = {r["id"]: r for r in candidates}
    dataset = [dataset_row(pair, by_id[pair["input_id"]]) for pair in pairs] + demo_rows(task, config.demo_copies)
    write_jsonl(ctx.out_dir / layout.DATASET, dataset)
    write_jsonl(ctx.out_dir / layout.DROPS, drop_rows(candidates, annotations, unbalanced))
    summary = summarize(task, candidates, annotations, unbalanced, dataset)
    summary["self_label_accuracy"] = self_label if self_labelled else self_label_accuracy(task, writer, outputs, config.self_label, ctx.seed)
    if config.inputs.file:
        summary["models"] = {**models_summary(ctx), "wrote": f"{FILE_SOURCE}{config.inputs.file}"}
    return summary


def plan(ctx: MethodContext, config: SelfGuideConfig) -> dict[str, Calls]:
    """One call per input prompt (none for a file's inputs), one per kept input (known once
    inputs.jsonl is complete), one per self-label case."""
    task = require_task(ctx)
    attempts = len(read_input_file(config.inputs.file)) if config.inputs.file else config.inputs.attempts(task)
    kept = kept_inputs_on_disk(ctx, attempts)
    outputs = config.outputs
    scored = task.is_classification and bool(task.labels) and uses_label_scores(outputs, ctx.writer)
    tokens_per_input = 0 if scored else outputs.n * outputs.max_new_tokens
    written = 0 if config.inputs.file else attempts
    return {
        "inputs": Calls.exact(written, written * config.inputs.max_new_tokens),
        "annotate": Calls(kept or 0, attempts if kept is None else kept, (attempts if kept is None else kept) * tokens_per_input),
        "self-label diagnostic": Calls.exact(self_label_calls(task, config.self_label, ctx.seed)),
    }


register(SelfGuideConfig, run=run, plan=plan, title="SELF-GUIDE", paper="[SELF-GUIDE](https://arxiv.org/abs/2407.12874) (Zhao et al., COLM 2024)")


# ---- helpers ---------------------------------------------------------------------------------


class Worker:
    """Runs submitted functions one after another in a daemon thread. Unlike a thread pool's
    worker it is never joined, neither by `close` nor at interpreter exit, so an error or Ctrl-C
    in the caller does not wait for the function in progress."""

    def __init__(self, name: str):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._futures: list[Future] = []
        interruptible.work_thread(self._work, name)

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        future: Future = Future()
        self._futures.append(future)
        self._tasks.put((future, fn, args, kwargs))
        return future

    def close(self, wait: bool = False) -> None:
        """Cancel what has not started; the thread ends after what has (or with the process).
        `wait`: wait for that too."""
        for future in self._futures:
            future.cancel()
        self._tasks.put(None)
        if wait:
            interruptible.wait_all(self._futures)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args, kwargs = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:  # handed to whoever waits for the result
                future.set_exception(err)


def kept_inputs_on_disk(ctx: MethodContext, attempts: int) -> int | None:
    """Kept inputs of an earlier run whose input stage finished, else None (not known yet)."""
    path = ctx.out_dir / layout.INPUTS
    rows = read_jsonl(path) if path.exists() else []
    return sum(r["status"] == "kept" for r in rows) if len(rows) == attempts else None


def dataset_row(pair: dict, candidate: dict) -> dict:
    vote = pair["vote"]
    return {
        "id": pair["input_id"],
        "input": pair["input"],
        "output": pair["output"],
        "provenance": {
            "round": candidate["round"],
            "slot": candidate["slot"],
            "pseudo_label": candidate["pseudo_label"],
            "votes": vote["count"],
            "valid_samples": vote["valid"],
            "samples": len(pair["samples"]),
            "vote_share": round(vote["share"], 4),
        },
    }


def demo_rows(task: TaskSpec, copies: int) -> list[dict]:
    """Each demo `copies` times, as training pairs."""
    return [
        {"id": f"demo{i}-{copy}", "input": demo.input, "output": demo.output, "provenance": {"demo": True}}
        for copy in range(copies)
        for i, demo in enumerate(task.examples)
    ]


def drop_rows(candidates: list[dict], annotations: list[dict], unbalanced: list[dict]) -> list[dict]:
    rows = []
    for r in candidates:
        if r["status"] == "dropped":
            rows.append({"kind": "input", "stage": "input_filter", "input_id": r["id"], "reason": r["reason"], "detail": r["detail"], "text": r["text"]})
    for a in annotations:
        for j, s in enumerate(a["samples"]):
            if s["status"] == "dropped":
                rows.append({"kind": "sample", "stage": "output_filter", "input_id": a["input_id"], "sample": j, "reason": s["reason"], "detail": s["detail"], "text": s["text"]})
        if a["status"] == "dropped":
            rows.append({"kind": "pair", "stage": "vote", "input_id": a["input_id"], "reason": a["reason"], "detail": a["detail"], "text": a["input"]})
    for p in unbalanced:
        rows.append({"kind": "pair", "stage": "class_balance", "input_id": p["input_id"], "reason": "class_balance", "detail": p["output"], "text": p["input"]})
    return rows


def summarize(task: TaskSpec, candidates: list[dict], annotations: list[dict], unbalanced: list[dict], dataset: list[dict]) -> dict:
    samples = [s for a in annotations for s in a["samples"]]
    voted = [a for a in annotations if a["status"] == "kept"]
    stages = [
        stage_row("input_filter", "candidate input", [(r["status"], r["reason"]) for r in candidates]),
        stage_row("output_filter", "sample", [(s["status"], s["reason"]) for s in samples]),
        stage_row("vote", "labelled input", [(a["status"], a["reason"]) for a in annotations]),
    ]
    if task.is_classification:
        unbalanced_ids = {p["input_id"] for p in unbalanced}
        stages.append(
            stage_row("class_balance", "pair", [("dropped", "class_balance") if a["input_id"] in unbalanced_ids else ("kept", None) for a in voted])
        )
    summary = {"task": task.name, "type": task.type, "stages": stages, "pairs": len(dataset)}
    if demos := sum(bool(row["provenance"].get("demo")) for row in dataset):
        summary["demo_pairs"] = demos
    if task.is_classification:
        summary["labels"] = {
            # none for a file's inputs: the model was not asked for an input of a given label
            "pseudo_labels_of_kept_inputs": dict(Counter(r["pseudo_label"] for r in candidates if r["status"] == "kept" and r["pseudo_label"] is not None)),
            "voted": dict(Counter(a["output"] for a in voted)),
            "final": dict(Counter(row["output"] for row in dataset)),
            "missing_from_final": [label for label in task.labels or [] if label not in {row["output"] for row in dataset}],
        }
    return summary

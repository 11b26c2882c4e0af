"""ReBase (Ge et al. 2024): retrieve rows of existing datasets that fit the task, and rewrite each into it.

A datastore of rows from many datasets (SuperNI task files by default; local JSONL and `datasets`
datasets too) is indexed once and shared by every task. For a task, rows are ranked by the
instruction (against each dataset's description) and by the demos' inputs and outputs, and the
best are kept. The model, or a teacher, rewrites each kept row into one example of the task, in
the demos' format (optionally with a chain-of-thought rationale before the answer). The examples
then pass the same filters as SELF-GUIDE's: input filters, eval overlap, output filters, and
either the rewritten answer or SELF-GUIDE's sampled vote, then class balance.

Leakage, on by default both ways: the task's own group (its SuperNI file) is left out of the
datastore's ranking, since its instances are its eval set, and a retrieved row that reproduces
an eval input (a 13-word n-gram, or the whole input) is dropped as `eval_overlap` before any
model call, as is a rewritten input after it.

    retrieve (ranking, no model)          -> duplicate rows, eval overlap
    transform (1 call per kept row)       -> unparseable, input filters, eval overlap, label/output filters
    vote (labels: vote, n samples each)   -> output filters, vote
    balance classes (classification)      -> dataset.jsonl

Files in `<run>/synth/`:
  retrieved.jsonl    every retrieved row with its score parts, kept or dropped and why
  transformed.jsonl  every rewrite: the reply, the parsed example, kept or dropped and why
  annotations.jsonl  (labels: vote) the sampled labels of every kept example
  dataset.jsonl, drops.jsonl
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfguide import layout
from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import derive_seed
from selfguide.datastore.dense import DEFAULT_ENCODER
from selfguide.datastore.search import rank_rows
from selfguide.datastore.store import DatastoreConfig, open_datastore, row_text
from selfguide.io import read_jsonl, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, register, require_task
from selfguide.stages.funnel import stage_row
from selfguide.stages.near_dup import EVAL_OVERLAP, Decontaminator, NearDupConfig, NearDupFilter
from selfguide.plan import Calls
from selfguide.stages.filters import Drop, InputFilter, InputFilterConfig, length_window, noise_terms_for, normalize_label
from selfguide.stages.annotate import OutputGenConfig, annotate, check_sample, uses_label_scores
from selfguide.stages.vote import balance_classes
from selfguide.prompts.rebase import FIELD_CHARS, parse_transform, reply_prefill, transform_messages
from selfguide.tasks.spec import TaskSpec

RETRIEVED = "retrieved.jsonl"
TRANSFORMED = "transformed.jsonl"


class TransformConfig(BaseModel):
    """How a retrieved row is rewritten into an example of the task."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.0, ge=0, description="0: greedy, as ReBase's released code calls its OpenAI model.")
    max_new_tokens: int = Field(400, ge=1, description="Upper bound per rewrite (a JSON object with an input and an output).")
    field_chars: int = Field(FIELD_CHARS, ge=20, description="Each retrieved field is shown up to this many characters (ReBase: 250).")
    prefill: bool = Field(
        True, description="Open the reply with the JSON object's first key, so a small model writes the object rather than talking about it (ReBase's large models needed no help)."
    )
    chain_of_thought: bool = Field(False, description="Ask for a rationale before the answer (ReBase does for reasoning tasks).")
    rationale_in_output: bool = Field(
        False, description="Train on 'rationale\\nAnswer: answer' instead of the answer alone (chain_of_thought only; exact-match metrics then need the answer extracted)."
    )


class ReBaseConfig(MethodConfig):
    method: Literal["rebase"] = "rebase"
    datastore: DatastoreConfig = Field(default_factory=DatastoreConfig)
    retriever: Literal["bm25", "dense"] = Field("bm25", description="bm25 (bm25s); dense: sentence embeddings (ReBase's choice; the `dense` extra).")
    encoder: str = Field(DEFAULT_ENCODER, description="Dense encoder: all-MiniLM-L6-v2 (packaged) or a local sentence-transformers folder.")
    rows: int = Field(3000, ge=1, description="Rows retrieved and rewritten (ReBase: 3,000 per task).")
    exclude_own_task: bool = Field(True, description="Leave the task's own group (SuperNI: its task file, by name) out of retrieval: its instances are its eval set.")
    exclude_groups: list[str] = Field(default_factory=list, description="More groups (SuperNI task names, JSONL groups, datasets) to leave out.")
    decontaminate: bool = Field(True, description="Drop retrieved rows that reproduce an eval input (a 13-word n-gram or the whole input).")
    transform: TransformConfig = Field(default_factory=TransformConfig)
    input_filters: InputFilterConfig = Field(default_factory=InputFilterConfig)
    near_dup: NearDupConfig = Field(
        default_factory=lambda: NearDupConfig(enabled=False),
        description="On rewritten inputs: eval overlap on, ROUGE-L novelty off (ReBase keeps every rewrite).",
    )
    labels: Literal["transform", "vote"] = Field(
        "transform", description="transform: the rewrite's own answer (ReBase); vote: SELF-GUIDE's sampled labels of the rewritten inputs."
    )
    outputs: OutputGenConfig = Field(default_factory=OutputGenConfig, description="Output filters for every answer, and the sampling and vote with labels: vote.")


def run(ctx: MethodContext, config: ReBaseConfig) -> dict:
    task = require_task(ctx)
    store = open_datastore(config.datastore, progress=ctx.progress)
    retrieved = retrieve(task, store, config, ctx.eval_texts)
    write_jsonl(ctx.out_dir / RETRIEVED, retrieved)

    kept_rows = [r for r in retrieved if r["status"] == "kept"]
    transformed = transform(task, kept_rows, ctx, config)
    write_jsonl(ctx.out_dir / TRANSFORMED, transformed)
    examples = [t for t in transformed if t["status"] == "kept"]

    annotations: list[dict] = []
    if config.labels == "vote":
        annotations = annotate(task, [{"id": t["id"], "text": t["input"], "pseudo_label": t["output"]} for t in examples], ctx.writer, config.outputs, ctx.seed)
        write_jsonl(ctx.out_dir / layout.ANNOTATIONS, annotations)
        labelled = [{"input_id": a["input_id"], "input": a["input"], "output": a["output"]} for a in annotations if a["status"] == "kept"]
    else:
        labelled = [{"input_id": t["id"], "input": t["input"], "output": t["output"]} for t in examples]
    if task.is_classification and config.outputs.balance_classes:
        pairs, unbalanced = balance_classes(labelled, ctx.seed)
    else:
        pairs, unbalanced = labelled, []

    by_id = {t["id"]: t for t in transformed}
    dataset = [dataset_row(pair, by_id[pair["input_id"]], config) for pair in pairs]
    write_jsonl(ctx.out_dir / layout.DATASET, dataset)
    write_jsonl(ctx.out_dir / layout.DROPS, drop_rows(retrieved, transformed, annotations, unbalanced))
    return summarize(task, store, config, retrieved, transformed, annotations, labelled, unbalanced, dataset)


def plan(ctx: MethodContext, config: ReBaseConfig) -> dict[str, Calls]:
    """Retrieval needs no model, so the plan ranks the rows itself (building the datastore if it
    is not built yet) and the transform is exact; the vote is a range until transformed.jsonl exists."""
    task = require_task(ctx)
    retrieved = retrieve(task, open_datastore(config.datastore), config, ctx.eval_texts)
    rows = sum(r["status"] == "kept" for r in retrieved)
    stages = {"transform": Calls.exact(rows, rows * config.transform.max_new_tokens)}
    if config.labels == "vote":
        path = ctx.out_dir / TRANSFORMED
        done = read_jsonl(path) if path.exists() else []
        kept = sum(t["status"] == "kept" for t in done) if len(done) == rows else None
        scored = task.is_classification and bool(task.labels) and uses_label_scores(config.outputs, ctx.writer)
        per_input = 0 if scored else config.outputs.n * config.outputs.max_new_tokens
        at_most = rows if kept is None else kept
        stages["vote"] = Calls(kept or 0, at_most, at_most * per_input)
    return stages


register(ReBaseConfig, run=run, plan=plan, title="ReBase", paper="[ReBase](https://arxiv.org/abs/2404.14361) (Ge et al., 2024)")


# ---- stages ------------------------------------------------------------------------------------


def excluded_groups(task: TaskSpec, config: ReBaseConfig) -> list[str]:
    return ([task.name] if config.exclude_own_task else []) + list(config.exclude_groups)


def retrieve(task: TaskSpec, store, config: ReBaseConfig, extra_eval: tuple[str, ...] = ()) -> list[dict]:
    """The top rows by ReBase's score, each kept or dropped: a repeat of an earlier row's input, or
    (decontaminate) a row reproducing an eval input."""
    demos = [(e.input, e.output) for e in task.examples]
    hits = rank_rows(store, task.instruction, demos, config.rows, retriever=config.retriever, exclude_groups=excluded_groups(task, config), encoder=config.encoder)
    eval_texts = [item.input for item in task.eval] + list(extra_eval)
    decontaminator = Decontaminator(eval_texts, config.near_dup.ngram, config.near_dup.min_ngram, config.near_dup.max_overlap)
    eval_inputs = {text.strip() for text in eval_texts}
    seen: set[str] = set()
    records = []
    for hit, row in zip(hits, store.rows([h.row_id for h in hits])):
        drop = None
        if row.input.strip() in seen:
            drop = Drop("duplicate_row", "same input as a higher-ranked row")
        elif config.decontaminate and row.input.strip() in eval_inputs:
            drop = Drop(EVAL_OVERLAP, "the row's input is an eval input")
        elif config.decontaminate:
            clean, share, item = decontaminator.check(row_text(row.input, row.output))
            drop = None if clean else Drop(EVAL_OVERLAP, f"{share:.2f} of eval item {item}'s n-grams")
        seen.add(row.input.strip())
        records.append(
            {
                "row_id": row.id,
                "group": row.group,
                "score": round(hit.score, 6),
                "parts": {"instruction": round(hit.instruction, 6), "inputs": round(hit.inputs, 6), "outputs": round(hit.outputs, 6)},
                "input": row.input,
                "output": row.output,
                "status": "kept" if drop is None else "dropped",
                "reason": None if drop is None else drop.reason,
                "detail": None if drop is None else drop.detail,
            }
        )
    return records


def transform(task: TaskSpec, rows: list[dict], ctx: MethodContext, config: ReBaseConfig) -> list[dict]:
    """One rewrite per row, parsed and filtered like any written example."""
    demos = [(e.input, e.output) for e in task.examples]
    cfg = config.transform
    requests = [
        Request(
            transform_messages(task.instruction, demos, row["input"], row["output"], cfg.chain_of_thought, cfg.field_chars, cfg.prefill),
            SamplingParams(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, n=1, seed=derive_seed(ctx.seed, "rebase-transform", row["row_id"])),
        )
        for row in rows
    ]
    replies = ctx.writer.generate(requests, desc="rewriting retrieved rows") if requests else []
    input_filter = InputFilter(config.input_filters, [d for d, _ in demos], [item.input for item in task.eval], task.is_classification)
    near_dup = NearDupFilter(config.near_dup, [item.input for item in task.eval] + list(ctx.eval_texts), accepted=[d for d, _ in demos])
    window = length_window([len(o) for _, o in demos], config.outputs.degenerate_width)
    terms = noise_terms_for(config.outputs.noise, task.is_classification)
    records = []
    for row, [reply] in zip(rows, replies):
        parsed = parse_transform((reply_prefill(cfg.chain_of_thought) if cfg.prefill else "") + reply.text, cfg.chain_of_thought)
        example_input = (parsed or {}).get("input", "")
        output = (parsed or {}).get("output", "")
        drop = None
        if parsed is None:
            drop = Drop("unparseable", "no JSON object with input and output")
        elif drop := input_filter.check(example_input) or near_dup.check(example_input):
            pass
        elif task.is_classification and task.labels:
            label = normalize_label(output, task.labels)
            drop = Drop("not_a_label", output[:60]) if label is None else None
            output = label or output
        else:
            drop = check_sample(output, task, config.outputs, window, terms)
        if drop is None:
            input_filter.accept(example_input)
            near_dup.accept(example_input)
        records.append(
            {
                "id": f"row-{row['row_id']}",
                "row_id": row["row_id"],
                "group": row["group"],
                "reply": reply.text,
                "input": example_input.strip(),
                "output": output.strip(),
                "rationale": (parsed or {}).get("rationale"),
                "status": "kept" if drop is None else "dropped",
                "reason": None if drop is None else drop.reason,
                "detail": None if drop is None else drop.detail,
            }
        )
    return records


# ---- files and accounting ----------------------------------------------------------------------


def dataset_row(pair: dict, example: dict, config: ReBaseConfig) -> dict:
    output = pair["output"]
    if config.transform.chain_of_thought and config.transform.rationale_in_output and example.get("rationale"):
        output = f"{example['rationale']}\nAnswer: {output}"
    return {
        "id": pair["input_id"],
        "input": pair["input"],
        "output": output,
        "provenance": {"row_id": example["row_id"], "group": example["group"], "labels": config.labels, "rationale": example.get("rationale")},
    }


def drop_rows(retrieved: list[dict], transformed: list[dict], annotations: list[dict], unbalanced: list[dict]) -> list[dict]:
    rows = []
    for r in retrieved:
        if r["status"] == "dropped":
            rows.append({"kind": "row", "stage": "retrieve", "input_id": f"row-{r['row_id']}", "reason": r["reason"], "detail": r["detail"], "text": r["input"]})
    for t in transformed:
        if t["status"] == "dropped":
            rows.append({"kind": "example", "stage": "transform", "input_id": t["id"], "reason": t["reason"], "detail": t["detail"], "text": t["input"] or t["reply"]})
    for a in annotations:
        for j, s in enumerate(a["samples"]):
            if s["status"] == "dropped":
                rows.append({"kind": "sample", "stage": "output_filter", "input_id": a["input_id"], "sample": j, "reason": s["reason"], "detail": s["detail"], "text": s["text"]})
        if a["status"] == "dropped":
            rows.append({"kind": "pair", "stage": "vote", "input_id": a["input_id"], "reason": a["reason"], "detail": a["detail"], "text": a["input"]})
    for p in unbalanced:
        rows.append({"kind": "pair", "stage": "class_balance", "input_id": p["input_id"], "reason": "class_balance", "detail": p["output"], "text": p["input"]})
    return rows


def summarize(task, store, config, retrieved, transformed, annotations, labelled, unbalanced, dataset) -> dict:
    stages = [
        stage_row("retrieve", "retrieved row", [(r["status"], r["reason"]) for r in retrieved]),
        stage_row("transform", "rewritten row", [(t["status"], t["reason"]) for t in transformed]),
    ]
    if config.labels == "vote":
        stages.append(stage_row("output_filter", "sample", [(s["status"], s["reason"]) for a in annotations for s in a["samples"]]))
        stages.append(stage_row("vote", "labelled input", [(a["status"], a["reason"]) for a in annotations]))
    if task.is_classification and config.outputs.balance_classes:
        dropped = {p["input_id"] for p in unbalanced}
        stages.append(stage_row("class_balance", "pair", [("dropped", "class_balance") if p["input_id"] in dropped else ("kept", None) for p in labelled]))
    summary = {
        "task": task.name,
        "type": task.type,
        "stages": stages,
        "pairs": len(dataset),
        "datastore": {
            "key": store.key,
            "rows": len(store),
            "groups": len(store.groups),
            "retriever": config.retriever,
            "excluded_groups": excluded_groups(task, config),
            "kept_rows_by_group": dict(Counter(r["group"] for r in retrieved if r["status"] == "kept").most_common(10)),
        },
    }
    if task.is_classification:
        final = {row["output"] for row in dataset}
        summary["labels"] = {
            "pseudo_labels_of_kept_inputs": dict(Counter(t["output"] for t in transformed if t["status"] == "kept")),
            "voted": dict(Counter(p["output"] for p in labelled)),
            "final": dict(Counter(row["output"] for row in dataset)),
            "missing_from_final": [label for label in task.labels or [] if label not in final],
        }
    return summary

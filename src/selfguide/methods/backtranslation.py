"""Instruction backtranslation (Li et al. 2023, Humpback): instructions written for existing text, kept when the model rates them highly.

Seed pairs (instruction, output) train two models from the base weights: a backward model M_yx on
output -> instruction, and a forward model M0 on instruction -> output. M_yx writes an instruction
for every segment of an unlabelled corpus (self-augmentation); M0 rates each (instruction, segment)
pair 1-5 with the paper's rating prompt, and pairs rated at or above the threshold (5) are kept
(self-curation). With more rounds, M1 is trained on the seeds plus the curated pairs and rates the
candidates again, and so on; the data of the last round, with the seeds, is the dataset the run
trains on (M_k, the paper's final model).

Two methods share the stages:
  backtranslation       general: seeds from the Self-Instruct seed tasks (or a JSONL of
                        {instruction, input, output}); rows carry their own instruction.
  backtranslation-task  task-focused: the task's demos are the seeds, the backward model writes
                        task inputs for segments that fit the task's output side (the demo outputs'
                        length window, no noise), and rows are task pairs (generation tasks only).

    corpus (no model)               -> too_short, too_long, duplicate, eval_overlap (task: fit)
    augment (1 call per segment)    -> empty_instruction, eval_overlap
    curate round r (1 call each)    -> no_score, low_score
    dataset: seeds + pairs kept by the last round

Files in `<run>/synth/`:
  corpus.jsonl       every segment, kept or dropped and why
  candidates.jsonl   every written instruction with its score per round, kept or dropped and why
  models/            backward/, m0/, m1/ ...: each model's training pairs and adapter
  dataset.jsonl, drops.jsonl
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfguide import layout
from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.errors import BadInputError
from selfguide.io import describe, read_jsonl, read_jsonl_objects, write_jsonl
from selfguide.methods import MethodConfig, MethodContext, register
from selfguide.prompts.task import task_messages
from selfguide.stages.finetune import base_weights, finetune, finetuned_model
from selfguide.stages.funnel import stage_row
from selfguide.stages.near_dup import EVAL_OVERLAP, Decontaminator
from selfguide.plan import Calls
from selfguide.prompts.backtranslation import ASSISTANT, BACKWARD, SCORE_PREFILL, parse_score, rating_request, task_backward, task_instruction
from selfguide.stages.corpus import CorpusConfig, segments
from selfguide.stages.filters import Drop, NoiseConfig, check_length, check_noise, length_window, noise_terms_for
from selfguide.tasks.spec import TaskSpec
from selfguide.train.config import TrainConfig

CORPUS = "corpus.jsonl"
CANDIDATES = "candidates.jsonl"
MODELS = "models"
PAPER = "[Instruction backtranslation](https://arxiv.org/abs/2308.06259) (Li et al., ICLR 2024)"


class SamplingConfig(BaseModel):
    """Sampling of one stage; the defaults are those of the public Humpback reimplementation."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)


class BacktranslationBase(MethodConfig):
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="The unlabelled documents.")
    rounds: int = Field(1, ge=1, description="Curation rounds: M0 rates for round 1, M1 (seeds + round-1 data) for round 2, ... (paper: 2; 1 on a CPU).")
    threshold: int = Field(5, ge=1, le=5, description="Keep pairs rated at least this (paper: 5 for A_5, 4 for A_4).")
    include_seeds: bool = Field(True, description="Put the seed pairs in the dataset beside the curated ones (the paper trains on both).")
    max_seeds: int | None = Field(None, ge=1, description="Use the first this many seed pairs; unset: all.")
    decontaminate: bool = Field(True, description="Drop segments and written instructions that reproduce an eval item (13-word n-gram, GPT-3's rule).")
    augment: SamplingConfig = Field(default_factory=SamplingConfig, description="The backward model writing instructions.")
    curate: SamplingConfig = Field(default_factory=SamplingConfig, description="The forward models rating pairs.")
    curator: Literal["finetuned", "writer"] = Field(
        "finetuned",
        description="finetuned: M0, M1... trained here rate the pairs (the paper); writer: the run's model, or its teacher, rates "
        "them as it is (no curator training; every round then rates alike). A model finetuned on a few task demos rarely follows the rating prompt.",
    )
    score_first: bool = Field(
        False, description="Open the curator's reply with 'Score:' so a small model writes a score (the paper asks for reasoning first)."
    )
    base_model: str | None = Field(None, description="Weights M_yx, M0, M1... are finetuned from; unset: the student model's.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Finetuning of M_yx, M0, M1... (the run's own training makes the final model).")


class BacktranslationConfig(BacktranslationBase):
    method: Literal["backtranslation"] = "backtranslation"
    seed_file: str | None = Field(None, description="Seed pairs: Self-Instruct's seed_tasks.jsonl, or JSONL of {instruction, input, output}; unset: seed_tasks.jsonl in $SELFGUIDE_SELF_INSTRUCT.")


class TaskBacktranslationConfig(BacktranslationBase):
    method: Literal["backtranslation-task"] = "backtranslation-task"
    fit_length: bool = Field(True, description="Keep segments inside the demo outputs' mean +/- 2 std character window (the output side of the task).")
    degenerate_width: float = Field(0.5, gt=0, description="When that window is empty: mean x (1 +/- this).")
    noise: NoiseConfig = Field(default_factory=NoiseConfig, description="Segments with noise phrases or terms do not fit the output side.")


# ---- the two methods ---------------------------------------------------------------------------


@dataclass
class Spec:
    """What differs between the two methods."""

    backward_prompt: str  # the backward model's system turn
    backward_seeds: list[tuple[str, str]]  # (what the backward model learns to write, the output)
    forward_seeds: list[tuple[str, str]]  # (instruction, output): M0's training pairs
    eval_texts: list[str]  # what no segment or written text may reproduce
    instruction_of: Callable[[str], str]  # a written text as the forward models' instruction
    fit: Callable[[str], Drop | None] | None = None  # task-focused: does a segment fit the output side
    own_task: str | None = None  # task-focused: its SuperNI outputs are no corpus documents


def general_spec(ctx: MethodContext, config: BacktranslationConfig) -> Spec:
    from selfguide.tasks.self_instruct import SEED_TASKS_FILE, data_file

    check_corpus(config.corpus)  # before the seeds: without a corpus there is nothing to do at all
    seeds = read_seeds(data_file(config.seed_file, SEED_TASKS_FILE), config.max_seeds)
    return Spec(BACKWARD, seeds, seeds, list(ctx.eval_texts), instruction_of=lambda text: text)


def task_spec(ctx: MethodContext, config: TaskBacktranslationConfig) -> Spec:
    task = require_generation_task(ctx)
    demos = [(e.input, e.output) for e in task.examples][: config.max_seeds]
    window = length_window([len(output) for _, output in demos], config.degenerate_width)
    terms = noise_terms_for(config.noise, False)

    def fit(text: str) -> Drop | None:
        if config.fit_length and (drop := check_length(text, window)):
            return Drop(f"output_{drop.reason}", drop.detail)
        return check_noise(text, config.noise.phrases, terms) if config.noise.enabled else None

    return Spec(
        task_backward(task.instruction),
        demos,
        [(task_instruction(task.instruction, source_input), output) for source_input, output in demos],
        [item.input for item in task.eval] + [ref for item in task.eval for ref in item.references] + list(ctx.eval_texts),
        instruction_of=lambda text: task_instruction(task.instruction, text),
        fit=fit,
        own_task=task.name,
    )


def run_general(ctx: MethodContext, config: BacktranslationConfig) -> dict:
    return run_stages(ctx, config, general_spec(ctx, config), general_row)


def run_task(ctx: MethodContext, config: TaskBacktranslationConfig) -> dict:
    task = require_generation_task(ctx)
    return {"task": task.name, "type": task.type, **run_stages(ctx, config, task_spec(ctx, config), task_row)}


def plan_general(ctx: MethodContext, config: BacktranslationConfig) -> dict[str, Calls]:
    return plan_stages(ctx, config, general_spec(ctx, config))


def plan_task(ctx: MethodContext, config: TaskBacktranslationConfig) -> dict[str, Calls]:
    return plan_stages(ctx, config, task_spec(ctx, config))


register(BacktranslationConfig, run=run_general, plan=plan_general, general=True, title="Instruction backtranslation", paper=PAPER)
register(TaskBacktranslationConfig, run=run_task, plan=plan_task, title="Instruction backtranslation (task)", paper=PAPER)


# ---- the stages --------------------------------------------------------------------------------


def run_stages(ctx: MethodContext, config: BacktranslationBase, spec: Spec, make_row) -> dict:
    base = base_weights(ctx, config.base_model)
    models = ctx.out_dir / MODELS
    corpus = corpus_stage(config, spec)
    write_jsonl(ctx.out_dir / CORPUS, corpus)
    docs = [d for d in corpus if d["status"] == "kept"]
    train = config.train.seeded(ctx.seed)

    # Self-augmentation: M_yx learns output -> instruction, then writes one for every segment.
    backward_task = TaskSpec(name="backward", instruction=spec.backward_prompt, examples=[], type="generation")
    backward_dir = finetune(backward_task, [(output, written) for written, output in spec.backward_seeds], base, models / "backward", train, ctx.progress)
    candidates = with_model(base, backward_dir, ctx.model, lambda m: augment(docs, m, backward_task, config, ctx.seed, spec.eval_texts))

    # Self-curation: M0 (seeds), then M1 (seeds + curated), ... rate every candidate again.
    forward_task = TaskSpec(name="forward", instruction=ASSISTANT, examples=[], type="generation")
    kept = [c for c in candidates if c["status"] == "kept"]
    scored: list[dict] = []
    pairs = list(spec.forward_seeds)
    for r in range(1, config.rounds + 1):
        if config.curator == "writer":
            scored = curate(kept, ctx.writer, forward_task, spec, config, ctx.seed, r)
        else:
            curator_dir = finetune(forward_task, pairs, base, models / f"m{r - 1}", train, ctx.progress)
            scored = with_model(base, curator_dir, ctx.model, lambda m: curate(kept, m, forward_task, spec, config, ctx.seed, r))
        for candidate, rating in zip(kept, scored):
            candidate["scores"][str(r)] = rating["score"]
            candidate["replies"][str(r)] = rating["reply"]
        pairs = list(spec.forward_seeds) + [(spec.instruction_of(c["written"]), c["text"]) for c, s in zip(kept, scored) if s["drop"] is None]
    for candidate, rating in zip(kept, scored):  # the last round decides
        if rating["drop"] is not None:
            candidate.update(status="dropped", reason=rating["drop"].reason, detail=rating["drop"].detail)
    write_jsonl(ctx.out_dir / CANDIDATES, candidates)

    seeds = spec.backward_seeds if config.include_seeds else []
    dataset = [make_row(f"seed-{i}", written, output, {"seed": True}) for i, (written, output) in enumerate(seeds)]
    dataset += [
        make_row(c["id"], c["written"], c["text"], {"doc_id": c["doc_id"], "score": c["scores"][str(config.rounds)], "scores": c["scores"]})
        for c in candidates
        if c["status"] == "kept"
    ]
    write_jsonl(ctx.out_dir / layout.DATASET, dataset)
    write_jsonl(ctx.out_dir / layout.DROPS, drop_rows(corpus, candidates))
    return summarize(corpus, candidates, dataset, config, len(seeds))


def corpus_stage(config: BacktranslationBase, spec: Spec) -> list[dict]:
    decontaminator = Decontaminator(spec.eval_texts) if config.decontaminate and spec.eval_texts else None

    def check(text: str) -> Drop | None:
        if spec.fit and (drop := spec.fit(text)):
            return drop
        if decontaminator is not None and not (found := decontaminator.check(text))[0]:
            return Drop(EVAL_OVERLAP, f"{found[1]:.2f} of eval item {found[2]}'s n-grams")
        return None

    return segments(config.corpus, spec.own_task, check)


def augment(docs: list[dict], model: CachedModel, backward_task: TaskSpec, config: BacktranslationBase, seed: int, eval_texts: list[str]) -> list[dict]:
    """One written instruction per segment, from the backward model."""
    s = config.augment
    requests = [
        Request(
            task_messages(backward_task.instruction, [], doc["text"]),
            SamplingParams(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens, n=1, seed=derive_seed(seed, "backtranslation-augment", doc["id"])),
        )
        for doc in docs
    ]
    replies = model.generate(requests, desc="writing instructions") if requests else []
    decontaminator = Decontaminator(eval_texts) if config.decontaminate and eval_texts else None
    candidates = []
    for doc, [reply] in zip(docs, replies):
        written = reply.text.strip()
        drop = None if written else Drop("empty_instruction")
        if drop is None and decontaminator is not None:
            clean, share, item = decontaminator.check(written)
            drop = None if clean else Drop(EVAL_OVERLAP, f"{share:.2f} of eval item {item}'s n-grams")
        candidates.append(
            {
                "id": f"cand-{doc['id']}",
                "doc_id": doc["id"],
                "written": written,
                "text": doc["text"],
                "scores": {},
                "replies": {},
                "status": "kept" if drop is None else "dropped",
                "reason": None if drop is None else drop.reason,
                "detail": None if drop is None else drop.detail,
            }
        )
    return candidates


def curate(candidates: list[dict], model: CachedModel, forward_task: TaskSpec, spec: Spec, config: BacktranslationBase, seed: int, round_: int) -> list[dict]:
    """The curator's rating of every candidate: score (None when unparseable) and the drop, if any."""
    s = config.curate
    opening = [{"role": "assistant", "content": SCORE_PREFILL}] if config.score_first else []
    requests = [
        Request(
            task_messages(forward_task.instruction, [], rating_request(spec.instruction_of(c["written"]), c["text"])) + opening,
            SamplingParams(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens, n=1, seed=derive_seed(seed, "backtranslation-curate", round_, c["id"])),
        )
        for c in candidates
    ]
    replies = model.generate(requests, desc=f"rating pairs (round {round_})") if requests else []
    ratings = []
    for [reply] in replies:
        score = parse_score((SCORE_PREFILL if config.score_first else "") + reply.text)
        drop = Drop("no_score", reply.text.strip()[-60:]) if score is None else Drop("low_score", f"{score} < {config.threshold}") if score < config.threshold else None
        ratings.append({"score": score, "reply": reply.text, "drop": drop})
    return ratings


def with_model(base: str, model_dir: Path, like: CachedModel, work):
    """Run `work(model)` with the finetuned model loaded, then free it."""
    model = finetuned_model(base, model_dir, like)
    try:
        return work(model)
    finally:
        model.close()


def plan_stages(ctx: MethodContext, config: BacktranslationBase, spec: Spec) -> dict[str, Calls]:
    """The corpus stage needs no model, so augment is exact; curation is exact once candidates are
    written (every round rates the same kept candidates), else at most one call per segment."""
    docs = sum(d["status"] == "kept" for d in corpus_stage(config, spec))
    path = ctx.out_dir / CANDIDATES
    written = read_jsonl(path) if path.exists() else None
    kept = None if written is None or len(written) != docs else sum(c["reason"] in (None, "no_score", "low_score") for c in written)
    stages = {"augment": Calls.exact(docs, docs * config.augment.max_new_tokens)}
    for r in range(1, config.rounds + 1):
        at_most = docs if kept is None else kept
        stages[f"curate round {r}"] = Calls(kept or 0, at_most, at_most * config.curate.max_new_tokens)
    return stages


# ---- rows, seeds and accounting ----------------------------------------------------------------


def general_row(row_id: str, instruction: str, output: str, provenance: dict) -> dict:
    return {"id": row_id, "instruction": instruction, "input": "", "output": output, "provenance": provenance}


def task_row(row_id: str, task_input: str, output: str, provenance: dict) -> dict:
    return {"id": row_id, "input": task_input, "output": output, "provenance": provenance}


def read_seeds(path: Path, limit: int | None) -> list[tuple[str, str]]:
    """(instruction, output) pairs: Self-Instruct seed tasks (instruction + first instance) or
    {instruction, input, output} lines; a non-empty input is appended to the instruction."""
    expected = "a seed with a non-empty string instruction and output (Self-Instruct's seed_tasks.jsonl or {instruction, input, output})"
    seeds = []
    for lineno, row in read_jsonl_objects(path, "seed file (synth.seed_file, or seed_tasks.jsonl in $SELFGUIDE_SELF_INSTRUCT)", expected):
        instance = (row.get("instances") or [row])[0]
        instance = instance if isinstance(instance, dict) else {}
        instruction, output, source_input = row.get("instruction"), instance.get("output"), instance.get("input")
        if not isinstance(instruction, str) or not isinstance(output, str) or not instruction.strip() or not output.strip() or not isinstance(source_input or "", str):
            raise BadInputError(path, f"line {lineno}", expected)
        source_input = (source_input or "").strip()
        seeds.append((f"{instruction.strip()}\n\n{source_input}" if source_input else instruction.strip(), output.strip()))
    return seeds[:limit]


def check_corpus(corpus: CorpusConfig) -> None:
    """Some documents to read, and every file pattern matching something."""
    if not (corpus.paths or corpus.superni or corpus.dataset):
        raise BadInputError("synth.corpus", "paths", "documents to read: synth.corpus.paths, synth.corpus.superni or synth.corpus.dataset", "none")
    for pattern in corpus.paths:
        if not glob.glob(pattern) and not Path(pattern).exists():
            raise BadInputError("synth.corpus.paths", describe(pattern), "files that exist (a JSONL or text file, or a glob)", "no such file")


def require_generation_task(ctx: MethodContext) -> TaskSpec:
    if ctx.task is None:
        raise ValueError("backtranslation-task makes data for one task: the context has none")
    if ctx.task.is_classification:
        raise BadInputError(ctx.task.name, "task type", "a generation task: backtranslation-task writes inputs for documents as outputs, and a label is no document", "classification")
    return ctx.task


def drop_rows(corpus: list[dict], candidates: list[dict]) -> list[dict]:
    rows = [{"kind": "segment", "stage": "corpus", "input_id": d["id"], "reason": d["reason"], "detail": d["detail"], "text": d["text"]} for d in corpus if d["status"] == "dropped"]
    for c in candidates:
        if c["status"] == "dropped":
            stage = "augment" if c["reason"] in ("empty_instruction", EVAL_OVERLAP) else "curate"
            rows.append({"kind": "candidate", "stage": stage, "input_id": c["id"], "reason": c["reason"], "detail": c["detail"], "text": c["written"], "scores": c["scores"]})
    return rows


def summarize(corpus: list[dict], candidates: list[dict], dataset: list[dict], config: BacktranslationBase, n_seeds: int) -> dict:
    augmented = [c for c in candidates if c["reason"] not in ("empty_instruction", EVAL_OVERLAP)]
    stages = [
        stage_row("corpus", "segment", [(d["status"], d["reason"]) for d in corpus]),
        stage_row("augment", "segment", [("dropped", c["reason"]) if c["reason"] in ("empty_instruction", EVAL_OVERLAP) else ("kept", None) for c in candidates]),
        stage_row(f"curate (round {config.rounds})", "candidate", [(c["status"], c["reason"]) for c in augmented]),
    ]
    return {
        "stages": stages,
        "pairs": len(dataset),
        "seed_pairs": n_seeds,
        "curated_pairs": len(dataset) - n_seeds,
        "scores_by_round": {str(r): dict(sorted(Counter(str(c["scores"].get(str(r))) for c in augmented).items())) for r in range(1, config.rounds + 1)},
    }

"""The Python API: synthesize(), train(), evaluate(), run(). The CLI is a thin layer over these.

    import selfguide
    result = selfguide.run("task.yaml", model="HuggingFaceTB/SmolLM2-135M-Instruct")
    print(*result.headline, sep="\n")          # the verdict line and the why line

Each function's first argument is a RunConfig (see `load_config`), a task file or SuperNI task
name, or a `Task` built in memory; keyword settings (`model`, `config` = a YAML file, `out`,
`seed`, `limit`, `backend`, `base_url`, `eval_split`, `overrides` = ["section.key=value"]) fill
or override the config, as `selfguide run`'s flags do.

Every function takes a RunConfig, writes the resolved config into the run folder, and reuses
whatever an earlier identical or interrupted run finished: model calls through the SQLite call
cache, training through a fingerprint of its inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from selfguide import layout
from selfguide.arguments import run_config
from selfguide.backends.cache import CachedModel, CallCache, CallStats
from selfguide.backends.factory import cached_model
from selfguide.backends.fingerprint import model_fingerprint
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.precision import resolved_dtype
from selfguide.config import RunConfig, config_yaml
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.io import read_jsonl_objects, write_json, write_text
from selfguide.ledger import record_invocation
from selfguide.methods import DEFAULT_METHOD, Method, MethodContext, get_method
from selfguide.methods import synthesize as run_method
from selfguide.model_source import HOW_TO_GET_DEFAULT, installed_default_gguf, resolve_model
from selfguide.plan import Calls
from selfguide.prompts.task import Pair, pair_of
from selfguide.redact import redact_url
from selfguide.run_task import load_method_task, load_run_task
from selfguide.runfolder import default_run_folder, open_run_folder
from selfguide.tasks.spec import TaskSpec


def run_dir(config: RunConfig, task: TaskSpec | None) -> Path:
    """The run folder: `out`, or runs/<task name made a safe folder name> (runs/<method> without a task)."""
    return Path(config.out) if config.out else default_run_folder(task.name if task else config.synth.method)


@contextlib.contextmanager
def open_run(config: RunConfig, task: TaskSpec | None, *, wait: bool = False) -> Iterator[Path]:
    """The run folder, locked for the block, with the resolved config written into it."""
    with open_run_folder(run_dir(config, task), wait=wait) as out:
        write_text(out / layout.CONFIG, config_yaml(config))
        yield out


def open_cache(config: RunConfig, out: Path) -> CallCache:
    return CallCache(config.cache or out / layout.CACHE)


# What `from_pretrained` can take as a hub id: "name" or "org/name" (Ollama's "qwen2.5:1.5b" is not one).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def training_model(config: RunConfig) -> str:
    """The weights to finetune (and to run in-process): `train.model`, else `model.name`."""
    name = config.train.model or config.model.name
    if Path(name).expanduser().is_dir() or (HUB_ID.fullmatch(name) and ".." not in name):
        return name
    if config.train.model:
        raise BadInputError("train.model", repr(name), "a Hugging Face model id or a local model folder")
    raise BadInputError(
        "--model",
        repr(name),
        "a Hugging Face model id or a local model folder to finetune; a served name that is neither needs "
        "train.model (e.g. --set train.model=Qwen/Qwen2.5-1.5B-Instruct)",
    )


def local_model_config(config: RunConfig) -> ModelConfig:
    """The base model in-process, on the weights that get finetuned: where the finetuned model runs."""
    if config.model.backend != "openai":
        return config.model
    return config.model.model_copy(update={"backend": "hf", "name": training_model(config), "adapter": None})


def require_model(config: RunConfig) -> RunConfig:
    """`config` with its model resolved to what loads: a .gguf file becomes its converted folder, and
    no model at all the default SmolLM2-135M-Instruct (see `selfguide.model_source`)."""
    if config.model.backend == "openai":
        if not config.model.name:
            raise SelfGuideError("no model given: the openai backend needs --model, the served model name")
        if not config.model.base_url:
            raise SelfGuideError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return config
    if config.model.backend == "llamacpp":
        # llama.cpp runs the GGUF file itself; training needs its converted transformers folder.
        gguf = config.model.name or str(installed_default_gguf() or "")
        if not gguf:
            raise SelfGuideError(f"the llamacpp backend needs --model, a .gguf file: {HOW_TO_GET_DEFAULT}")
        train_model = config.train.model or resolve_model(gguf)
        return config.model_copy(
            update={"model": config.model.model_copy(update={"name": gguf}), "train": config.train.model_copy(update={"model": train_model})}
        )
    resolved = resolve_model(config.model.name)
    if resolved != config.model.name:
        config = config.model_copy(update={"model": config.model.model_copy(update={"name": resolved})})
    return require_teacher(config)


def require_teacher(config: RunConfig) -> RunConfig:
    """A teacher in-process loads from a folder: a .gguf file (hf, vllm) becomes its converted folder."""
    teacher = config.teacher
    if teacher is None:
        return config
    if not teacher.name:
        raise BadInputError("teacher.name", "value", "the teacher model: a hub id, a local folder, a .gguf file or a served name")
    if teacher.backend == "openai" and not teacher.base_url:
        raise BadInputError("teacher.base_url", "value", "the server's /v1 URL for an openai teacher")
    if teacher.backend in ("openai", "llamacpp") or resolve_model(teacher.name) == teacher.name:
        return config
    return config.model_copy(update={"teacher": teacher.model_copy(update={"name": resolve_model(teacher.name)})})


@dataclass
class SynthResult:
    out_dir: Path
    dataset_path: Path
    summary: dict


def synthesize(
    target: RunConfig | TaskSpec | str | Path, *, progress: bool = True, max_calls: int | None = None, wait: bool = False, **settings
) -> SynthResult:
    """Write the SELF-GUIDE synthetic dataset of the task into `<out>/synth/`: inputs, filters,
    labels by vote. Returns the dataset path and the funnel summary. `wait`: wait for another
    process that holds the run folder instead of stopping.

    Example: selfguide.synthesize("task036", model="./tiny-model", config="configs/tiny.yaml")"""
    config = require_model(run_config(target, **settings))
    task = load_method_task(config)
    stats = CallStats()
    with open_run(config, task, wait=wait) as out, record_invocation(out, f"synthesize {config.synth.method}", stats, {}):
        cache = open_cache(config, out)
        try:
            model = cached_model(config.model, cache, max_calls=max_calls, progress=progress, stats=stats)
            try:
                with teacher_model(config, cache, max_calls=max_calls, progress=progress, stats=stats) as teacher:
                    return synthesize_with(task, model, config, out, teacher)
            finally:
                model.close()
        finally:
            cache.close()


@contextlib.contextmanager
def teacher_model(config: RunConfig, cache: CallCache, **options) -> Iterator[CachedModel | None]:
    """The teacher behind the call cache for the block, or None when the model teaches itself."""
    if config.teacher is None:
        yield None
        return
    teacher = cached_model(config.teacher, cache, **options)
    try:
        yield teacher
    finally:
        teacher.close()


def method_context(config: RunConfig, task: TaskSpec | None, model: CachedModel, out: Path, teacher: CachedModel | None = None) -> MethodContext:
    """What the method sees: a general-purpose method gets no task, only its eval inputs to keep out."""
    method = get_method(config.synth.method)
    return MethodContext(
        task=None if method.general else task,
        model=model,
        out_dir=layout.synth_dir(out),
        seed=config.seed,
        teacher=teacher,
        eval_texts=general_eval_texts(config, task) if method.general else (),
        progress=model.progress,
    )


def general_eval_texts(config: RunConfig, task: TaskSpec | None) -> tuple[str, ...]:
    """What general-purpose data must not reproduce: the task's eval inputs, and the user-oriented
    instructions when they are an eval target."""
    texts = [item.input for item in task.eval] if task is not None else []
    if user_oriented_on(config):
        from selfguide.eval.user_oriented import user_oriented_texts

        texts += user_oriented_texts(config.eval.user_oriented)
    return tuple(texts)


def user_oriented_on(config: RunConfig) -> bool:
    """Whether `run` evaluates on the user-oriented instructions: by default for general-purpose methods."""
    enabled = config.eval.user_oriented.enabled
    return get_method(config.synth.method).general if enabled is None else enabled


def synthesize_with(task: TaskSpec | None, model: CachedModel, config: RunConfig, out: Path, teacher: CachedModel | None = None) -> SynthResult:
    """Synthesis with models the caller already holds (and closes): the method named by `synth.method`."""
    method = get_method(config.synth.method)
    summary = run_method(method, method_context(config, task, model, out, teacher), config.synth)
    return SynthResult(out, layout.dataset_path(out), summary)


def plan(target: RunConfig | TaskSpec | str | Path, **settings) -> dict[str, Calls]:
    """The model calls `synthesize` would make, by stage (a dry run: nothing is loaded or called).
    A stage whose size depends on what earlier filters keep is a range until its input is on disk.

    Example: selfguide.api.plan("task036", model="./tiny-model", config="configs/tiny.yaml")"""
    config = require_model(run_config(target, **settings))
    task = load_method_task(config)
    out = run_dir(config, task)
    cache = CallCache(":memory:")  # the plan asks no model anything; a cache in memory leaves the run folder untouched
    try:
        model = cached_model(config.model, cache, progress=False)
        with teacher_model(config, cache, progress=False) as teacher:
            method = get_method(config.synth.method)
            return method.plan(method_context(config, task, model, out, teacher), config.synth)
    finally:
        cache.close()


@dataclass
class TrainOutput:
    out_dir: Path
    model_dir: Path  # the adapter folder (LoRA) or the full model folder
    is_adapter: bool
    n_train: int
    n_dropped_too_long: int
    log_path: Path
    reused: bool = False
    merged_dir: Path | None = None


def train(
    target: RunConfig | TaskSpec | str | Path,
    dataset_path: Path | None = None,
    out_dir: Path | None = None,
    *,
    merge: bool = False,
    progress: bool = True,
    wait: bool = False,
    **settings,
) -> TrainOutput:
    """Finetune the model on a dataset.jsonl (default: the run folder's synth/dataset.jsonl):
    rows of {input, output} with the task prompt, rows that carry their own `instruction`
    zero-shot with it; LoRA unless `train.method` is full.

    Example: selfguide.train("task036", model="./tiny-model", config="configs/tiny.yaml")"""
    config = require_model(run_config(target, **settings))
    training_model(config)
    task = load_method_task(config)
    dataset_path = Path(dataset_path) if dataset_path else layout.dataset_path(run_dir(config, task))
    pairs = read_pairs(dataset_path)
    if not pairs:
        raise SelfGuideError(f"{dataset_path}: no pairs to train on (synthesis kept none: see synth/summary.md)")
    if task is None and any(len(pair) == 2 for pair in pairs):
        raise SelfGuideError(f"{dataset_path}: rows without an 'instruction' are trained with a task's prompt: give the task")
    if out_dir is not None:
        with open_run_folder(out_dir, wait=wait), record_invocation(out_dir, "train", CallStats(), {}):
            return train_on_pairs(config, task, pairs, out_dir, merge=merge, progress=progress)
    with open_run(config, task, wait=wait) as out, record_invocation(out, "train", CallStats(), {}):
        return train_on_pairs(config, task, pairs, layout.train_dir(out), merge=merge, progress=progress)


def train_on_pairs(config: RunConfig, task: TaskSpec | None, pairs: list[Pair], out: Path, *, merge: bool = False, progress: bool = True) -> TrainOutput:
    """Train, or reuse a finished training with the same data, task prompt, model and settings."""
    from selfguide.train.sft import merge_adapter
    from selfguide.train.sft import train as run_training

    base_model = training_model(config)
    fingerprint = training_fingerprint(config, task, pairs)
    done_path = out / layout.TRAIN_DONE
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    if done.get("fingerprint") == fingerprint and Path(done["model_dir"]).exists():
        result = TrainOutput(out, Path(done["model_dir"]), done["is_adapter"], done["n_train"], done["n_dropped_too_long"], out / layout.TRAIN_LOG, reused=True)
    else:
        try:
            trained = run_training(task, pairs, base_model, out, config.training(), progress=progress)
        except OSError as err:
            if Path(base_model).is_dir():
                raise
            # from_pretrained could not find it: a served name that is no hub id, or no network.
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SelfGuideError(f"{base_model!r}: could not load it to finetune ({first}); set train.model to its Hugging Face id or a local folder") from None
        result = TrainOutput(out, Path(trained.output_dir), trained.adapter_dir is not None, trained.n_train, trained.n_dropped_too_long, Path(trained.log_path))
        write_json(
            done_path,
            {"fingerprint": fingerprint, "model_dir": str(result.model_dir), "is_adapter": result.is_adapter, "n_train": result.n_train, "n_dropped_too_long": result.n_dropped_too_long},
        )
    if merge and result.is_adapter:
        result.merged_dir = merge_adapter(base_model, result.model_dir, out / layout.MERGED)
    return result


def read_pairs(dataset_path: Path) -> list[Pair]:
    expected = "an object with string 'input' and 'output' (and optionally 'instruction')"
    rows = []
    for lineno, row in read_jsonl_objects(dataset_path, "dataset.jsonl of {input, output} (from `selfguide synthesize`)", expected):
        texts = [row.get("input"), row.get("output")] + ([row["instruction"]] if row.get("instruction") is not None else [])
        if not all(isinstance(text, str) for text in texts):
            raise BadInputError(dataset_path, f"line {lineno}", expected, repr(row)[:60])
        rows.append(row)
    return pairs_of(rows)


def pairs_of(rows: list[dict]) -> list[Pair]:
    return [pair_of(row) for row in rows]


def training_fingerprint(config: RunConfig, task: TaskSpec | None, pairs: list[Pair]) -> str:
    payload = {
        "pairs": pairs,
        "instruction": task.instruction if task is not None else None,
        "demos": [(e.input, e.output) for e in task.examples] if task is not None else [],
        "model": training_model(config),
        "weights": model_fingerprint(training_model(config)),
        "train": config.training().model_dump(mode="json", exclude={"model", "report_to"}),  # neither changes the trained weights
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def evaluate(
    target: RunConfig | TaskSpec | str | Path,
    *,
    adapter: str | None = None,
    model_dir: str | None = None,
    name: str | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    max_calls: int | None = None,
    wait: bool = False,
    user_oriented: bool = False,
    **settings,
) -> dict:
    """Greedy predictions on the task's eval set and both metric families, written to
    `<out>/eval/<name>/`; `adapter` or `model_dir` evaluates a finetuned model instead of the
    config's model. Returns the metrics (`reported` is the task's official metric, 0-100).
    `user_oriented`: Self-Instruct's 252 user-oriented instructions instead (no task needed),
    scored by ROUGE-L, written to `<out>/eval/user-oriented/<name>/`.

    Example: selfguide.evaluate("task036", model="./tiny-model", adapter="runs/task036/train/adapter", limit=20)"""
    from selfguide.eval.evaluate import evaluate as run_eval

    config = require_model(run_config(target, **settings))
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise BadInputError("--adapter", repr(str(adapter)), "a PEFT adapter folder (with adapter_config.json), e.g. runs/TASK/train/adapter")
    task = load_run_task(config) if config.task or not user_oriented else None
    label = name or (layout.FINETUNED if adapter or model_dir else layout.PROMPTING)
    stats = CallStats()
    with open_run(config, task, wait=wait) as out, record_invocation(out, f"eval {label}", stats, {}):
        cache = open_cache(config, out)
        try:
            base = local_model_config(config) if adapter or model_dir else config.model
            model = cached_model(finetuned_model_config(base, adapter, model_dir), cache, max_calls=max_calls, progress=progress, stats=stats)
            try:
                if user_oriented:
                    from selfguide.eval.user_oriented import evaluate_user_oriented

                    return evaluate_user_oriented(model, config.eval.user_oriented, out_dir or layout.user_oriented_dir(out, label), name=label)
                return run_eval(task, model, config.eval, out_dir or layout.eval_dir(out, label), name=label)
            finally:
                model.close()
        finally:
            cache.close()


def finetuned_model_config(model: ModelConfig, adapter: str | Path | None, model_dir: str | Path | None = None) -> ModelConfig:
    """The finetuned model runs in-process: transformers, or vLLM or llama.cpp when that is the
    backend (never a mix: the baseline ran there too)."""
    if not adapter and not model_dir:
        return model
    if model.backend == "llamacpp":
        from selfguide.backends.llamacpp import finetuned_llamacpp_config

        return finetuned_llamacpp_config(model, adapter, model_dir)
    backend = "vllm" if model.backend == "vllm" else "hf"
    return model.model_copy(update={"backend": backend, "name": str(model_dir or model.name), "adapter": str(adapter) if adapter else None})


def trained_model_config(model: ModelConfig, trained: TrainOutput) -> ModelConfig:
    if trained.is_adapter:
        return finetuned_model_config(model, trained.model_dir)
    return finetuned_model_config(model, None, trained.model_dir)


@dataclass
class RunResult:
    out_dir: Path
    synth: SynthResult
    train: TrainOutput | None
    baseline: dict
    finetuned: dict | None  # the method's model: finetuned, or an inference-time method's own evaluation
    timings: dict = field(default_factory=dict)
    report_paths: list[Path] = field(default_factory=list)
    # Which serving stack produced each number: the baseline and the finetuned model are always
    # compared on the same one; with --backend openai the server's own prompting score is extra.
    stacks: dict[str, str] = field(default_factory=dict)
    server_baseline: dict | None = None
    headline: list[str] = field(default_factory=list)  # the verdict line and the why line
    method: str = DEFAULT_METHOD
    user_oriented: dict[str, dict] = field(default_factory=dict)  # eval name -> metrics on the 252 user-oriented instructions


def stack_name(model: ModelConfig) -> str:
    if model.backend == "openai":
        return f"server {redact_url(model.base_url or '')} ({model.name})"
    return {"hf": "transformers in-process", "vllm": "vLLM in-process"}[model.backend]


def run(target: RunConfig | TaskSpec | str | Path, *, progress: bool = True, wait: bool = False, **settings) -> RunResult:
    """The whole loop: synthesize (with `synth.method`, SELF-GUIDE by default), finetune, evaluate prompting and the finetuned
    model on the same eval set and the same serving stack, and write report.md, report.html and
    the model card. `result.headline` holds the verdict line and the why line that open the report.

    With a server (openai backend) the finetuned model runs in-process, so the prompting baseline
    is evaluated in-process too, on the same weights (`train.model`); the server's own prompting
    score is kept beside it as an extra, labelled number.

    Examples:
        selfguide.run("task.yaml", model="HuggingFaceTB/SmolLM2-135M-Instruct")
        selfguide.run(Task(instruction="...", examples=[("in", "out"), ...], eval=[...]), model="./tiny-model", config="configs/tiny.yaml")"""
    from selfguide.environment import environment
    from selfguide.export.cards import write_model_card
    from selfguide.report.report import write_report
    from selfguide.report.verdict import headline

    config = require_model(run_config(target, **settings))
    training_model(config)
    task = load_run_task(config)
    local = local_model_config(config)  # fails fast when the served name is not loadable weights
    with open_run(config, task, wait=wait) as out:
        result = run_stages(config, task, local, out, progress)
        # The precision the in-process model ran in (model.dtype "auto" and "native" differ by machine).
        write_json(out / layout.ENVIRONMENT, {**environment(), "run_dtype": resolved_dtype(local.dtype, local.device)})
        write_model_card(out, task, config)
        result.report_paths = write_report(out, task, config)  # after the ledger has this invocation
        result.headline = headline(out)
        write_recommendation(out)
    return result


def write_recommendation(out: Path) -> None:
    """Which system to deploy, as the `recommendation` key of <run>/summary.json (other keys kept)."""
    from selfguide.report.deploy import recommendation

    path = out / layout.SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    write_json(path, {**summary, "recommendation": recommendation(out)})


def run_stages(config: RunConfig, task: TaskSpec, local: ModelConfig, out: Path, progress: bool) -> RunResult:
    """`run` in its locked run folder; `local` is where the finetuned model and its baseline run.
    An inference-time method (one that does not finetune) is evaluated beside the baseline instead."""
    from selfguide.eval.evaluate import evaluate as run_eval

    method = get_method(config.synth.method)
    timings: dict[str, float] = {}
    stats = CallStats()
    with record_invocation(out, "run", stats, timings):
        cache = open_cache(config, out)
        try:
            stacks = {"synthesis": stack_name(config.teacher or config.model)}
            server_baseline, result = None, None
            user_oriented: dict[str, dict] = {}
            # One load of the base model serves synthesis and the prompting baseline; it is freed
            # before training so the GPU is the trainer's.
            base = cached_model(config.model, cache, progress=progress, stats=stats)
            try:
                started = time.perf_counter()
                with teacher_model(config, cache, progress=progress, stats=stats) as teacher:
                    synth = synthesize_with(task, base, config, out, teacher)
                timings["synthesize"] = time.perf_counter() - started
                started = time.perf_counter()
                if config.model.backend == "openai":
                    server_baseline = run_eval(task, base, config.eval, layout.eval_dir(out, layout.PROMPTING_SERVER), name=layout.PROMPTING_SERVER)
                    stacks[layout.PROMPTING_SERVER] = stack_name(config.model)
                    timings["eval_prompting_server"] = time.perf_counter() - started
                else:
                    baseline = run_eval(task, base, config.eval, layout.eval_dir(out, layout.PROMPTING), name=layout.PROMPTING)
                    timings["eval_prompting"] = time.perf_counter() - started
                    user_oriented.update(eval_user_oriented(config, base, out, layout.PROMPTING, timings))
                    if method.evaluate is not None:
                        result = evaluate_untrained(method, config, task, base, out, timings)
            finally:
                base.close()
            if config.model.backend == "openai":
                started = time.perf_counter()
                in_process = cached_model(local, cache, progress=progress, stats=stats)
                try:
                    baseline = run_eval(task, in_process, config.eval, layout.eval_dir(out, layout.PROMPTING), name=layout.PROMPTING)
                    timings["eval_prompting"] = time.perf_counter() - started
                    user_oriented.update(eval_user_oriented(config, in_process, out, layout.PROMPTING, timings))
                    if method.evaluate is not None:
                        result = evaluate_untrained(method, config, task, in_process, out, timings)
                finally:
                    in_process.close()
            stacks[layout.PROMPTING] = stack_name(local)
            if method.evaluate is not None:
                stacks[method.name] = stack_name(local)

            trained = None
            if method.evaluate is None and synth.summary["pairs"] > 0:
                started = time.perf_counter()
                # A method may ask for training settings of its own (few-shot finetuning: 3 epochs).
                train_config = config.model_copy(update={"train": config.train.model_copy(update=synth.summary.get("train") or {})})
                trained = train_on_pairs(train_config, task, read_pairs(synth.dataset_path), layout.train_dir(out), progress=progress)
                timings["train"] = time.perf_counter() - started
                started = time.perf_counter()
                tuned_config = trained_model_config(local, trained)
                tuned = cached_model(tuned_config, cache, progress=progress, stats=stats)
                try:
                    result = run_eval(task, tuned, config.eval, layout.eval_dir(out, layout.FINETUNED), name=layout.FINETUNED)
                    user_oriented.update(eval_user_oriented(config, tuned, out, layout.FINETUNED, timings))
                finally:
                    tuned.close()
                stacks[layout.FINETUNED] = stack_name(tuned_config)
                timings["eval_finetuned"] = time.perf_counter() - started
        finally:
            cache.close()
        write_json(out / layout.TIMINGS, timings)
        write_json(out / layout.STACKS, stacks)
    return RunResult(
        out, synth, trained, baseline, result, timings, stacks=stacks, server_baseline=server_baseline, method=method.name, user_oriented=user_oriented
    )


def eval_user_oriented(config: RunConfig, model: CachedModel, out: Path, name: str, timings: dict[str, float]) -> dict[str, dict]:
    """{name: metrics} on the user-oriented instructions in eval/user-oriented/<name>/, when they are an eval target."""
    if not user_oriented_on(config):
        return {}
    from selfguide.eval.user_oriented import evaluate_user_oriented

    started = time.perf_counter()
    metrics = evaluate_user_oriented(model, config.eval.user_oriented, layout.user_oriented_dir(out, name), name=name)
    timings[f"eval_user_oriented_{name}"] = time.perf_counter() - started
    return {name: metrics}


def evaluate_untrained(method: Method, config: RunConfig, task: TaskSpec, model: CachedModel, out: Path, timings: dict[str, float]) -> dict:
    """An inference-time method's own evaluation of the untrained model, in eval/<method>/."""
    started = time.perf_counter()
    ctx = method_context(config, task, model, out)
    metrics = method.evaluate(ctx, config.synth, config.eval, layout.eval_dir(out, method.name), method.name)
    timings[f"eval_{method.name}"] = time.perf_counter() - started
    return metrics

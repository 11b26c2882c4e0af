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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from selfguide import layout
from selfguide.arguments import run_config
from selfguide.backends.cache import CachedModel, CallCache, CallStats
from selfguide.backends.capabilities import finetuned_config, stack_name
from selfguide.backends.factory import cached_model
from selfguide.backends.precision import resolved_dtype
from selfguide.backends.resolve import RunModels, resolve_models
from selfguide.config import RunConfig, config_yaml
from selfguide.engine import Engine, Folders, evaluate_untrained, finetune_evaluate
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.io import read_dataset_rows, write_json, write_text
from selfguide.ledger import record_invocation
from selfguide.methods import DEFAULT_METHOD, Method, MethodContext, get_method
from selfguide.methods import synthesize as run_method
from selfguide.plan import Calls
from selfguide.prompts.task import Pair, pair_of
from selfguide.run_task import load_method_task, load_run_task
from selfguide.runfolder import default_run_folder, open_run_folder
from selfguide.tasks.spec import TaskSpec
from selfguide.train.reuse import TrainOutput, train_once


def run_dir(config: RunConfig, task: TaskSpec | None) -> Path:
    """The run folder: `out`, or runs/<task name made a safe folder name> (runs/<method> without a task)."""
    return Path(config.out) if config.out else default_run_folder(task.name if task else config.synth.method)


@contextlib.contextmanager
def open_run(config: RunConfig, task: TaskSpec | None, *, wait: bool = False) -> Iterator[Path]:
    """The run folder, locked for the block, with the resolved config written into it."""
    with open_run_folder(run_dir(config, task), wait=wait) as out:
        write_text(out / layout.CONFIG, config_yaml(config))
        if task is not None:  # what the run was made from, so that it exports and reruns anywhere
            write_text(out / layout.RUN_TASK, task.model_dump_json(exclude={"dev"}, indent=1))
        yield out


def open_cache(config: RunConfig, out: Path) -> CallCache:
    return CallCache(config.cache or out / layout.CACHE)


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
    models = resolve_models(run_config(target, **settings))
    config = models.config
    task = load_method_task(config)
    stats = CallStats()
    with open_run(config, task, wait=wait) as out, record_invocation(out, f"synthesize {config.synth.method}", stats, {}):
        cache = open_cache(config, out)
        try:
            model = cached_model(config.model, cache, max_calls=max_calls, progress=progress, stats=stats)
            try:
                with teacher_model(config, cache, max_calls=max_calls, progress=progress, stats=stats) as teacher:
                    return synthesize_with(task, model, models, out, teacher)
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


def method_context(models: RunModels, task: TaskSpec | None, model: CachedModel, out: Path, teacher: CachedModel | None = None) -> MethodContext:
    """What the method sees: a general-purpose method gets no task, only its eval inputs to keep out."""
    config = models.config
    method = get_method(config.synth.method)
    return MethodContext(
        task=None if method.general else task,
        model=model,
        out_dir=layout.synth_dir(out),
        seed=config.seed,
        teacher=teacher,
        eval_texts=general_eval_texts(config, task) if method.general else (),
        progress=model.progress,
        weights=models.weights,
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


def synthesize_with(task: TaskSpec | None, model: CachedModel, models: RunModels, out: Path, teacher: CachedModel | None = None) -> SynthResult:
    """Synthesis with models the caller already holds (and closes): the method named by `synth.method`."""
    method = get_method(models.config.synth.method)
    summary = run_method(method, method_context(models, task, model, out, teacher), models.config.synth)
    return SynthResult(out, layout.dataset_path(out), summary)


def plan(target: RunConfig | TaskSpec | str | Path, **settings) -> dict[str, Calls]:
    """The model calls `synthesize` would make, by stage (a dry run: nothing is loaded or called).
    A stage whose size depends on what earlier filters keep is a range until its input is on disk.

    Example: selfguide.api.plan("task036", model="./tiny-model", config="configs/tiny.yaml")"""
    models = resolve_models(run_config(target, **settings))
    config = models.config
    task = load_method_task(config)
    out = run_dir(config, task)
    cache = CallCache(":memory:")  # the plan asks no model anything; a cache in memory leaves the run folder untouched
    try:
        model = cached_model(config.model, cache, progress=False)
        with teacher_model(config, cache, progress=False) as teacher:
            method = get_method(config.synth.method)
            return method.plan(method_context(models, task, model, out, teacher), config.synth)
    finally:
        cache.close()


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
    models = resolve_models(run_config(target, **settings))
    models.trainable()
    config = models.config
    task = load_method_task(config)
    dataset_path = Path(dataset_path) if dataset_path else layout.dataset_path(run_dir(config, task))
    pairs = read_pairs(dataset_path)
    if not pairs:
        raise SelfGuideError(f"{dataset_path}: no pairs to train on (synthesis kept none: see synth/summary.md)")
    if task is None and any(len(pair) == 2 for pair in pairs):
        raise SelfGuideError(f"{dataset_path}: rows without an 'instruction' are trained with a task's prompt: give the task")
    if out_dir is not None:
        with open_run_folder(out_dir, wait=wait), record_invocation(out_dir, "train", CallStats(), {}):
            return train_on_pairs(models, task, pairs, out_dir, merge=merge, progress=progress)
    with open_run(config, task, wait=wait) as out, record_invocation(out, "train", CallStats(), {}):
        return train_on_pairs(models, task, pairs, layout.train_dir(out), merge=merge, progress=progress)


def train_on_pairs(models: RunModels, task: TaskSpec | None, pairs: list[Pair], out: Path, *, merge: bool = False, progress: bool = True) -> TrainOutput:
    """Train, or reuse a finished training with the same data, task prompt, model and settings."""
    result = train_once(task, pairs, models.trainable(), out, models.config.training(), progress)
    if merge and result.is_adapter:
        from selfguide.train.merge import merge_adapter

        result.merged_dir = merge_adapter(models.trainable(), result.model_dir, out / layout.MERGED)
    return result


def read_pairs(dataset_path: Path) -> list[Pair]:
    return pairs_of(read_dataset_rows(dataset_path))


def pairs_of(rows: list[dict]) -> list[Pair]:
    return [pair_of(row) for row in rows]


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

    models = resolve_models(run_config(target, **settings))
    config = models.config
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise BadInputError("--adapter", repr(str(adapter)), "a PEFT adapter folder (with adapter_config.json), e.g. runs/TASK/train/adapter")
    task = load_run_task(config) if config.task or not user_oriented else None
    label = name or (layout.FINETUNED if adapter or model_dir else layout.PROMPTING)
    stats = CallStats()
    with open_run(config, task, wait=wait) as out, record_invocation(out, f"eval {label}", stats, {}):
        cache = open_cache(config, out)
        try:
            tuned = finetuned_config(models.local_model(), adapter, model_dir) if adapter or model_dir else config.model
            model = cached_model(tuned, cache, max_calls=max_calls, progress=progress, stats=stats)
            try:
                if user_oriented:
                    from selfguide.eval.user_oriented import evaluate_user_oriented

                    return evaluate_user_oriented(model, config.eval.user_oriented, out_dir or layout.user_oriented_dir(out, label), name=label)
                return run_eval(task, model, config.eval, out_dir or layout.eval_dir(out, label), name=label)
            finally:
                model.close()
        finally:
            cache.close()


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
    from selfguide.report.deploy import headline, write_recommendation

    models = resolve_models(run_config(target, **settings))
    local = models.local_model()  # fails fast when the served name is not loadable weights
    task = load_run_task(models.config)
    with open_run(models.config, task, wait=wait) as out:
        result = run_stages(models, task, out, progress)
        # The precision the in-process model ran in (model.dtype "auto" and "native" differ by machine).
        write_json(out / layout.ENVIRONMENT, {**environment(models.config), "run_dtype": resolved_dtype(local.dtype, local.device)})
        write_recommendation(out)  # before the report, which links every file of the run
        write_model_card(out, task, models.config)
        result.report_paths = write_report(out, task, models.config)  # after the ledger has this invocation
        result.headline = headline(out)
    return result


def run_stages(models: RunModels, task: TaskSpec, out: Path, progress: bool) -> RunResult:
    """`run` in its locked run folder, through the run engine (selfguide.engine). The prompting
    baseline runs where the finetuned model will (`models.local`): on the base model, or, when that
    is a server, in-process beside the server's own score. An inference-time method (one that does
    not finetune) is evaluated beside the baseline instead of a finetuned model."""
    from selfguide.eval.evaluate import evaluate as run_eval

    config, method = models.config, get_method(models.config.synth.method)
    timings: dict[str, float] = {}
    stats = CallStats()
    with record_invocation(out, "run", stats, timings):
        cache = open_cache(config, out)
        try:
            engine = Engine(models, lambda model: cached_model(model, cache, progress=progress, stats=stats), progress)
            stacks = {"synthesis": stack_name(config.teacher or config.model)}
            server_baseline = None
            # One load of the base model serves synthesis and the prompting baseline; it is freed
            # before training so the GPU is the trainer's.
            base = engine.open_model(config.model)
            try:
                started = time.perf_counter()
                with teacher_model(config, cache, progress=progress, stats=stats) as teacher:
                    synth = synthesize_with(task, base, models, out, teacher)
                timings["synthesize"] = time.perf_counter() - started
                if models.server_baseline:
                    started = time.perf_counter()
                    server_baseline = run_eval(task, base, config.eval, layout.eval_dir(out, layout.PROMPTING_SERVER), name=layout.PROMPTING_SERVER)
                    stacks[layout.PROMPTING_SERVER] = stack_name(config.model)
                    timings["eval_prompting_server"] = time.perf_counter() - started
                else:
                    baseline, result, user_oriented = untrained_evals(engine, method, task, base, out, timings)
            finally:
                base.close()
            if models.server_baseline:
                in_process = engine.open_model(models.local_model())
                try:
                    baseline, result, user_oriented = untrained_evals(engine, method, task, in_process, out, timings)
                finally:
                    in_process.close()
            stacks[layout.PROMPTING] = stack_name(models.local_model())
            if method.evaluate is not None:
                stacks[method.name] = stack_name(models.local_model())

            trained = None
            if method.evaluate is None:
                pairs = read_pairs(synth.dataset_path) if synth.summary["pairs"] > 0 else []
                also = lambda model: user_oriented.update(eval_user_oriented(config, model, out, layout.FINETUNED, timings))  # noqa: E731
                folders = Folders(layout.synth_dir(out), layout.train_dir(out), layout.eval_dir(out, layout.FINETUNED))
                trained, finetuned = finetune_evaluate(engine, task, config, pairs, folders, layout.FINETUNED, also=also, timings=timings)
                if trained is not None:
                    result = finetuned
                    stacks[layout.FINETUNED] = stack_name(models.local_model())  # the finetuned model runs where its baseline ran
        finally:
            cache.close()
        write_json(out / layout.TIMINGS, timings)
        write_json(out / layout.STACKS, stacks)
    return RunResult(
        out, synth, trained, baseline, result, timings, stacks=stacks, server_baseline=server_baseline, method=method.name, user_oriented=user_oriented
    )


def untrained_evals(engine: Engine, method: Method, task: TaskSpec, model: CachedModel, out: Path, timings: dict[str, float]) -> tuple[dict, dict | None, dict[str, dict]]:
    """On the untrained `model`: the prompting baseline, the user-oriented instructions when they are
    an eval target, and an inference-time method's own evaluation (in eval/<method>/, else None)."""
    from selfguide.eval.evaluate import evaluate as run_eval

    config = engine.models.config
    started = time.perf_counter()
    baseline = run_eval(task, model, config.eval, layout.eval_dir(out, layout.PROMPTING), name=layout.PROMPTING)
    timings["eval_prompting"] = time.perf_counter() - started
    user_oriented = eval_user_oriented(config, model, out, layout.PROMPTING, timings)
    result = None
    if method.evaluate is not None:
        started = time.perf_counter()
        ctx = method_context(engine.models, task, model, out)
        result = evaluate_untrained(engine, method, ctx, config, layout.eval_dir(out, method.name), method.name)
        timings[f"eval_{method.name}"] = time.perf_counter() - started
    return baseline, result, user_oriented


def eval_user_oriented(config: RunConfig, model: CachedModel, out: Path, name: str, timings: dict[str, float]) -> dict[str, dict]:
    """{name: metrics} on the user-oriented instructions in eval/user-oriented/<name>/, when they are an eval target."""
    if not user_oriented_on(config):
        return {}
    from selfguide.eval.user_oriented import evaluate_user_oriented

    started = time.perf_counter()
    metrics = evaluate_user_oriented(model, config.eval.user_oriented, layout.user_oriented_dir(out, name), name=name)
    timings[f"eval_user_oriented_{name}"] = time.perf_counter() - started
    return {name: metrics}

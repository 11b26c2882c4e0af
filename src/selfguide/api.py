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

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from selfguide.backends.cache import CachedModel, CallCache
from selfguide.backends.factory import ModelConfig, cached_model, model_fingerprint
from selfguide.arguments import run_config
from selfguide.config import RunConfig, config_yaml
from selfguide.errors import SelfGuideError
from selfguide.io import read_jsonl, write_json, write_text
from selfguide.model_source import resolve_model
from selfguide.tasks.spec import TaskSpec, load_task


def load_run_task(config: RunConfig) -> TaskSpec:
    if not config.task:
        raise SelfGuideError("no task given: pass a task file or a SuperNI task name such as task036")
    from selfguide.tasks.datasets import is_dataset_task, load_dataset_task

    if is_dataset_task(config.task):
        return load_dataset_task(config.task, config.dataset, config.seed)
    return load_task(config.task, config.eval_split)


def run_dir(config: RunConfig, task: TaskSpec) -> Path:
    out = Path(config.out or Path("runs") / task.name)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", config_yaml(config))
    return out


def open_cache(config: RunConfig, out: Path) -> CallCache:
    return CallCache(config.cache or out / "cache.sqlite")


def require_model(config: RunConfig) -> RunConfig:
    """`config` with its model resolved to what loads: a .gguf file becomes its converted folder, and
    no model at all the default SmolLM2-135M-Instruct (see `selfguide.model_source`)."""
    if config.model.backend == "openai":
        if not config.model.name:
            raise SelfGuideError("no model given: the openai backend needs --model, the served model name")
        if not config.model.base_url:
            raise SelfGuideError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return config
    resolved = resolve_model(config.model.name)
    if resolved == config.model.name:
        return config
    return config.model_copy(update={"model": config.model.model_copy(update={"name": resolved})})


@dataclass
class SynthResult:
    out_dir: Path
    dataset_path: Path
    summary: dict


def synthesize(target: RunConfig | TaskSpec | str | Path, *, progress: bool = True, max_calls: int | None = None, **settings) -> SynthResult:
    """Write the SELF-GUIDE synthetic dataset of the task into `<out>/synth/`: inputs, filters,
    labels by vote. Returns the dataset path and the funnel summary.

    Example: selfguide.synthesize("task036", model="./tiny-model", config="configs/tiny.yaml")"""
    config = run_config(target, **settings)
    config = require_model(config)
    task = load_run_task(config)
    out = run_dir(config, task)
    cache = open_cache(config, out)
    model = cached_model(config.model, cache, max_calls=max_calls, progress=progress)
    try:
        return synthesize_with(task, model, config, out)
    finally:
        model.close()
        cache.close()


def synthesize_with(task: TaskSpec, model: CachedModel, config: RunConfig, out: Path) -> SynthResult:
    """Synthesis with a model the caller already holds (and closes)."""
    from selfguide.synth.pipeline import synthesize as run_synthesis

    summary = run_synthesis(task, model, config.synth, out / "synth", config.seed)
    return SynthResult(out, out / "synth" / "dataset.jsonl", summary)


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
    target: RunConfig | TaskSpec | str | Path, dataset_path: Path | None = None, out_dir: Path | None = None, *, merge: bool = False, progress: bool = True, **settings
) -> TrainOutput:
    """Finetune the model on a dataset.jsonl of {input, output} (default: the run folder's
    synth/dataset.jsonl) with the task prompt; LoRA unless `train.method` is full.

    Example: selfguide.train("task036", model="./tiny-model", config="configs/tiny.yaml")"""
    config = run_config(target, **settings)
    config = require_model(config)
    task = load_run_task(config)
    out = out_dir or run_dir(config, task) / "train"
    dataset_path = Path(dataset_path) if dataset_path else run_dir(config, task) / "synth" / "dataset.jsonl"
    pairs = read_pairs(dataset_path)
    if not pairs:
        raise SelfGuideError(f"{dataset_path}: no pairs to train on (synthesis kept none: see synth/summary.md)")
    return train_on_pairs(config, task, pairs, out, merge=merge, progress=progress)


def train_on_pairs(
    config: RunConfig, task: TaskSpec, pairs: list[tuple[str, str]], out: Path, *, merge: bool = False, progress: bool = True
) -> TrainOutput:
    """Train, or reuse a finished training with the same data, task prompt, model and settings."""
    from selfguide.train.sft import merge_adapter
    from selfguide.train.sft import train as run_training

    fingerprint = training_fingerprint(config, task, pairs)
    done_path = out / "done.json"
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    if done.get("fingerprint") == fingerprint and Path(done["model_dir"]).exists():
        result = TrainOutput(out, Path(done["model_dir"]), done["is_adapter"], done["n_train"], done["n_dropped_too_long"], out / "train_log.jsonl", reused=True)
    else:
        trained = run_training(task, pairs, config.model.name, out, config.train, progress=progress)
        result = TrainOutput(out, Path(trained.output_dir), trained.adapter_dir is not None, trained.n_train, trained.n_dropped_too_long, Path(trained.log_path))
        write_json(
            done_path,
            {"fingerprint": fingerprint, "model_dir": str(result.model_dir), "is_adapter": result.is_adapter, "n_train": result.n_train, "n_dropped_too_long": result.n_dropped_too_long},
        )
    if merge and result.is_adapter:
        result.merged_dir = merge_adapter(config.model.name, result.model_dir, out / "merged")
    return result


def read_pairs(dataset_path: Path) -> list[tuple[str, str]]:
    from selfguide.errors import BadInputError

    if not dataset_path.exists():
        raise BadInputError(dataset_path, "file", "a dataset.jsonl of {input, output} (from `selfguide synthesize`)", "no such file")
    pairs = []
    for lineno, row in enumerate(read_jsonl(dataset_path), start=1):
        if not isinstance(row.get("input"), str) or not isinstance(row.get("output"), str):
            raise BadInputError(dataset_path, f"line {lineno}", "an object with string 'input' and 'output'")
        pairs.append((row["input"], row["output"]))
    return pairs


def training_fingerprint(config: RunConfig, task: TaskSpec, pairs: list[tuple[str, str]]) -> str:
    payload = {
        "pairs": pairs,
        "instruction": task.instruction,
        "demos": [(e.input, e.output) for e in task.examples],
        "model": config.model.name,
        "weights": model_fingerprint(config.model.name),
        "train": config.train.model_dump(mode="json", exclude={"report_to"}),  # trackers don't change the model
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
    **settings,
) -> dict:
    """Greedy predictions on the task's eval set and both metric families, written to
    `<out>/eval/<name>/`; `adapter` or `model_dir` evaluates a finetuned model instead of the
    config's model. Returns the metrics (`reported` is the task's official metric, 0-100).

    Example: selfguide.evaluate("task036", model="./tiny-model", adapter="runs/task036/train/adapter", limit=20)"""
    from selfguide.eval.evaluate import evaluate as run_eval

    config = run_config(target, **settings)
    config = require_model(config)
    task = load_run_task(config)
    out = run_dir(config, task)
    label = name or ("finetuned" if adapter or model_dir else "prompting")
    cache = open_cache(config, out)
    model = cached_model(finetuned_model_config(config.model, adapter, model_dir), cache, max_calls=max_calls, progress=progress)
    try:
        return run_eval(task, model, config.eval, out_dir or out / "eval" / label, name=label)
    finally:
        model.close()
        cache.close()


def finetuned_model_config(model: ModelConfig, adapter: str | Path | None, model_dir: str | Path | None = None) -> ModelConfig:
    """The finetuned model runs in-process: transformers, or vLLM when that is the backend."""
    if not adapter and not model_dir:
        return model
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
    finetuned: dict | None
    timings: dict = field(default_factory=dict)
    report_paths: list[Path] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # the verdict line and the why line


def run(target: RunConfig | TaskSpec | str | Path, *, progress: bool = True, **settings) -> RunResult:
    """The whole SELF-GUIDE loop: synthesize, finetune, evaluate prompting and the finetuned
    model on the same eval set, and write report.md, report.html and the model card.

    `result.headline` holds the verdict line and the why line that open the report.

    Examples:
        selfguide.run("task.yaml", model="HuggingFaceTB/SmolLM2-135M-Instruct")
        selfguide.run(Task(instruction="...", examples=[("in", "out"), ...], eval=[...]), model="./tiny-model", config="configs/tiny.yaml")"""
    config = run_config(target, **settings)
    from selfguide.environment import environment
    from selfguide.eval.evaluate import evaluate as run_eval
    from selfguide.export.cards import write_model_card
    from selfguide.report.report import write_report
    from selfguide.report.verdict import headline

    config = require_model(config)
    task = load_run_task(config)
    out = run_dir(config, task)
    timings: dict[str, float] = {}
    cache = open_cache(config, out)
    try:
        # One load of the base model serves synthesis and the prompting baseline; it is freed
        # before training so the GPU is the trainer's.
        base = cached_model(config.model, cache, progress=progress)
        try:
            started = time.perf_counter()
            synth = synthesize_with(task, base, config, out)
            timings["synthesize"] = time.perf_counter() - started
            started = time.perf_counter()
            baseline = run_eval(task, base, config.eval, out / "eval" / "prompting", name="prompting")
            timings["eval_prompting"] = time.perf_counter() - started
        finally:
            base.close()

        trained, finetuned = None, None
        if synth.summary["pairs"] > 0:
            started = time.perf_counter()
            trained = train_on_pairs(config, task, read_pairs(synth.dataset_path), out / "train", progress=progress)
            timings["train"] = time.perf_counter() - started
            started = time.perf_counter()
            tuned = cached_model(trained_model_config(config.model, trained), cache, progress=progress)
            try:
                finetuned = run_eval(task, tuned, config.eval, out / "eval" / "finetuned", name="finetuned")
            finally:
                tuned.close()
            timings["eval_finetuned"] = time.perf_counter() - started
    finally:
        cache.close()
    write_json(out / "timings.json", timings)
    write_json(out / "environment.json", environment())
    result = RunResult(out, synth, trained, baseline, finetuned, timings)
    write_model_card(out, task, config)
    result.report_paths = write_report(out, task, config)
    result.headline = headline(out)
    return result

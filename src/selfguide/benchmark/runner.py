"""The benchmarks' shared runner: a bench holds one call cache and the models it opens, loads
SuperNI tasks, and runs each column through the run engine (selfguide.engine: a method's data,
then finetuning and evaluation, or an inference-time method's own evaluation); `run_parallel` runs
independent parts of the work at once, `bench_per_seed` repeats a bench per seed. One code path
serves the run and the dry run: in a dry run each step only counts the model calls and training
runs it would make (`Bench.tally`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from selfguide import interruptible, layout, progress
from selfguide.backends.cache import CachedModel, CallCache, CallStats
from selfguide.backends.capabilities import capabilities
from selfguide.backends.factory import cached_model
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.resolve import resolve_models
from selfguide.benchmark.grid import Setting
from selfguide.config import RunConfig, load_config
from selfguide.engine import Engine, Folders, Tally, evaluate_untrained, finetune_evaluate, make_data
from selfguide.errors import BudgetExceeded
from selfguide.io import write_json, write_text
from selfguide.methods import MethodConfig, MethodContext, get_method
from selfguide.prompts.task import pair_of
from selfguide.runfolder import make_folder
from selfguide.tasks.load import load_task
from selfguide.tasks.spec import TaskSpec
from selfguide.tasks.superni import find_superni_task, superni_root_default


@dataclass
class BenchOptions:
    out: Path
    tasks: list[str] | None = None  # None: all 22
    grid: list[Setting] = field(default_factory=list)
    setting: Setting | None = None  # skips tuning
    limit: int | None = None
    eval_split: str = "selfguide"  # or "official"
    max_calls: int | None = None
    parallel: int | None = None  # tasks at once; None: default_parallel(model)
    progress: bool = True
    superni_root: Path | None = None
    cache: Path | None = None  # unset: <out>/cache.sqlite
    baselines: list[str] | None = None  # held-out columns to run besides prompting and self_guide; None: all
    executor: str = "local"  # or "ray": each part a Ray task (scale/ray_executor.py)
    ray_address: str | None = None  # the Ray cluster to join; None: the one this process runs in, or a new local one


class Bench:
    def __init__(self, base: RunConfig, options: BenchOptions, dry_run: bool = False):
        self.models = resolve_models(base)
        self.base, self.options, self.dry_run = self.models.config, options, dry_run
        self.tally = Tally()
        self.made: dict[Path, list[dict] | None] = {}  # data folder -> its dataset rows
        self.splits: dict[str, str] = {}  # the eval split each task was loaded with
        self.counted: set[tuple[str, str]] = set()  # (task, calls key) whose synthesis calls the tally holds
        self.stats = CallStats()  # every call of the bench (in a part's view, of the part), and the --max-calls budget
        cache = options.cache or options.out / layout.CACHE
        if dry_run and not Path(cache).exists():
            cache = ":memory:"  # a dry run creates nothing, not even the bench folder
        else:
            make_folder(options.out)
        self.cache = CallCache(cache)
        self.open_models()

    def open_models(self) -> None:
        """The models the bench calls, counting into its stats, and the engine that opens the rest."""
        self.model = self.open_model(self.base.model)
        self.engine = Engine(self.models, self.open_model, self.options.progress, self.tally if self.dry_run else None, self.model)

    def open_model(self, config: ModelConfig) -> CachedModel:
        return cached_model(config, self.cache, max_calls=self.options.max_calls, progress=self.options.progress, stats=self.stats)

    def close_models(self) -> None:
        self.model.close()

    def close(self) -> None:
        self.close_models()
        self.cache.close()

    @contextlib.contextmanager
    def part(self) -> Iterator[Bench]:
        """The bench as one part of the work sees it while parts run at once (`run_parallel`): the
        same models, each loaded once, through CachedModels of its own that count its calls apart
        (so each eval's and each dataset's cost is its own) and into the bench's total and budget."""
        view = copy.copy(self)
        view.stats = CallStats(parent=self.stats)
        view.open_models()
        try:
            yield view
        finally:
            view.close_models()

    # ---- tasks -------------------------------------------------------------------------

    def load(self, name: str, phase: str) -> TaskSpec | None:
        path = find_superni_task(name, self.options.superni_root)
        if path is None:
            return None
        split = "official"
        if self.options.eval_split == "selfguide":
            root = self.options.superni_root or superni_root_default()
            candidate = "selfguide-validation" if phase == "tuning" else "selfguide-test"
            folder = "validation" if phase == "tuning" else "test"
            if (Path(root) / "selfguide_splits" / folder / f"{name}.jsonl").exists():
                split = candidate
        task = load_task(path, split, self.options.superni_root)  # type: ignore[arg-type]
        self.splits[name] = split
        if self.options.limit:
            task = task.model_copy(update={"eval": task.eval[: self.options.limit]})
        return task

    def setting_config(self, setting: Setting) -> RunConfig:
        return load_config(overrides=setting.overrides(), base=self.base)

    # ---- one column, through the run engine (each step runs or counts) -------------------

    def system(
        self, task: TaskSpec, config: RunConfig, folder: Path, name: str, data_folder: Path | None = None, calls_key: str | None = None
    ) -> tuple[dict | None, list[dict] | None]:
        """The method of `config.synth` makes its data in `data_folder` (default <folder>/synth); the
        model is finetuned on it in <folder>/train and evaluated in <folder>/eval, or an
        inference-time method evaluates the untrained model its own way in <folder>. Returns the
        metrics (None in a dry run, or with no data to train on) and the data rows (None before they exist)."""
        method = get_method(config.synth.method)
        data_folder = data_folder or folder / layout.SYNTH
        rows = self.data(task, config, data_folder, calls_key)
        if method.evaluate is None:
            pairs = None if rows is None else [pair_of(row) for row in rows]
            return finetune_evaluate(self.engine, task, config, pairs, Folders(data_folder, folder / layout.TRAIN, folder / layout.EVAL), name)[1], rows
        return evaluate_untrained(self.engine, method, self.context(task, config, data_folder), config, folder, name), rows

    def context(self, task: TaskSpec | None, config: RunConfig, data_folder: Path) -> MethodContext:
        return MethodContext(task, self.model, data_folder, config.seed, progress=self.options.progress, weights=self.models.weights)

    def data(self, task: TaskSpec, config: RunConfig, folder: Path, calls_key: str | None) -> list[dict] | None:
        """The method's dataset rows, made once per folder. `calls_key` names what its model calls
        depend on: settings that differ only after the calls (the output filter) share them
        through the cache, so the dry run counts them once."""
        if folder not in self.made:
            key = (task.name, calls_key or str(folder))
            count = key not in self.counted
            self.counted.add(key)
            self.made[folder] = make_data(self.engine, get_method(config.synth.method), self.context(task, config, folder), config, count=count)
        return self.made[folder]


def with_method(config: RunConfig, method: MethodConfig) -> RunConfig:
    return config.model_copy(update={"synth": method})


def unchanged_if_empty(metrics: dict | None, rows: list[dict] | None, prompting: dict | None) -> dict | None:
    """No data to finetune on leaves the model as it was: its score is prompting's."""
    return metrics if metrics is not None or rows is None else prompting


def tasks_of(groups: dict[str, list[str]], wanted: list[str] | None) -> list[str]:
    names = [name for group in groups.values() for name in group]
    return [n for n in names if wanted is None or n in wanted]


GATHER = 0.02  # seconds a task's call to the in-process model waits for other tasks' calls, to share one backend call


def default_parallel(model: ModelConfig) -> int:
    """Tasks at once when --parallel is not given: 4 on a server; 2 for an hf model on a GPU, where
    one task's calls leave the model room for another's, but each task's finetuned model is a full
    copy of the weights (its LoRA merged) beside the base; 1 for a model in-process on the CPU,
    where tasks at once only share out its cores, and for vLLM, where each finetuned model is an
    engine that takes its own share of GPU memory (model.gpu_memory_utilization)."""
    if not capabilities(model.backend).in_process:
        return 4
    if model.backend == "hf":
        import torch

        on_gpu = model.device.startswith("cuda") or (model.device == "auto" and torch.cuda.is_available())
        return 2 if on_gpu else 1
    return 1


def run_parallel(bench: Bench, names: list[str], work: Callable[[Bench, str], object], model: CachedModel | None = None) -> dict:
    """`work(bench, name)` for every name, up to --parallel at once, each in a thread with its own
    view of the bench (`Bench.part`). A server takes the threads' calls as they come; an in-process
    model is loaded once and merges their calls into shared batches (the threads are producers of
    `model`, the bench's by default, so their calls to it gather: backends/batcher.py), and
    trainings take turns (selfguide/global_rng.py). The first error, or Ctrl-C, stops the run at
    once: work not started is cancelled, and the work running is left to its daemon thread (its
    finished calls are cached), except at the --max-calls budget, where the running work stops at
    the budget too and is waited for."""
    if bench.options.executor == "ray" and not bench.dry_run:  # --executor ray: each part a Ray task
        from selfguide.scale.ray_executor import run_on_ray

        return run_on_ray(bench, names, work)
    workers = min(bench.options.parallel or default_parallel(bench.base.model), len(names))
    if workers <= 1 or bench.dry_run:
        return {name: work(bench, name) for name in names}
    futures: dict[str, Future] = {name: Future() for name in names}
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in futures.items():
        todo.put(item)

    def serve() -> None:
        with (model or bench.model).producer(GATHER):
            while True:
                try:
                    name, future = todo.get_nowait()
                except queue.Empty:
                    return
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    with bench.part() as part, progress.labelled(name):
                        result = work(part, name)
                except BaseException as err:  # handed to the main thread through the future
                    future.set_exception(err)
                else:
                    future.set_result(result)  # once the part's models are closed

    for k in range(workers):
        interruptible.work_thread(serve, f"bench-{k}")
    try:
        interruptible.results(futures.values())
    except BaseException as err:
        for future in futures.values():
            future.cancel()
        if isinstance(err, BudgetExceeded):
            interruptible.wait_all(futures.values())
        raise
    return {name: future.result() for name, future in futures.items()}


def summed_plans(plans: list[dict]) -> dict:
    """The dry-run plans of several seeds' runs, added up."""
    plan = {key: sum(p[key] for p in plans) for key in ("model_calls_at_least", "model_calls_at_most", "generated_tokens_at_most", "training_runs")}
    plan["by_stage"] = {stage: [sum(p["by_stage"].get(stage, [0, 0])[i] for p in plans) for i in (0, 1)] for stage in plans[0]["by_stage"]}
    return plan


def bench_per_seed(
    base: RunConfig, options: BenchOptions, seeds: list[int], run: Callable[[RunConfig, BenchOptions], dict], dry_run: bool, shared_keys: tuple[str, ...], markdown: Callable[[dict], str]
) -> dict:
    """`run` once per seed (synthesis and training seeds alike), each in <out>/seed-<s>/ with one
    shared call cache; then the seeds' runs in <out>/results.* (`markdown` makes results.md), with
    `shared_keys` taken from the first run. One seed runs in <out> itself."""

    def seeded(seed: int) -> RunConfig:
        return base.model_copy(update={"seed": seed, "train": base.train.model_copy(update={"seed": seed})})

    if len(seeds) == 1:
        return run(seeded(seeds[0]), options)
    runs = {}
    for seed in seeds:
        seed_options = dataclasses.replace(options, out=options.out / f"seed-{seed}", cache=options.cache or options.out / layout.CACHE)
        runs[seed] = run(seeded(seed), seed_options)
    first = runs[seeds[0]]
    if dry_run:
        return first | {"plan": summed_plans([r["plan"] for r in runs.values()]), "seeds": seeds}
    summary = {key: first[key] for key in shared_keys}
    summary |= {"seeds": seeds, "per_seed": {str(seed): r for seed, r in runs.items()}}
    write_json(options.out / "results.json", summary)
    write_text(options.out / "results.md", markdown(summary))
    return summary

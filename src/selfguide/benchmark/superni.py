"""`selfguide bench superni`: the SELF-GUIDE protocol on the SuperNI tasks of SPEC §3.

Tuning phase: every grid setting on every tuning task (validation sets), gain over prompting,
the max-min rule picks one setting. Held-out phase: that setting and the four baselines of
SPEC §2.6 on every held-out task (test sets). Every column is a method (selfguide.methods): it
makes its data, then the model is finetuned on it and evaluated, or an inference-time method
evaluates the model its own way. One code path serves the run and the dry run: in a dry run each
stage only counts the model calls and training runs it would make.

Layout under --out: cache.sqlite (every model call), <phase>/<task>/prompting/,
<phase>/<task>/synth-<T,input filter>/, <phase>/<task>/<setting>/{train,eval}/, heldout/<task>/
{few_shot,in_context,filtered}/, <setting>/gold/, then results.{md,csv,json} and chosen_setting.json.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import queue
import statistics
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from selfguide import interruptible, layout, progress
from selfguide.api import pairs_of, train_on_pairs, trained_model_config
from selfguide.backends.cache import CachedModel, CallCache, CallStats
from selfguide.backends.factory import cached_model
from selfguide.backends.model_config import ModelConfig
from selfguide.benchmark.grid import PAPER_GAINS, TUNING, Setting, extra_held_out, select_setting
from selfguide.config import RunConfig, config_yaml, load_config
from selfguide.errors import BadInputError, BudgetExceeded
from selfguide.eval.evaluate import evaluate, planned_calls
from selfguide.io import read_json, read_jsonl, write_json, write_text
from selfguide.methods import MethodConfig, MethodContext, get_method, synthesize
from selfguide.methods.baselines import FewShotFinetuneConfig, GoldFinetuneConfig, PromptingConfig, PromptingWithFiltersConfig, SyntheticInContextConfig
from selfguide.plan import Calls
from selfguide.runfolder import make_folder
from selfguide.tasks.load import load_task
from selfguide.tasks.spec import TaskSpec
from selfguide.tasks.superni import find_superni_task, superni_root_default

BASELINES = ["prompting", "few_shot_finetune", "synthetic_in_context", "prompting_with_filters", "self_guide", "gold_finetune"]


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


@dataclass
class Plan:
    """What a dry run counts: model calls (at least / at most) and training runs."""

    calls: int = 0  # certain
    calls_upper: int = 0  # at most, when some stage sizes depend on what the filters keep
    tokens_upper: int = 0
    training_runs: int = 0
    by_stage: dict = field(default_factory=dict)

    def add(self, stage: str, calls: Calls) -> None:
        self.calls += calls.at_least
        self.calls_upper += calls.at_most
        self.tokens_upper += calls.tokens
        row = self.by_stage.setdefault(stage, [0, 0])
        row[0] += calls.at_least
        row[1] += calls.at_most

    def as_dict(self) -> dict:
        return {"model_calls_at_least": self.calls, "model_calls_at_most": self.calls_upper, "generated_tokens_at_most": self.tokens_upper, "training_runs": self.training_runs, "by_stage": self.by_stage}


class Bench:
    def __init__(self, base: RunConfig, options: BenchOptions, dry_run: bool = False):
        self.base, self.options, self.dry_run = base, options, dry_run
        self.plan = Plan()
        self.made: dict[Path, list[dict] | None] = {}  # data folder -> its dataset rows
        self.splits: dict[str, str] = {}  # the eval split each task was loaded with
        self.counted: set[tuple[str, str]] = set()  # (task, calls key) whose synthesis calls the plan holds
        self.stats = CallStats()  # every call of the bench (in a part's view, of the part), and the --max-calls budget
        cache = options.cache or options.out / layout.CACHE
        if dry_run and not Path(cache).exists():
            cache = ":memory:"  # a dry run creates nothing, not even the bench folder
        else:
            make_folder(options.out)
        self.cache = CallCache(cache)
        self.open_models()

    def open_models(self) -> None:
        """The models the bench calls, counting into its stats."""
        self.model = self.open_model(self.base.model)

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

    # ---- one column: a method's data, then finetuning and evaluation (each runs or counts) ----

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
            return self.finetune_eval(task, config, rows, data_folder, folder, name), rows
        ctx = self.context(task, config, data_folder)
        if self.dry_run:
            self.plan.add(f"eval: {name}", method.evaluate_plan(ctx, config.synth, config.eval))
            return None, rows
        return method.evaluate(ctx, config.synth, config.eval, folder, name), rows

    def context(self, task: TaskSpec, config: RunConfig, data_folder: Path) -> MethodContext:
        return MethodContext(task, self.model, data_folder, config.seed, progress=self.options.progress)

    def data(self, task: TaskSpec, config: RunConfig, folder: Path, calls_key: str | None) -> list[dict] | None:
        """The method's dataset rows, made once per folder. `calls_key` names what its model calls
        depend on: settings that differ only after the calls (the output filter) share them
        through the cache, so the dry run counts them once."""
        if folder not in self.made:
            method, ctx = get_method(config.synth.method), self.context(task, config, folder)
            if self.dry_run:
                key = (task.name, calls_key or str(folder))
                if key not in self.counted:
                    self.counted.add(key)
                    for stage, calls in method.plan(ctx, config.synth).items():
                        self.plan.add(f"synthesis: {stage}", calls)
                done = (folder / layout.SUMMARY).exists()
                self.made[folder] = read_jsonl(folder / layout.DATASET) if done else None
            else:
                synthesize(method, ctx, config.synth)
                self.made[folder] = read_jsonl(folder / layout.DATASET)
        return self.made[folder]

    def finetune_eval(self, task: TaskSpec, config: RunConfig, rows: list[dict] | None, data_folder: Path, folder: Path, name: str) -> dict | None:
        if self.dry_run:
            if rows is None or rows:
                self.plan.training_runs += 1
                self.plan.add(f"eval: {name}", planned_calls(task, self.model, config.eval))
            return None
        if not rows:
            return None
        # A method may ask for training settings of its own (few-shot finetuning: 3 epochs).
        settings = read_json(data_folder / layout.SUMMARY).get("train") or {}
        config = config.model_copy(update={"train": config.train.model_copy(update=settings)})
        trained = train_on_pairs(config, task, pairs_of(rows), folder / layout.TRAIN, progress=self.options.progress)
        model = self.open_model(trained_model_config(config.model, trained))
        try:
            return evaluate(task, model, config.eval, folder / layout.EVAL, name=name)
        finally:
            model.close()


def with_method(config: RunConfig, method: MethodConfig) -> RunConfig:
    return config.model_copy(update={"synth": method})


def unchanged_if_empty(metrics: dict | None, rows: list[dict] | None, prompting: dict | None) -> dict | None:
    """No data to finetune on leaves the model as it was: its score is prompting's."""
    return metrics if metrics is not None or rows is None else prompting


# ---- phases --------------------------------------------------------------------------------


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
    if model.backend == "openai":
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


def tuning_phase(bench: Bench, tasks: dict[str, TaskSpec]) -> dict:
    """Every grid setting on every tuning task; gain = reported metric minus prompting."""
    out = bench.options.out / "tuning"
    settings = {name: list(dict.fromkeys(s.for_task(task.type) for s in bench.options.grid)) for name, task in tasks.items()}
    # The work in parts independent of each other: every task's prompting, then each task's settings
    # by the model calls of their synthesis. Settings that differ only after the calls (output
    # filter, epochs) run one after another, the first making the calls the others find in the cache.
    parts = {name: (name, None) for name in tasks}
    for name in tasks:
        parts |= {f"{name} {calls_key}": (name, calls_key) for calls_key in dict.fromkeys(s.calls_key for s in settings[name])}

    def run_part(bench: Bench, part: str):
        name, calls_key = parts[part]
        task, folder = tasks[name], out / name
        if calls_key is None:
            return bench.system(task, with_method(bench.base, PromptingConfig()), folder / "prompting", "prompting")[0]
        return {
            s.key: bench.system(task, bench.setting_config(s), folder / s.key, "self_guide", folder / f"synth-{s.synth_key}", s.calls_key)
            for s in settings[name]
            if s.calls_key == calls_key
        }

    done = run_parallel(bench, list(parts), run_part)
    if bench.dry_run:
        return {}
    results = {}
    for name, task in tasks.items():
        baseline, rows = done[name], {}
        for setting in settings[name]:
            metrics, pairs = done[f"{name} {setting.calls_key}"][setting.key]
            score = metrics["reported"] if metrics else baseline["reported"]  # no data: the model is unchanged
            rows[setting.key] = {"score": score, "gain": score - baseline["reported"], "pairs": len(pairs or [])}
        results[name] = {"baseline": baseline, "settings": rows, "eval_split": bench.splits[name], "eval_items": len(task.eval)}
    gains: dict[str, dict[str, float]] = {}
    for setting in bench.options.grid:
        gains[setting.key] = {name: r["settings"][setting.for_task(tasks[name].type).key]["gain"] for name, r in results.items()}
    chosen_key, worst = select_setting(gains)
    return {"tasks": results, "gains": gains, "chosen": chosen_key, "min_gain": worst}


def held_out_phase(bench: Bench, tasks: dict[str, TaskSpec], setting: Setting) -> dict:
    """The chosen setting and the baselines (SPEC §2.6) on each held-out task, on the same eval set."""
    out = bench.options.out / "heldout"

    def evaluate_task(bench: Bench, name: str) -> dict:
        task, folder = tasks[name], out / name
        effective = setting.for_task(task.type)
        config = bench.setting_config(effective)
        synth = (folder / f"synth-{effective.synth_key}", effective.calls_key)  # SELF-GUIDE's data, also what in-context shows
        prompting, _ = bench.system(task, with_method(config, PromptingConfig()), folder / "prompting", "prompting")
        self_guide, pairs = bench.system(task, config, folder / effective.key, "self_guide", *synth)
        results = {"prompting": prompting, "self_guide": unchanged_if_empty(self_guide, pairs, prompting)}
        wanted = set(bench.options.baselines or BASELINES)
        if "few_shot_finetune" in wanted:
            results["few_shot_finetune"] = bench.system(task, with_method(config, FewShotFinetuneConfig()), folder / "few_shot", "few_shot_finetune")[0]
        if "synthetic_in_context" in wanted:
            in_context = SyntheticInContextConfig(**config.synth.model_dump(exclude={"method"}))
            results["synthetic_in_context"] = bench.system(task, with_method(config, in_context), folder / "in_context", "synthetic_in_context", *synth)[0]
        if "prompting_with_filters" in wanted:
            filtered = PromptingWithFiltersConfig(outputs=config.synth.outputs)
            results["prompting_with_filters"] = bench.system(task, with_method(config, filtered), folder / "filtered", "prompting_with_filters")[0]
        if "gold_finetune" in wanted:
            # The ceiling trains on as many gold pairs as SELF-GUIDE made: with none, nothing to train.
            gold = GoldFinetuneConfig(pairs=None if pairs is None else len(pairs))
            metrics, gold_rows = bench.system(task, with_method(config, gold), folder / effective.key / "gold", "gold_finetune")
            results["gold_finetune"] = unchanged_if_empty(metrics, gold_rows, prompting)
        return {
            "type": task.type,
            "category": task.category,
            "eval_split": bench.splits[name],
            "eval_items": len(task.eval),
            "pairs": None if pairs is None else len(pairs),
            "untrained": pairs is not None and not pairs,
            "metrics": results,
        }

    return run_parallel(bench, list(tasks), evaluate_task)


def bench_superni(base: RunConfig, options: BenchOptions, dry_run: bool = False) -> dict:
    """Run (or count, with `dry_run`) the whole protocol and write the results files."""
    bench = Bench(base, options, dry_run)
    try:
        missing, tuning, held_out = [], {}, {}
        for phase, groups, into in (("tuning", TUNING, tuning), ("heldout", extra_held_out(options.tasks), held_out)):
            if phase == "tuning" and options.setting is not None:
                continue
            for name in tasks_of(groups, options.tasks):
                task = bench.load(name, phase)
                if task is None:
                    missing.append(name)
                else:
                    into[name] = task
        if not dry_run:
            write_text(options.out / "config.yaml", config_yaml(base))
        tuned = tuning_phase(bench, tuning) if tuning else {}
        if options.setting is not None:
            chosen = options.setting
        elif tuned:
            chosen = next(s for s in options.grid if s.key == tuned["chosen"])
        elif not bench.dry_run:
            from selfguide.errors import SelfGuideError

            raise SelfGuideError("no tuning task to choose a setting on: add tuning tasks to --tasks, or pass --setting")
        else:
            chosen = options.grid[0]
        heldout = held_out_phase(bench, held_out, chosen) if held_out else {}
        summary = {
            "missing_tasks": missing,
            "eval_split": options.eval_split,
            "limit": options.limit,
            "chosen_setting": chosen.as_dict() | {"key": chosen.key},
            "chosen_by": "--setting" if options.setting else "max-min gain over tuning tasks",
        }
        if dry_run:
            summary["plan"] = bench.plan.as_dict()
            summary["grid_size"] = 0 if options.setting is not None else len(options.grid)
            return summary
        summary |= {"tuning": tuned, "heldout": heldout, "model_calls": bench.stats.as_dict()}
        write_results(options.out, summary)
        return summary
    finally:
        bench.close()


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


def bench_superni_seeds(base: RunConfig, options: BenchOptions, seeds: list[int], dry_run: bool = False) -> dict:
    """The protocol once per seed, then every score as mean and spread over the seeds in <out>/results.*."""
    return bench_per_seed(
        base, options, seeds, lambda config, opts: bench_superni(config, opts, dry_run), dry_run,
        ("missing_tasks", "eval_split", "limit", "chosen_setting", "chosen_by"), seeds_markdown,
    )


def seeds_table(summary: dict, family: str) -> list[dict]:
    """Per task and per type average: each column's mean and standard deviation over the seeds."""
    per_seed = [result_rows(run["heldout"], family) for run in summary["per_seed"].values()]
    rows = []
    for i, row in enumerate(per_seed[0]):
        combined = {k: row[k] for k in ("task", "type", "metric")}
        combined["pairs"] = [rows_of_seed[i]["pairs"] for rows_of_seed in per_seed]
        for column in columns_run(next(iter(summary["per_seed"].values()))["heldout"]):
            values = [rows_of_seed[i][column] for rows_of_seed in per_seed]
            combined[column] = None if None in values else (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        rows.append(combined)
    return rows


def seeds_markdown(summary: dict) -> str:
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = ["# SELF-GUIDE on SuperNI", "", f"Setting `{summary['chosen_setting']['key']}` ({summary['chosen_by']}); seeds {seeds}: mean ± standard deviation over seeds.", ""]
    columns = columns_run(next(iter(summary["per_seed"].values()))["heldout"])
    for family, title in (("superni", "Official SuperNI metrics"), ("paper", "SELF-GUIDE paper's metric variant")):
        lines += [f"## {title}", "", "| task | metric | synthetic pairs per seed | " + " | ".join(columns) + " |", "|---|---|---|" + "---:|" * len(columns)]
        for row in seeds_table(summary, family):
            cells = ["-" if row[c] is None else f"{row[c][0]:.2f} ± {row[c][1]:.2f}" for c in columns]
            task = f"**{row['task']}**" if row["task"].startswith("average") else row["task"]
            pairs = "" if None in row["pairs"] else "/".join(str(p) for p in row["pairs"])
            lines.append(f"| {task} | {row['metric']} | {pairs} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Each seed's own tables and runs are in seed-<s>/.")
    return "\n".join(lines) + "\n"


# ---- results -------------------------------------------------------------------------------


# The paper reports exact match on classification and ROUGE-L on generation, whatever SuperNI's
# per-category choice (task346, Pos Tagging, would be ROUGE-L there); the tables follow the paper.
TABLE_METRICS = {
    "superni": {"classification": "exact_match", "generation": "rougeL"},
    "paper": {"classification": "paper_accuracy", "generation": "paper_char_lcs_f1"},
}


def parse_baselines(spec: str) -> list[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    optional = [c for c in BASELINES if c not in ("prompting", "self_guide")]
    for name in names:
        if name not in BASELINES:
            raise BadInputError("--baselines", repr(name), f"comma-separated names from {', '.join(optional)}")
    return names


def columns_run(heldout: dict) -> list[str]:
    """The table's columns: every baseline that ran on some held-out task, in the usual order."""
    return [c for c in BASELINES if any(c in result["metrics"] for result in heldout.values())]


def result_rows(heldout: dict, family: str) -> list[dict]:
    """One row per held-out task and one average per type, in the official SuperNI metric
    ("superni") or the SELF-GUIDE paper's variant ("paper") of that type."""
    rows = []
    for kind in ("classification", "generation"):
        metric = TABLE_METRICS[family][kind]
        kind_rows = []
        for name, result in heldout.items():
            if result["type"] != kind:
                continue
            row = {"task": name, "type": kind, "metric": metric, "pairs": result["pairs"], "eval_split": result.get("eval_split")}
            for column in columns_run(heldout):
                metrics = result["metrics"].get(column)
                row[column] = None if metrics is None else score_of(metrics, metric)
            kind_rows.append(row)
        if kind_rows:
            average = {"task": f"average ({kind})", "type": kind, "metric": metric, "pairs": None, "eval_split": None}
            for column in columns_run(heldout):
                values = [r[column] for r in kind_rows]
                average[column] = sum(values) / len(values) if None not in values else None
            rows += kind_rows + [average]
    return rows


def score_of(metrics: dict, metric: str) -> float:
    family = "paper" if metric.startswith("paper_") else "superni"
    return metrics[family][metric]


def results_markdown(summary: dict) -> str:
    lines = ["# SELF-GUIDE on SuperNI", ""]
    setting = summary["chosen_setting"]
    lines += [f"Chosen setting ({summary['chosen_by']}): `{setting['key']}`", ""]
    if summary["missing_tasks"]:
        lines += [f"Missing here (not in the SuperNI data): {', '.join(summary['missing_tasks'])}", ""]
    columns = columns_run(summary["heldout"])
    for family, title in (
        ("superni", "Official SuperNI metrics: exact match (classification), ROUGE-L (generation)"),
        ("paper", "SELF-GUIDE paper's metric variant: last-label accuracy (classification), character LCS F1 (generation)"),
    ):
        rows = result_rows(summary["heldout"], family)
        lines += [f"## {title}", "", "| task | metric | eval split | synthetic pairs | " + " | ".join(columns) + " |", "|---|---|---|---:|" + "---:|" * len(columns)]
        for row in rows:
            cells = [fmt(row[c]) for c in columns]
            task = f"**{row['task']}**" if row["task"].startswith("average") else row["task"]
            lines.append(f"| {task} | {row['metric']} | {row['eval_split'] or ''} | {'' if row['pairs'] is None else row['pairs']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Beside the paper", "", "| type | metric | paper gain (Vicuna-7B-v1.5) | our gain |", "|---|---|---:|---:|"]
    for row in result_rows(summary["heldout"], "superni"):
        if row["task"].startswith("average"):
            metric, paper_gain = PAPER_GAINS[row["type"]]
            ours = None if row["self_guide"] is None or row["prompting"] is None else row["self_guide"] - row["prompting"]
            lines.append(f"| {row['type']} | {metric} | +{paper_gain} | {fmt(ours, signed=True)} |")
    lines += ["", "Paper numbers are the published averages (SELF-GUIDE minus prompting on its held-out tasks), not rerun here."]
    if summary.get("tuning"):
        tuning = summary["tuning"]
        lines += ["", "## Tuning (gain over prompting per setting; the max-min rule picks the bold row)", ""]
        names = list(tuning["tasks"])
        lines += ["| setting | " + " | ".join(names) + " | min |", "|---|" + "---:|" * (len(names) + 1)]
        for key, gains in tuning["gains"].items():
            label = f"**{key}**" if key == tuning["chosen"] else key
            lines.append(f"| {label} | " + " | ".join(fmt(gains[n], signed=True) for n in names) + f" | {fmt(min(gains.values()), signed=True)} |")
    return "\n".join(lines) + "\n"


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def write_results(out: Path, summary: dict) -> None:
    write_json(out / "results.json", summary)
    write_json(out / "chosen_setting.json", {"setting": summary["chosen_setting"], "chosen_by": summary["chosen_by"]})
    write_text(out / "results.md", results_markdown(summary))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["family", "task", "type", "metric", "eval_split", "pairs", *columns_run(summary["heldout"])])
    writer.writeheader()
    for family in ("superni", "paper"):
        for row in result_rows(summary["heldout"], family):
            writer.writerow({"family": family, **row})
    write_text(out / "results.csv", buffer.getvalue())

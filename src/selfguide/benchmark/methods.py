"""`selfguide bench methods`: the family of methods side by side, on one model and the same tasks.

Every row is a recipe: a method and its synthesis settings, given as a method name (its settings
from the base config when that config is for the same method, else the method's defaults) or as a
YAML config, whose `synth` section (and `teacher`, if any) makes the row. Model, training and
evaluation come from the base config for every row, so rows differ only in how the training data
was made. Prompting, the model as it is, is the reference row; every gain is over it.

- A task-specific method (self-guide, rebase, backtranslation-task, the SuperNI baselines) makes
  data for each task; the model is finetuned on it and evaluated on that task, or an
  inference-time method evaluates the untrained model its own way.
- A general-purpose method (self-instruct, alpaca, backtranslation) makes one dataset for no
  task; the model is finetuned once, and that one model is evaluated on every task and on
  Self-Instruct's user-oriented instructions.

A method that keeps no data leaves the model as it was: its score is prompting's, marked so.
gold-finetune, the ceiling, trains on as many gold pairs (from outside the eval set) as SELF-GUIDE made
on the task when self-guide is a row too, as in `bench superni`; else on every gold pair, or `pairs` in its YAML.

Layout under --out: cache.sqlite (every model call), config.yaml, <task>/prompting/,
<task>/<recipe>/{synth,train,eval}/, general/<recipe>/{synth,train,eval/<task>,user-oriented}/,
user-oriented/prompting/, then results.{md,json}; with several --seeds, seed-<s>/ for each and the
mean and spread over seeds in <out>/results.{md,json}.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from selfguide import layout
from selfguide.backends.cache import CachedModel
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.resolve import require_teacher
from selfguide.benchmark.grid import HELD_OUT
from selfguide.benchmark.runner import Bench, BenchOptions, bench_per_seed, run_parallel, tasks_of, unchanged_if_empty, with_method
from selfguide.benchmark.scores import TABLE_METRICS, fmt, score_of
from selfguide.config import RunConfig, config_yaml, load_config
from selfguide.engine import count_eval, make_data, train
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.eval.evaluate import evaluate
from selfguide.eval.user_oriented import evaluate_user_oriented, user_oriented_texts
from selfguide.prompts.task import pair_of
from selfguide.tasks.self_instruct import load_user_oriented
from selfguide.io import write_json, write_text
from selfguide.summary import read_summary
from selfguide.methods import MethodConfig, MethodContext, get_method, method_config
from selfguide.methods.baselines import GoldFinetuneConfig, PromptingConfig
from selfguide.plan import Calls
from selfguide.tasks.spec import TaskSpec

REFERENCE = "prompting"
GENERAL = "general"  # the folder of general-purpose methods' runs
USER_ORIENTED = "user-oriented"


@dataclass(frozen=True)
class Recipe:
    """One row: a method with its synthesis settings, and the teacher that writes for it, if any."""

    name: str  # the method's name, or the recipe file's stem
    synth: MethodConfig
    teacher: ModelConfig | None = None

    @property
    def general(self) -> bool:
        return get_method(self.synth.method).general


def parse_recipes(items: list[str], base: RunConfig) -> list[Recipe]:
    """`--methods self-guide,alpaca,configs/rebase-cpu.yaml`: method names or YAML configs."""
    recipes: dict[str, Recipe] = {}
    for item in (part.strip() for entry in items for part in entry.split(",")):
        if not item:
            continue
        if item.endswith((".yaml", ".yml")) or "/" in item:
            path = Path(item)
            if not path.is_file():
                raise BadInputError("--methods", repr(item), "a method name (see `selfguide methods`) or an existing YAML config file")
            config = require_teacher(load_config(path))
            recipe = Recipe(path.stem, config.synth, config.teacher)
        else:
            get_method(item, "--methods")
            synth = base.synth if base.synth.method == item else method_config({"method": item})
            recipe = Recipe(item, synth, base.teacher)
        if recipe.name == REFERENCE or recipe.synth.method == REFERENCE:
            continue  # always the reference row
        if recipe.name in recipes:
            raise BadInputError("--methods", repr(item), "each row once: two recipes are named the same")
        recipes[recipe.name] = recipe
    if not recipes:
        raise BadInputError("--methods", "value", "at least one method besides prompting, e.g. self-guide,alpaca")
    return list(recipes.values())


class MethodsBench(Bench):
    """The held-out tasks, one shared call cache and model; teachers loaded once each."""

    def open_models(self) -> None:
        super().open_models()
        self.teachers: dict[str, CachedModel] = {}

    def context(self, task: TaskSpec | None, config: RunConfig, data_folder: Path) -> MethodContext:
        ctx = super().context(task, config, data_folder)
        ctx.teacher = self.teacher(config)
        return ctx

    def teacher(self, config: RunConfig) -> CachedModel | None:
        if config.teacher is None:
            return None
        key = config.teacher.model_dump_json()
        if key not in self.teachers:
            self.teachers[key] = self.open_model(config.teacher)
        return self.teachers[key]

    def close_models(self) -> None:
        for teacher in self.teachers.values():
            teacher.close()
        super().close_models()


def recipe_config(base: RunConfig, recipe: Recipe) -> RunConfig:
    return with_method(base, recipe.synth).model_copy(update={"teacher": recipe.teacher})


# ---- one row ---------------------------------------------------------------------------------


def task_row(bench: MethodsBench, recipe: Recipe, tasks: dict[str, TaskSpec], prompting: dict, self_guide_pairs: dict[str, int | None]) -> dict:
    """A task-specific method on each task: its data, then finetuning and evaluation."""
    config = recipe_config(bench.base, recipe)
    finetunes = get_method(recipe.synth.method).evaluate is None

    def on_task(bench: MethodsBench, name: str) -> tuple[dict | None, list[dict] | None, str | None]:
        """The metrics, the data rows, and why the method does not apply to the task (or None)."""
        task_config = config
        if isinstance(recipe.synth, GoldFinetuneConfig) and recipe.synth.pairs is None and self_guide_pairs.get(name) is not None:
            # The ceiling trains on as many gold pairs as SELF-GUIDE made, as in `bench superni`.
            task_config = with_method(config, recipe.synth.model_copy(update={"pairs": self_guide_pairs[name]}))
        try:
            metrics, rows = bench.system(tasks[name], task_config, bench.options.out / name / recipe.name, recipe.name)
        except BadInputError as err:  # a method for other task types (backtranslation-task on a classification task)
            return None, None, str(err)
        return metrics, rows, None

    row = {"method": recipe.synth.method, "general": False, "pairs": {}, "untrained": {}, "metrics": {}, "funnel": {}, "not_applicable": {}}
    for name, (metrics, rows, not_applicable) in run_parallel(bench, list(tasks), on_task).items():
        if not_applicable is not None:
            row["pairs"][name], row["untrained"][name], row["metrics"][name], row["funnel"][name] = None, False, None, None
            row["not_applicable"][name] = not_applicable
            continue
        row["pairs"][name] = None if rows is None else len(rows)
        row["untrained"][name] = finetunes and rows is not None and not rows
        row["metrics"][name] = unchanged_if_empty(metrics, rows, prompting.get(name)) if finetunes else metrics
        row["funnel"][name] = funnel(bench.options.out / name / recipe.name / layout.SYNTH)
    return row


def general_row(bench: MethodsBench, recipe: Recipe, tasks: dict[str, TaskSpec], prompting: dict, reference_user: dict | None, user_oriented: bool) -> dict:
    """A general-purpose method: one dataset, one finetuning, that model on every task (and on
    the user-oriented instructions). With no data the model is prompting's."""
    config = recipe_config(bench.base, recipe)
    method = get_method(recipe.synth.method)
    folder = bench.options.out / GENERAL / recipe.name
    eval_texts = [item.input for task in tasks.values() for item in task.eval]
    if user_oriented:
        eval_texts += user_oriented_texts(config.eval.user_oriented)
    ctx = bench.context(None, config, folder / layout.SYNTH)
    ctx.eval_texts = tuple(eval_texts)
    row = {"method": recipe.synth.method, "general": True, "pairs": {}, "untrained": {}, "metrics": {}, "funnel": {GENERAL: None}, "user_oriented": None}
    rows = make_data(bench.engine, method, ctx, config)
    if bench.dry_run:
        if rows is None or rows:
            bench.tally.training_runs += 1
            for task in tasks.values():
                count_eval(bench.engine, task, config, recipe.name)
            if user_oriented:
                bench.tally.add(f"eval: {recipe.name} user-oriented", user_oriented_calls(config))
        return row
    row["funnel"][GENERAL] = funnel(folder / layout.SYNTH)
    for name in tasks:
        row["pairs"][name], row["untrained"][name] = len(rows), not rows
    if not rows:
        row["metrics"], row["user_oriented"] = dict(prompting), reference_user
        return row
    trained = train(bench.engine, None, config, [pair_of(r) for r in rows], folder / layout.SYNTH, folder / layout.TRAIN)
    tuned = bench.models.finetuned(trained)

    def evaluate_on(bench: MethodsBench, name: str) -> dict:
        task_model = bench.open_model(tuned)  # loaded once: `model` holds it for the row
        try:
            return evaluate(tasks[name], task_model, config.eval, folder / layout.EVAL / name, name=recipe.name)
        finally:
            task_model.close()

    model = bench.open_model(tuned)
    try:
        row["metrics"] = run_parallel(bench, list(tasks), evaluate_on, model)
        if user_oriented:
            row["user_oriented"] = evaluate_user_oriented(model, config.eval.user_oriented, folder / USER_ORIENTED, name=recipe.name)
    finally:
        model.close()
    return row


def user_oriented_calls(config: RunConfig) -> Calls:
    n = len(load_user_oriented(config.eval.user_oriented.path))
    n = min(n, config.eval.user_oriented.limit or n)
    return Calls.exact(n, n * config.eval.user_oriented.max_new_tokens)


def funnel(synth_dir: Path) -> dict | None:
    """What the method's data went through: its funnel rows and final pair count (summary.json)."""
    summary = read_summary(synth_dir / layout.SUMMARY)
    if summary is None:
        return None
    calls = summary.calls_so_far()
    return {"stages": [row.model_dump() for row in summary.stages], "pairs": summary.pairs, "model_calls": calls.model_dump() if calls else None}


# ---- the bench -------------------------------------------------------------------------------


def bench_methods(base: RunConfig, options: BenchOptions, recipes: list[Recipe], user_oriented: bool | None = None, dry_run: bool = False) -> dict:
    """Every recipe on every held-out task (or `options.tasks`): run it, or count it with `dry_run`."""
    user_oriented = any(r.general for r in recipes) if user_oriented is None else user_oriented
    bench = MethodsBench(base, options, dry_run)
    try:
        tasks, missing = {}, []
        for name in options.tasks or tasks_of(HELD_OUT, None):
            task = bench.load(name, "heldout")
            if task is None:
                missing.append(name)
            else:
                tasks[name] = task
        if not tasks:
            raise SelfGuideError(f"no task to benchmark on: {', '.join(missing)} not found in the SuperNI data")
        if not dry_run:
            write_text(options.out / layout.CONFIG, config_yaml(base))
        prompting = run_parallel(bench, list(tasks), lambda part, name: part.system(tasks[name], with_method(base, PromptingConfig()), options.out / name / REFERENCE, REFERENCE)[0])
        reference_user = None
        if user_oriented:
            if dry_run:
                bench.tally.add("eval: prompting user-oriented", user_oriented_calls(base))
            else:
                reference_user = evaluate_user_oriented(bench.model, base.eval.user_oriented, options.out / USER_ORIENTED / REFERENCE, name=REFERENCE)
        rows = {}
        self_guide_pairs: dict[str, int | None] = {}
        for recipe in sorted(recipes, key=lambda r: r.synth.method != "self-guide"):  # SELF-GUIDE first: gold-finetune matches its pairs
            if recipe.general:
                rows[recipe.name] = general_row(bench, recipe, tasks, prompting, reference_user, user_oriented)
            else:
                rows[recipe.name] = task_row(bench, recipe, tasks, prompting, self_guide_pairs)
                if recipe.synth.method == "self-guide" and not self_guide_pairs:
                    self_guide_pairs = rows[recipe.name]["pairs"]
        rows = {recipe.name: rows[recipe.name] for recipe in recipes}
        summary = {
            "missing_tasks": missing,
            "eval_split": options.eval_split,
            "limit": options.limit,
            "tasks": {name: {"type": task.type, "metric": TABLE_METRICS["superni"][task.type], "eval_split": bench.splits[name], "eval_items": len(task.eval)} for name, task in tasks.items()},
            "recipes": {r.name: {"method": r.synth.method, "general": r.general, "teacher": r.teacher.name if r.teacher else None} for r in recipes},
        }
        if dry_run:
            return summary | {"plan": bench.tally.as_dict()}
        summary |= {"prompting": {"metrics": prompting, "user_oriented": reference_user}, "rows": rows, "model_calls": bench.stats.as_dict()}
        write_json(options.out / "results.json", summary)
        write_text(options.out / "results.md", results_markdown(summary))
        return summary
    finally:
        bench.close()


def bench_methods_seeds(base: RunConfig, options: BenchOptions, recipes: list[Recipe], seeds: list[int], user_oriented: bool | None = None, dry_run: bool = False) -> dict:
    """The bench once per seed, then every cell as mean and spread over the seeds."""
    return bench_per_seed(
        base, options, seeds, lambda config, opts: bench_methods(config, opts, recipes, user_oriented, dry_run), dry_run,
        ("missing_tasks", "eval_split", "limit", "tasks", "recipes"), seeds_markdown,
    )


# ---- results ---------------------------------------------------------------------------------


def table_cells(summary: dict) -> dict[str, dict[str, float | None]]:
    """Row name -> column -> score: each task, the per-type averages, the gain over prompting
    (mean over tasks) and the user-oriented ROUGE-L."""
    tasks = summary["tasks"]
    rows = {REFERENCE: {"metrics": summary["prompting"]["metrics"], "user_oriented": summary["prompting"]["user_oriented"]}} | summary["rows"]
    reference = {name: score_of(m, tasks[name]["metric"]) for name, m in summary["prompting"]["metrics"].items()}
    cells = {}
    for row_name, row in rows.items():
        scores = {name: None if row["metrics"].get(name) is None else score_of(row["metrics"][name], tasks[name]["metric"]) for name in tasks}
        row_cells = dict(scores)
        for kind in ("classification", "generation"):
            values = [scores[n] for n in tasks if tasks[n]["type"] == kind]
            row_cells[kind] = statistics.fmean(values) if values and None not in values else None
        known = [scores[n] - reference[n] for n in tasks if scores[n] is not None]  # over the tasks the method applies to
        row_cells["gain"] = statistics.fmean(known) if known else None
        user = row.get("user_oriented")
        row_cells[USER_ORIENTED] = None if user is None else user["rougeL"]
        cells[row_name] = row_cells
    return cells


def columns(summary: dict) -> list[str]:
    run = next(iter(summary["per_seed"].values())) if summary.get("per_seed") else summary
    kinds = [k for k in ("classification", "generation") if any(t["type"] == k for t in summary["tasks"].values())]
    user = [USER_ORIENTED] if run["prompting"]["user_oriented"] is not None else []
    return [*summary["tasks"], *kinds, "gain", *user]


def column_title(summary: dict, column: str) -> str:
    if column in summary["tasks"]:
        return f"{column} ({summary['tasks'][column]['metric']})"
    return {"classification": "avg classification", "generation": "avg generation", "gain": "gain over prompting", USER_ORIENTED: "user-oriented ROUGE-L"}[column]


def row_label(summary: dict, name: str) -> str:
    if name == REFERENCE:
        return REFERENCE
    recipe = summary["recipes"][name]
    scope = "general" if recipe["general"] else "per task"
    teacher = f", teacher {recipe['teacher']}" if recipe["teacher"] else ""
    label = name if name == recipe["method"] else f"{name} ({recipe['method']})"
    return f"{label} [{scope}{teacher}]"


def pairs_cell(row: dict | None) -> str:
    if row is None:
        return ""
    counts = list(row["pairs"].values())
    if row["general"]:
        return str(counts[0]) if counts else "-"
    return "/".join("-" if c is None else str(c) for c in counts)


def untrained_note(row: dict | None) -> str:
    return " (no data: the model unchanged)" if row and any(row["untrained"].values()) else ""


def results_markdown(summary: dict) -> str:
    cols = columns(summary)
    cells = table_cells(summary)
    lines = ["# Methods on SuperNI held-out tasks", ""]
    lines += [f"Eval: {summary['eval_split']} split" + (f", first {summary['limit']} items" if summary["limit"] else "") + ". Gain: the row's mean over tasks minus prompting's.", ""]
    if summary["missing_tasks"]:
        lines += [f"Missing here (not in the SuperNI data): {', '.join(summary['missing_tasks'])}", ""]
    lines += ["| method | pairs | " + " | ".join(column_title(summary, c) for c in cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for name, row_cells in cells.items():
        row = summary["rows"].get(name)
        lines.append(f"| {row_label(summary, name)}{untrained_note(row)} | {pairs_cell(row)} | " + " | ".join(fmt(row_cells[c], signed=c == "gain") for c in cols) + " |")
    lines += ["", "Pairs: per task in task order (a general-purpose method's one dataset serves every task).", ""]
    for name, row in summary["rows"].items():
        for task, reason in row.get("not_applicable", {}).items():
            lines.append(f"- {name} on {task}: not applicable ({reason}); its gain is over the other tasks.")
    lines.append("")
    lines += funnel_markdown(summary)
    return "\n".join(lines) + "\n"


def funnel_markdown(summary: dict) -> list[str]:
    """Where each method's data went: per stage, kept of entered and the drops by reason."""
    lines = ["## Data funnel", "", "| method | data for | stage | in | kept | drops by reason |", "|---|---|---|---:|---:|---|"]
    for name, row in summary["rows"].items():
        for target, funnel_row in row["funnel"].items():
            for stage in (funnel_row or {}).get("stages", []):
                reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(stage["dropped"].items(), key=lambda kv: -kv[1])) or "-"
                lines.append(f"| {name} | {target} | {stage['stage']} ({stage['unit']}) | {stage['total']} | {stage['kept']} | {reasons} |")
    return lines + [""]


def seeds_markdown(summary: dict) -> str:
    per_seed = list(summary["per_seed"].values())
    cols = columns(summary)
    all_cells = [table_cells(run) for run in per_seed]
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = ["# Methods on SuperNI held-out tasks", "", f"Seeds {seeds}: mean ± standard deviation over seeds. Gain: the row's mean over tasks minus prompting's.", ""]
    lines += ["| method | pairs per seed | " + " | ".join(column_title(summary, c) for c in cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for name in all_cells[0]:
        row_cells = []
        for column in cols:
            values = [cells[name][column] for cells in all_cells]
            if None in values:
                row_cells.append("-")
            else:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                row_cells.append(f"{fmt(statistics.fmean(values), signed=column == 'gain')} ± {spread:.2f}")
        rows = [run["rows"].get(name) for run in per_seed]
        pairs = "; ".join(pairs_cell(row) for row in rows) if rows[0] else ""
        lines.append(f"| {row_label(summary, name)}{untrained_note(rows[0])} | {pairs} | " + " | ".join(row_cells) + " |")
    lines += ["", "Each seed's tables, with the data funnel, are in seed-<s>/results.md."]
    return "\n".join(lines) + "\n"

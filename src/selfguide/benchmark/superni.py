"""`selfguide bench superni`: the SELF-GUIDE protocol on the paper's SuperNI tasks (docs/paper-protocol.md).

Tuning phase: every grid setting on every tuning task (validation sets), gain over prompting,
the max-min rule picks one setting. Held-out phase: that setting and the four baselines of
the paper (docs/methods.md) on every held-out task (test sets). Every column is a method (selfguide.methods): it
makes its data, then the model is finetuned on it and evaluated, or an inference-time method
evaluates the model its own way, through the benchmarks' runner (benchmark/runner.py) and the run
engine. One code path serves the run and the dry run: in a dry run each stage only counts the
model calls and training runs it would make.

Layout under --out: cache.sqlite (every model call), <phase>/<task>/prompting/,
<phase>/<task>/synth-<T,input filter>/, <phase>/<task>/<setting>/{train,eval}/, heldout/<task>/
{few_shot,in_context,filtered}/, <setting>/gold/, then results.{md,csv,json} and chosen_setting.json.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from selfguide.benchmark.grid import PAPER_GAINS, TUNING, Setting, extra_held_out, select_setting
from selfguide.benchmark.runner import Bench, BenchOptions, bench_per_seed, run_parallel, tasks_of, unchanged_if_empty, with_method
from selfguide.benchmark.scores import TABLE_METRICS, fmt, score_of
from selfguide.config import RunConfig, config_yaml
from selfguide.errors import BadInputError
from selfguide.io import read_json, write_json, write_text
from selfguide.methods.baselines import FewShotFinetuneConfig, GoldFinetuneConfig, PromptingConfig, PromptingWithFiltersConfig, SyntheticInContextConfig
from selfguide.tasks.spec import TaskSpec

BASELINES = ["prompting", "few_shot_finetune", "synthetic_in_context", "prompting_with_filters", "self_guide", "gold_finetune"]


# ---- phases --------------------------------------------------------------------------------


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
    """The chosen setting and the paper's baselines on each held-out task, on the same eval set."""
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
        earlier = {}
        if not dry_run:
            earlier = earlier_results(options.out, config_yaml(base))
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
            summary["plan"] = bench.tally.as_dict()
            summary["grid_size"] = 0 if options.setting is not None else len(options.grid)
            return summary
        summary |= {"tuning": tuned, "heldout": kept_heldout(earlier, summary, heldout) | heldout, "model_calls": bench.stats.as_dict()}
        write_results(options.out, summary)
        return summary
    finally:
        bench.close()


def earlier_results(out: Path, config_text: str) -> dict:
    """The results of an earlier bench in `out` with the same config, else {}."""
    same_config = (out / "config.yaml").is_file() and (out / "config.yaml").read_text(encoding="utf-8") == config_text
    try:
        return read_json(out / "results.json") if same_config else {}
    except (OSError, ValueError):  # none yet, or unreadable: this bench's results replace it
        return {}


def kept_heldout(earlier: dict, summary: dict, heldout: dict) -> dict:
    """The held-out tasks of an earlier bench into the same folder (same config, setting, eval split
    and limit) that this one did not run, so a bench over some tasks keeps the others' rows in
    results.*. An earlier bench with another setting or other baselines is replaced whole."""
    if not earlier or any(earlier.get(key) != summary[key] for key in ("eval_split", "limit", "chosen_setting")):
        return {}
    columns = {tuple(sorted(entry["metrics"])) for entry in heldout.values()}
    kept = {name: entry for name, entry in earlier.get("heldout", {}).items() if name not in heldout}
    if columns and any(tuple(sorted(entry["metrics"])) not in columns for entry in kept.values()):
        return {}
    return kept


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

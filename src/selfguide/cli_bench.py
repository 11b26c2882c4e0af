"""`selfguide bench superni` and `selfguide bench methods`: the paper's protocol, and methods side
by side, as one command each. Every flag is checked before the bench starts: a bench refuses what
it would not run, naming it, and a dry run creates nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from selfguide.cli_options import CONFIG, MODEL, BenchLimitOpt, BenchSplitOpt, ExecutorOpt, MaxCallsOpt, ParallelOpt, RayAddressOpt, SeedsOpt, build_config, checked, shared
from selfguide.errors import BadInputError

if TYPE_CHECKING:
    from selfguide.benchmark.superni import BenchOptions
    from selfguide.config import RunConfig

bench_app = typer.Typer(help="Benchmarks: the paper's protocol as one command.", no_args_is_help=True)
TasksHelp = "SuperNI task names (repeatable or comma-separated), e.g. --tasks task190,task036"


def bench_folder(out: str, dry_run: bool) -> Path:
    """--out as the bench folder: created and writable, or (dry run) at least no file in the way."""
    from selfguide.runfolder import make_folder

    if not out.strip():
        raise BadInputError("--out", "value", "a folder path", "an empty string")
    folder = Path(out)
    if dry_run:
        if folder.exists() and not folder.is_dir():
            raise BadInputError("--out", out, "a folder (or a path where one can be created)", "an existing file")
        return folder
    return make_folder(folder)


def bench_options(cfg: RunConfig, opts: dict, out: str, dry_run: bool, **fields) -> BenchOptions:
    """What both bench commands share: the folder, progress bars unless --quiet, and the config's call cache."""
    from selfguide.benchmark import superni

    return superni.BenchOptions(out=bench_folder(out, dry_run), progress=not opts["quiet"], cache=Path(cfg.cache) if cfg.cache else None, **fields)


@bench_app.command("superni")
@shared(*MODEL, *CONFIG, "quiet")
def bench_superni(
    tasks: Annotated[Optional[list[str]], typer.Option("--tasks", help=f"Only these tasks: {TasksHelp}. A SuperNI task outside the paper's 22 runs as a held-out task.")] = None,
    limit: BenchLimitOpt = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="Narrow an axis of the grid: --grid temperature=0.7,1.0 --grid epochs=1 (axes: temperature, input_length_filter, output_length_filter, epochs).")] = None,
    setting: Annotated[Optional[str], typer.Option(help="Skip tuning and use this setting, e.g. temperature=0.8,input_length_filter=true,output_length_filter=false,epochs=3.")] = None,
    eval_split: BenchSplitOpt = "selfguide",
    out: Annotated[str, typer.Option("--out", "-o", help="Benchmark folder.")] = "runs/bench-superni",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the model calls, generated tokens and training runs the grid implies; run nothing.")] = False,
    max_calls: MaxCallsOpt = None,
    parallel: ParallelOpt = None,
    baselines: Annotated[Optional[str], typer.Option(help="Held-out columns to run besides prompting and self_guide, e.g. few_shot_finetune,gold_finetune (default: all of few_shot_finetune, synthetic_in_context, prompting_with_filters, gold_finetune).")] = None,
    seeds: SeedsOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    opts: dict = None,  # type: ignore[assignment]
) -> None:
    """Reproduce the SELF-GUIDE evaluation on the SuperNI tasks: tune one setting on the tuning
    tasks (max-min gain), then compare it with four baselines on the held-out tasks.

    Examples:
      selfguide bench superni --model lmsys/vicuna-7b-v1.5 --dry-run
      selfguide bench superni -m ./tiny-model --tasks task190,task036,task1516,task1562 --grid temperature=1.0 --grid epochs=1,2 --limit 5 -c configs/tiny.yaml
    """
    from selfguide.backends.resolve import require_model
    from selfguide.benchmark.grid import HELD_OUT, TUNING, parse_grid, parse_seeds, parse_setting, parse_tasks
    from selfguide.benchmark.superni import bench_superni_seeds, parse_baselines, results_markdown, seeds_markdown

    cfg = checked(build_config(opts, limit=limit), dry_run)
    if grid and setting is not None:
        raise BadInputError("--grid", "value", "either --grid (tune over it) or --setting (no tuning), not both")
    names = parse_tasks(tasks, tuning=setting is None)
    tuning_tasks = [name for group in TUNING.values() for name in group]
    if names and setting is None and not set(names) & set(tuning_tasks):
        raise BadInputError("--tasks", "value", f"a tuning task to choose the setting on ({', '.join(tuning_tasks[:3])}, ...), or --setting", "none")
    chosen_baselines = parse_baselines(baselines) if baselines is not None else None
    if chosen_baselines == []:
        raise BadInputError("--baselines", "value", "comma-separated column names, e.g. few_shot_finetune,gold_finetune", "none")
    options = bench_options(
        cfg,
        opts,
        out,
        dry_run,
        tasks=names,
        grid=parse_grid(grid),
        setting=parse_setting(setting) if setting is not None else None,
        limit=limit,
        eval_split=eval_split,
        max_calls=max_calls,
        parallel=parallel,
        baselines=chosen_baselines,
        executor=executor,
        ray_address=ray_address,
    )
    seed_list = parse_seeds(seeds) if seeds is not None else [cfg.seed]
    paper = {name for groups in (TUNING, HELD_OUT) for group in groups.values() for name in group}
    extra = [name for name in names or [] if name not in paper]
    if extra:
        typer.echo(f"held-out tasks outside the paper's 22: {', '.join(extra)}")
    summary = bench_superni_seeds(require_model(cfg), options, seed_list, dry_run=dry_run)
    if summary["missing_tasks"]:
        typer.echo(f"missing here (skipped): {', '.join(summary['missing_tasks'])}")
    if dry_run:
        if summary["grid_size"]:
            typer.echo(f"grid: {summary['grid_size']} settings")
        else:
            typer.echo(f"setting: {summary['chosen_setting']['key']} (--setting; no tuning)")
        print_bench_plan(summary["plan"])
        return
    typer.echo(seeds_markdown(summary) if "per_seed" in summary else results_markdown(summary))
    typer.echo(f"results: {options.out / 'results.md'} (and results.csv, results.json)")


@bench_app.command("methods")
@shared(*MODEL, *CONFIG, "quiet")
def bench_methods(
    methods_: Annotated[list[str], typer.Option("--methods", help="The rows (repeatable or comma-separated): method names, e.g. self-guide,alpaca,few-shot-finetune, or YAML configs whose synth section (and teacher) makes the row, e.g. configs/rebase-cpu.yaml.")],
    tasks: Annotated[Optional[list[str]], typer.Option("--tasks", help=f"{TasksHelp} (default: the 14 held-out tasks).")] = None,
    limit: BenchLimitOpt = None,
    user_oriented: Annotated[Optional[bool], typer.Option("--user-oriented/--no-user-oriented", help="Also score on Self-Instruct's 252 user-oriented instructions (default: when a general-purpose method is a row).")] = None,
    user_oriented_limit: Annotated[Optional[int], typer.Option(min=1, help="Score on the first N user-oriented instructions only.")] = None,
    eval_split: BenchSplitOpt = "selfguide",
    out: Annotated[str, typer.Option("--out", "-o", help="Benchmark folder.")] = "runs/bench-methods",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the model calls, generated tokens and training runs; run nothing.")] = False,
    max_calls: MaxCallsOpt = None,
    parallel: ParallelOpt = None,
    seeds: SeedsOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    opts: dict = None,  # type: ignore[assignment]
) -> None:
    """Compare methods on one model and the same SuperNI tasks: each row makes its data, the model
    is finetuned on it and evaluated; prompting is the reference row. Model, training and eval
    settings come from --config for every row.

    Examples:
      selfguide bench methods --methods self-guide,few-shot-finetune,alpaca --tasks task1622,task346 --limit 100 -c configs/cpu.yaml
      selfguide bench methods --methods self-guide,configs/rebase-cpu.yaml --dry-run
    """
    from selfguide.backends.resolve import require_model
    from selfguide.benchmark.grid import parse_seeds, parse_tasks
    from selfguide.benchmark.methods import bench_methods_seeds, parse_recipes, results_markdown, seeds_markdown

    cfg = checked(build_config(opts, limit=limit, user_oriented_limit=user_oriented_limit), dry_run)
    names = parse_tasks(tasks)
    seed_list = parse_seeds(seeds) if seeds is not None else [cfg.seed]
    options = bench_options(cfg, opts, out, dry_run, tasks=names, limit=limit, eval_split=eval_split, max_calls=max_calls, parallel=parallel, executor=executor, ray_address=ray_address)
    cfg = require_model(cfg)
    recipes = parse_recipes(methods_, cfg)
    summary = bench_methods_seeds(cfg, options, recipes, seed_list, user_oriented, dry_run=dry_run)
    if summary["missing_tasks"]:
        typer.echo(f"missing here (skipped): {', '.join(summary['missing_tasks'])}")
    if dry_run:
        print_bench_plan(summary["plan"])
        return
    typer.echo(seeds_markdown(summary) if "per_seed" in summary else results_markdown(summary))
    typer.echo(f"results: {options.out / 'results.md'} (and results.json)")


def print_bench_plan(plan: dict) -> None:
    for stage, (low, high) in plan["by_stage"].items():
        typer.echo(f"  {stage}: {low if low == high else f'{low} to {high}'} model calls")
    low, high = plan["model_calls_at_least"], plan["model_calls_at_most"]
    typer.echo(f"model calls: {low if low == high else f'{low} to {high} (some stages need one call per item the filters keep)'}")
    typer.echo(f"generated tokens: at most {plan['generated_tokens_at_most']}")
    typer.echo(f"training runs: {plan['training_runs']}")

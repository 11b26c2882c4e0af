"""`selfguide` on the command line: each command loads a config, calls the API, prints paths.

User errors (bad files, missing model, bad settings) print one line and exit 2; a --max-calls
stop exits 3; anything unexpected prints one line naming a log file with the traceback and exits
1. Run `selfguide COMMAND --help` for examples.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from selfguide import interruptible, layout
from selfguide.cli_bench import bench_app
from selfguide.cli_options import CONFIG, DATASET, MODEL, TEACHER, MaybeTaskArg, NumProcessesOpt, TaskArg, build_config, checked, shared, task_config
from selfguide.errors import BadInputError, SelfGuideError

app = typer.Typer(
    name="selfguide",
    help="SELF-GUIDE: make a model a task expert with data it writes and labels itself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def print_version(value: bool) -> None:
    if value:
        from selfguide import __version__

        typer.echo(f"selfguide {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """SELF-GUIDE: make a model a task expert with data it writes and labels itself."""
    quiet_libraries()  # here too, so every way of invoking the app (tests' CliRunner included) is as quiet


@app.command()
@shared("eval_split", *DATASET, "config", "set_")
def inspect(
    task: TaskArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    opts: dict = None,  # type: ignore[assignment]
) -> None:
    """Show what selfguide understood of a task (file, SuperNI name or dataset): type, labels, counts.

    Example: selfguide inspect task036
    """
    from selfguide.run_task import load_run_task
    from selfguide.stages.filters import length_window

    spec = load_run_task(task_config(opts, task))
    info = {
        "name": spec.name,
        "source": spec.source,
        "type": spec.type,
        "labels": spec.labels,
        "category": spec.category,
        "examples": len(spec.examples),
        "eval_items": len(spec.eval),
        "input_window": list(length_window([len(e.input) for e in spec.examples])),
        "output_window": list(length_window([len(e.output) for e in spec.examples])),
        "instruction": spec.instruction,
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key, value in info.items():
        if key == "instruction":
            value = value if len(value) <= 200 else value[:197] + "..."
        elif key.endswith("_window"):
            value = f"[{value[0]}, {value[1]}) characters"
        typer.echo(f"{key:>13}: {value}")


@app.command()
@shared(*MODEL, "out", *CONFIG, "eval_split", *DATASET, "method", *TEACHER, "quiet", "wait")
def synthesize(
    task: MaybeTaskArg = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the model calls each stage would make; call nothing.")] = False,
    opts: dict = None,  # type: ignore[assignment]
) -> None:
    """Write a synthetic dataset for a task (SELF-GUIDE by default: inputs, filters, labels, vote).

    Examples:
      selfguide synthesize task036 --model ./tiny-model
      selfguide synthesize my_task.yaml -m Qwen/Qwen2.5-1.5B-Instruct --set synth.inputs.rounds=5
      selfguide synthesize task190 -m my-model --backend openai --base-url http://127.0.0.1:8000/v1
      selfguide synthesize task036 -m ./tiny-model --method self-guide --dry-run
      selfguide synthesize --method self-instruct -m ./student --teacher Qwen/Qwen2.5-7B-Instruct --set synth.rounds.num_instructions=500
    """
    from selfguide import api
    from selfguide.stages.funnel import summary_markdown

    cfg = checked(task_config(opts, task), dry_run)
    if dry_run:
        print_plan(api.plan(cfg))
        return
    result = api.synthesize(cfg, progress=not opts["quiet"], wait=opts["wait"])
    typer.echo(summary_markdown(result.summary))
    typer.echo(f"dataset: {result.dataset_path}")
    typer.echo(f"run folder: {result.out_dir}")


def print_plan(plan: dict) -> None:
    from selfguide.plan import total

    for stage, calls in plan.items():
        count = calls.at_least if calls.at_least == calls.at_most else f"{calls.at_least} to {calls.at_most}"
        typer.echo(f"  {stage}: {count} model calls")
    calls = total(plan)
    count = calls.at_least if calls.at_least == calls.at_most else f"{calls.at_least} to {calls.at_most} (a stage's size depends on what earlier filters keep)"
    typer.echo(f"model calls: {count}")
    typer.echo(f"generated tokens: at most {calls.tokens}")


@app.command()
def methods() -> None:
    """List the methods that make training data (each one file in selfguide/methods/)."""
    from selfguide.methods import get_method, known_methods

    for name in known_methods():
        typer.echo(f"{name:>18}: {get_method(name).description}")


@app.command()
@shared("model", "out", *CONFIG, "wait")
def train(
    dataset: Annotated[Path, typer.Argument(help="A dataset.jsonl of {input, output}, or a run folder (uses its synth/dataset.jsonl and config.yaml, with --config laid over it).")],
    task: Annotated[Optional[str], typer.Option(help="The task whose prompt the model is trained on (default: the run folder's).")] = None,
    train_method: Annotated[Optional[Literal["lora", "full"]], typer.Option("--method", help="lora (default) or full.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Epochs (default 3).")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Also write a merged full model folder (LoRA).")] = False,
    num_processes: NumProcessesOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")] = False,
    opts: dict = None,  # type: ignore[assignment]
) -> None:
    """Finetune the model on a synthetic dataset with the task prompt (LoRA by default).

    Examples:
      selfguide train runs/task036 --model ./tiny-model
      selfguide train data.jsonl --task my_task.yaml -m ./tiny-model --method full --epochs 1
    """
    from selfguide import api

    from selfguide.config import load_config

    dataset_path, base = dataset, None
    if dataset.is_dir():
        dataset_path = layout.dataset_path(dataset)
        if (dataset / layout.CONFIG).exists():  # the run's own settings (its task above all), --config laid over them
            base = load_config(dataset / layout.CONFIG)
    out = opts.pop("out")
    if out is not None and not out.strip():
        raise BadInputError("--out", "value", "a folder path", "an empty string")
    cfg = checked(build_config(opts, base, task=task, train_method=train_method, epochs=epochs, num_processes=num_processes))
    interrupted_hint[0] = "interrupted: training stopped; rerun the same command to train again (a finished training is reused)"
    result = api.train(cfg, dataset_path, Path(out) if out else None, merge=merge, wait=opts["wait"], progress=not quiet)
    typer.echo(f"{'reused' if result.reused else 'trained'} on {result.n_train} pairs ({result.n_dropped_too_long} dropped as too long)")
    typer.echo(f"{'adapter' if result.is_adapter else 'model'}: {result.model_dir}")
    if result.merged_dir:
        typer.echo(f"merged model: {result.merged_dir}")
    typer.echo(f"training log: {result.log_path}")


@app.command("eval")
@shared(*MODEL, "out", *CONFIG, "eval_split", "quiet", "wait")
def eval_(
    task: MaybeTaskArg = None,
    adapter: Annotated[Optional[str], typer.Option(help="A PEFT adapter folder to apply (the finetuned model).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on the first N items.")] = None,
    user_oriented: Annotated[bool, typer.Option("--user-oriented", help="Evaluate on Self-Instruct's 252 user-oriented instructions (ROUGE-L) instead of a task; TASK is not needed.")] = False,
    opts: dict = None,  # type: ignore[assignment]
) -> None:
    """Greedy predictions on the task's eval set, scored with SuperNI and paper metrics.

    Examples:
      selfguide eval task036 --model ./tiny-model --limit 20
      selfguide eval task036 --model ./tiny-model --adapter runs/task036/train/adapter
      selfguide eval --user-oriented --model ./tiny-model --adapter runs/self-instruct/train/adapter --out runs/self-instruct
    """
    from selfguide import api

    limits = {"eval_user_oriented_limit": limit} if user_oriented else {"limit": limit}
    cfg = checked(task_config(opts, task, **limits))
    metrics = api.evaluate(cfg, adapter=adapter, progress=not opts["quiet"], wait=opts["wait"], user_oriented=user_oriented)
    run_out = Path(cfg.out or Path("runs") / metrics.get("task", cfg.synth.method))  # as `run`: runs/<task>/eval/<name>/
    if user_oriented:
        typer.echo(json.dumps({k: metrics[k] for k in ("name", "eval", "n", "rougeL")}, indent=2))
        typer.echo(f"predictions: {layout.user_oriented_dir(run_out, metrics['name']) / layout.PREDICTIONS}")
        return
    typer.echo(json.dumps({k: metrics[k] for k in ("name", "task", "n", "superni", "paper", "reported_metric", "reported")}, indent=2))
    typer.echo(f"predictions: {layout.eval_dir(run_out, metrics['name']) / layout.PREDICTIONS}")


@app.command()
@shared(*MODEL, "out", *CONFIG, "eval_split", *DATASET, "method", *TEACHER, "quiet", "wait")
def run(
    task: MaybeTaskArg = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on the first N eval items.")] = None,
    num_processes: NumProcessesOpt = None,
    opts: dict = None,  # type: ignore[assignment]
) -> None:
    """The whole loop: synthesize, finetune, evaluate against prompting, write the report.

    Examples:
      selfguide run task036 --model ./tiny-model --config configs/tiny.yaml
      selfguide run task1345 --method alpaca --model ./student --teacher ./teacher   (also scored on the 252 user-oriented instructions)
    """
    from selfguide import api

    cfg = checked(task_config(opts, task, limit=limit, num_processes=num_processes))
    result = api.run(cfg, progress=not opts["quiet"], wait=opts["wait"])
    for line in result.headline:
        typer.echo(line)
    metric = result.baseline["reported_metric"]
    typer.echo(f"prompting {metric}: {result.baseline['reported']:.2f} [{result.stacks['prompting']}]")
    if result.finetuned:
        gain = result.finetuned["reported"] - result.baseline["reported"]
        stack = result.stacks.get("finetuned") or result.stacks[result.method]
        typer.echo(f"{result.method} {metric}: {result.finetuned['reported']:.2f} ({gain:+.2f}) [{stack}]")
    else:
        typer.echo(f"{result.method}: not trained (synthesis kept no pairs; see synth/summary.md)")
    for name, uo in result.user_oriented.items():
        typer.echo(f"{name} on the {uo['n']} user-oriented instructions, rougeL: {uo['rougeL']:.2f}")
    if result.server_baseline:
        typer.echo(f"prompting on the server {metric}: {result.server_baseline['reported']:.2f} [{result.stacks['prompting-server']}] (extra: not the same stack as the finetuned model)")
    for path in result.report_paths:
        typer.echo(f"report: {path}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (from `selfguide run` or `synthesize`).")],
    format: Annotated[str, typer.Option("--format", "-f", help="hf (parquet + card, Hub layout), parquet, alpaca, sharegpt (LLaMA-Factory, axolotl), openai (fine-tuning chat JSONL).")] = "hf",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Folder to write (default <run>/export/<format>/).")] = None,
    push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="Upload the folder as this Hub dataset repo (user/name); token from $HF_TOKEN.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")] = False,
    license: Annotated[str, typer.Option(help="The dataset card's license id (e.g. apache-2.0); 'other' says the model's terms apply.")] = "other",
) -> None:
    """Export the synthetic pairs with the full training prompt, a dataset card and the model card.

    Examples:
      selfguide export runs/task036 --format sharegpt
      HF_TOKEN=hf_... selfguide export runs/task036 --push-to-hub me/task036-selfguide --private
    """
    from selfguide.export import export_run

    result = export_run(run_dir, format, out, push_to_hub=push_to_hub, private=private, license=license)  # type: ignore[arg-type]
    typer.echo(f"exported {result.rows} pairs ({format}): {result.folder}")
    for path in result.files:
        typer.echo(f"  {path}")
    if result.model_card:
        typer.echo(f"model card: {result.model_card}")
    if result.url:
        typer.echo(f"pushed: {result.url}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder (from `selfguide run`).")]) -> None:
    """Rebuild a run's report.md, report.html and plots from its folder alone; runs nothing.

    Example:
      selfguide report runs/task036
    """
    from selfguide.report.rebuild import rebuild_report

    for path in rebuild_report(run_dir)[:2]:
        typer.echo(path)


app.add_typer(bench_app, name="bench")
cache_app = typer.Typer(help="The model-call cache (SQLite, keyed by content).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("merge")
def cache_merge(
    sources: Annotated[list[Path], typer.Argument(help="Cache files to merge (cache.sqlite of runs, or workers' shards).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The cache to merge into (made if missing; its own calls are kept).")],
) -> None:
    """Merge call caches: every call of the sources that --out lacks is added (keys are content
    hashes, so the same call is never stored twice). Example: selfguide cache merge a.sqlite b.sqlite -o cache.sqlite"""
    from selfguide.scale.shard_cache import merge_caches

    added = merge_caches(sources, out)
    typer.echo(f"{out}: {added} calls added")


@app.command("tiny-model")
def tiny_model(
    out: Annotated[str, typer.Argument(help="Folder to write the model and tokenizer into.")] = "tiny-model",
    seed: Annotated[int, typer.Option(help="Seed for the random weights.")] = 0,
    architecture: Annotated[str, typer.Option(help="llama, qwen2, qwen3, gemma2, gemma3 (text), mistral (sliding window) or phi3.")] = "llama",
    chat_template: Annotated[bool, typer.Option(help="Off: a base model with no chat template.")] = True,
) -> None:
    """Write a tiny random model (Llama-style unless --architecture says otherwise) with a locally
    trained tokenizer (no download), to try every command on a CPU."""
    from selfguide.runfolder import make_folder
    from selfguide.tinymodel import ARCHITECTURES, build_tiny_model

    if not out.strip():
        raise BadInputError("OUT", "value", "a folder path", "an empty string")
    if architecture not in ARCHITECTURES:
        raise typer.BadParameter(f"one of {', '.join(ARCHITECTURES)}", param_hint="--architecture")
    make_folder(Path(out), "OUT")
    try:
        built = build_tiny_model(Path(out), architecture=architecture, chat_template=chat_template, seed=seed)
    except Exception as err:  # safetensors reports a full disk in its own exception type
        if "No space left" not in str(err) and not (isinstance(err, OSError) and err.errno == 28):
            raise
        raise BadInputError("OUT", out, "a folder with room for the model (a few MB)", "no space left on the device") from None
    typer.echo(f"tiny model: {built}")


@app.command()
@shared("config", "set_")
def config(opts: dict = None) -> None:  # type: ignore[assignment]
    """Print the resolved config as YAML, each setting's description as a comment above it: the
    defaults, or a file with overrides applied. The output loads back as a --config file."""
    from selfguide.config_comments import config_yaml_with_comments

    typer.echo(config_yaml_with_comments(build_config(opts)), nl=False)


@app.command()
def env(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False) -> None:
    """Versions, device, default dtype and cache locations: what to paste into a bug report."""
    from selfguide.environment import environment

    info = environment()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for section in ("versions", "caches"):
        for key, value in info.pop(section).items():
            typer.echo(f"{key:>16}: {value or 'not installed'}")
    for key, value in info.items():
        typer.echo(f"{key:>16}: {value}")


def quiet_libraries() -> None:
    """Our own progress bars say what is happening; the libraries' loading bars and notices only add noise."""
    import os
    import warnings

    # Raised inside transformers itself when TRL/PEFT ask about checkpointing; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        import datasets
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        # The environment variable only counts before datasets is first imported; this always does.
        datasets.disable_progress_bars()
    except ImportError:
        pass


# What to say after a Ctrl-C; a command that makes no model calls says its own.
interrupted_hint = ["interrupted: finished model calls are cached; rerun the same command to continue"]


def log_unexpected() -> str:
    """Write the current exception's traceback to a log file; return its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="selfguide-error-", suffix=".log")
    with open(fd, "w", encoding="utf-8") as log:
        log.write(f"selfguide {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    return path


def main() -> None:
    import errno

    from selfguide.redact import redact_url

    try:  # recent typer vendors click
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException, NoArgsIsHelpError

    quiet_libraries()
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as err:
        err.show()
        sys.exit(err.exit_code)
    except ClickException as err:  # a usage error (unknown option, bad value): one line, not a panel
        where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) is not None else ""
        hint = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) is not None else ""
        typer.echo(f"error: {where}{' '.join(err.format_message().split())}{hint}", err=True)
        sys.exit(err.exit_code)
    except SelfGuideError as err:
        typer.echo(f"error: {' '.join(redact_url(str(err)).split())}", err=True)
        interruptible.leave(err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except OSError as err:
        if err.errno != errno.ENOSPC:
            typer.echo(f"error: unexpected {type(err).__name__}; the traceback is in {log_unexpected()}", err=True)
            interruptible.leave(1)
        typer.echo(f"error: {err.filename or 'a file'}: disk full; finished model calls are cached: free space and rerun the same command to continue", err=True)
        interruptible.leave(2)
    except Exception as err:  # a bug: one line for the user, the traceback for the report
        typer.echo(f"error: unexpected {type(err).__name__}; the traceback is in {log_unexpected()}", err=True)
        interruptible.leave(1)
    if code == 130:  # typer turns Ctrl-C into exit code 130
        typer.echo(interrupted_hint[0], err=True)
    interruptible.leave(code if isinstance(code, int) else 0)

"""`selfguide` on the command line: each command loads a config, calls the API, prints paths.

User errors (bad files, missing model, bad settings) print one line and exit 2; a --max-calls
stop exits 3. Run `selfguide COMMAND --help` for examples.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from selfguide import interruptible, layout
from selfguide.errors import SelfGuideError

app = typer.Typer(
    name="selfguide",
    help="SELF-GUIDE: make a model a task expert with data it writes and labels itself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TaskArg = Annotated[str, typer.Argument(help="Task file (YAML/JSON, ours or SuperNI), a SuperNI task name like task036, or a dataset: hf:NAME[:CONFIG], a datasets folder, a .parquet file.")]
# General-purpose methods (self-instruct, alpaca) make data for no one task; a task is then an eval target.
MaybeTaskArg = Annotated[Optional[str], typer.Argument(metavar="TASK", show_default=False, help="A task as for the other commands; optional for general-purpose methods (--method self-instruct, alpaca), whose rows carry their own instructions.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id, local model folder or .gguf file (default: SmolLM2-135M-Instruct); the served model name (openai).")]
BackendOpt = Annotated[Optional[Literal["hf", "openai", "vllm", "llamacpp"]], typer.Option(help="hf (transformers, default), openai (any OpenAI-compatible server), vllm, llamacpp (GGUF files through llama-cpp-python).")]
BaseUrlOpt = Annotated[Optional[str], typer.Option(help="Server URL for --backend openai, e.g. http://127.0.0.1:8000/v1.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/<task name>).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file (see `selfguide config`).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override any setting: --set synth.inputs.temperature=0.7 (repeatable).")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed for every sampling decision and training.")]
SplitOpt = Annotated[Optional[Literal["official", "selfguide-test", "selfguide-validation"]], typer.Option(help="SuperNI eval set: official (first 100), selfguide-test, selfguide-validation.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
InputColumnOpt = Annotated[Optional[str], typer.Option(help="Dataset tasks (hf:NAME[:CONFIG], a datasets folder, a .parquet file): the input column.")]
OutputColumnOpt = Annotated[Optional[str], typer.Option(help="Dataset tasks: the answer column (a class-label column gives label names).")]
InstructionOpt = Annotated[Optional[str], typer.Option(help="Dataset tasks: the task instruction (unless the dataset has an instruction column).")]
DemosOpt = Annotated[Optional[int], typer.Option(help="Dataset tasks: demos drawn from the train split, which the eval never sees (default 5).")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="If another selfguide process is using the run folder, wait for it instead of stopping.")]
TeacherOpt = Annotated[Optional[str], typer.Option("--teacher", help="A model that writes and labels the data instead of --model, which is still the one trained and evaluated (distillation): hub id, folder, .gguf file or served name.")]
TeacherBackendOpt = Annotated[Optional[Literal["hf", "openai", "vllm", "llamacpp"]], typer.Option("--teacher-backend", help="The teacher's backend (default hf), as --backend.")]
TeacherBaseUrlOpt = Annotated[Optional[str], typer.Option("--teacher-base-url", help="The teacher's server URL for --teacher-backend openai.")]
MethodOpt = Annotated[Optional[str], typer.Option("--method", help="How the training data is made (default self-guide); `selfguide methods` lists them.")]
# The two benchmarks' shared options.
BenchLimitOpt = Annotated[Optional[int], typer.Option(help="Evaluate on the first N items of each eval set.")]
BenchSplitOpt = Annotated[Literal["selfguide", "official"], typer.Option(help="selfguide: the authors' test (and, for tuning, validation) splits where present, official first 100 otherwise; official: always the first 100.")]
MaxCallsOpt = Annotated[Optional[int], typer.Option(help="Stop cleanly after this many new model calls; rerun to continue.")]
SeedsOpt = Annotated[Optional[str], typer.Option(help="Run once per seed (synthesis and training), e.g. --seeds 0,1,2, and report mean and spread (default: --seed alone).")]
ParallelOpt = Annotated[
    Optional[int],
    typer.Option(
        min=1,
        help="Tasks at once, each in a thread (default: 4 on a server, 2 for an hf model on a GPU; 1 for vLLM and for a model in-process "
        "on the CPU, where tasks at once only share out the cores). An in-process model is loaded once and merges the tasks' calls "
        "into shared batches; trainings run one at a time; each finetuned model is loaded on its own. In float32 the results are "
        "those of one task at a time; in bf16/fp16 the batch layout changes samples, and the data can differ much (later input rounds build on earlier ones), unless model.batch_invariant.",
    ),
]
ExecutorOpt = Annotated[Literal["local", "ray"], typer.Option("--executor", help="local: parts run here (default); ray: each independent part (task, setting, method) is a Ray task with retries, on a Ray cluster or a local Ray (pip install 'selfguide[ray]'; docs/scale-out.md).")]
NumProcessesOpt = Annotated[Optional[int], typer.Option("--num-processes", min=1, help="Train in N processes (DDP: one per GPU, or over gloo on the CPU); batch size is per process. The run synthesizes and evaluates once (docs/scale-out.md).")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="--executor ray: the Ray cluster to join, e.g. ray://head:10001 or auto (default: $RAY_ADDRESS, else a local Ray started here).")]


# The setting each command-line flag sets, and the flag's name for error messages.
FLAG_SETTINGS = {
    "task": ("task", "TASK"),
    "model": ("model.name", "--model"),
    "backend": ("model.backend", "--backend"),
    "base_url": ("model.base_url", "--base-url"),
    "adapter": ("model.adapter", "--adapter"),
    "out": ("out", "--out"),
    "seed": ("seed", "--seed"),
    "eval_split": ("eval_split", "--eval-split"),
    "limit": ("eval.limit", "--limit"),
    "user_oriented_limit": ("eval.user_oriented.limit", "--limit"),
    "teacher": ("teacher.name", "--teacher"),
    "teacher_backend": ("teacher.backend", "--teacher-backend"),
    "teacher_base_url": ("teacher.base_url", "--teacher-base-url"),
    "method": ("synth.method", "--method"),
    "train_method": ("train.method", "--method"),
    "epochs": ("train.epochs", "--epochs"),
    "num_processes": ("train.num_processes", "--num-processes"),
    "input_column": ("dataset.input_column", "--input-column"),
    "output_column": ("dataset.output_column", "--output-column"),
    "instruction": ("dataset.instruction", "--instruction"),
    "demos": ("dataset.demos", "--demos"),
}


def build_config(config_file: Optional[Path], overrides: Optional[list[str]], **values):
    from selfguide.config import load_config

    settings = {FLAG_SETTINGS[name][0]: str(value) if isinstance(value, Path) else value for name, value in values.items()}
    flags = {FLAG_SETTINGS[name][0]: FLAG_SETTINGS[name][1] for name in values}
    return load_config(config_file, overrides, settings, flags=flags)


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
def inspect(
    task: TaskArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    eval_split: SplitOpt = None,
) -> None:
    """Show what selfguide understood of a task: type, labels, counts, length windows.

    Example: selfguide inspect task036
    """
    from selfguide.stages.filters import length_window
    from selfguide.tasks.load import load_task

    spec = load_task(task, eval_split)  # type: ignore[arg-type]
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
def synthesize(
    task: MaybeTaskArg = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    out: OutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    eval_split: SplitOpt = None,
    input_column: InputColumnOpt = None,
    output_column: OutputColumnOpt = None,
    instruction: InstructionOpt = None,
    demos: DemosOpt = None,
    method: MethodOpt = None,
    teacher: TeacherOpt = None,
    teacher_backend: TeacherBackendOpt = None,
    teacher_base_url: TeacherBaseUrlOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the model calls each stage would make; call nothing.")] = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
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

    cfg = build_config(config, set_, task=task, model=model, backend=backend, base_url=base_url, out=out, seed=seed, eval_split=eval_split,
                       input_column=input_column, output_column=output_column, instruction=instruction, demos=demos, method=method,
                       teacher=teacher, teacher_backend=teacher_backend, teacher_base_url=teacher_base_url)
    if dry_run:
        print_plan(api.plan(cfg))
        return
    result = api.synthesize(cfg, progress=not quiet, wait=wait)
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
def train(
    dataset: Annotated[Path, typer.Argument(help="A dataset.jsonl of {input, output}, or a run folder (uses its synth/dataset.jsonl).")],
    task: Annotated[Optional[str], typer.Option(help="The task whose prompt the model is trained on (default: the run folder's).")] = None,
    model: ModelOpt = None,
    out: OutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    train_method: Annotated[Optional[Literal["lora", "full"]], typer.Option("--method", help="lora (default) or full.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Epochs (default 3).")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Also write a merged full model folder (LoRA).")] = False,
    num_processes: NumProcessesOpt = None,
    wait: WaitOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")] = False,
) -> None:
    """Finetune the model on a synthetic dataset with the task prompt (LoRA by default).

    Examples:
      selfguide train runs/task036 --model ./tiny-model
      selfguide train data.jsonl --task my_task.yaml -m ./tiny-model --method full --epochs 1
    """
    from selfguide import api

    dataset_path, run_config = dataset, None
    if dataset.is_dir():
        dataset_path = layout.dataset_path(dataset)
        run_config = dataset / layout.CONFIG if (dataset / layout.CONFIG).exists() else None
    cfg = build_config(config or run_config, set_, task=task, model=model, seed=seed, train_method=train_method, epochs=epochs, num_processes=num_processes)
    result = api.train(cfg, dataset_path, out, merge=merge, wait=wait, progress=not quiet)
    typer.echo(f"{'reused' if result.reused else 'trained'} on {result.n_train} pairs ({result.n_dropped_too_long} dropped as too long)")
    typer.echo(f"{'adapter' if result.is_adapter else 'model'}: {result.model_dir}")
    if result.merged_dir:
        typer.echo(f"merged model: {result.merged_dir}")
    typer.echo(f"training log: {result.log_path}")


@app.command("eval")
def eval_(
    task: MaybeTaskArg = None,
    model: ModelOpt = None,
    adapter: Annotated[Optional[str], typer.Option(help="A PEFT adapter folder to apply (the finetuned model).")] = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate on the first N items.")] = None,
    out: OutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    eval_split: SplitOpt = None,
    user_oriented: Annotated[bool, typer.Option("--user-oriented", help="Evaluate on Self-Instruct's 252 user-oriented instructions (ROUGE-L) instead of a task; TASK is not needed.")] = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Greedy predictions on the task's eval set, scored with SuperNI and paper metrics.

    Examples:
      selfguide eval task036 --model ./tiny-model --limit 20
      selfguide eval task036 --model ./tiny-model --adapter runs/task036/train/adapter
      selfguide eval --user-oriented --model ./tiny-model --adapter runs/self-instruct/train/adapter --out runs/self-instruct
    """
    from selfguide import api

    limits = {"user_oriented_limit": limit} if user_oriented else {"limit": limit}
    cfg = build_config(config, set_, task=task, model=model, backend=backend, base_url=base_url, eval_split=eval_split, **limits)
    if out:
        cfg.out = str(out)
    metrics = api.evaluate(cfg, adapter=adapter, progress=not quiet, wait=wait, user_oriented=user_oriented)
    run_out = Path(cfg.out or Path("runs") / metrics.get("task", cfg.synth.method))  # as `run`: runs/<task>/eval/<name>/
    if user_oriented:
        typer.echo(json.dumps({k: metrics[k] for k in ("name", "eval", "n", "rougeL")}, indent=2))
        typer.echo(f"predictions: {layout.user_oriented_dir(run_out, metrics['name']) / layout.PREDICTIONS}")
        return
    typer.echo(json.dumps({k: metrics[k] for k in ("name", "task", "n", "superni", "paper", "reported_metric", "reported")}, indent=2))
    typer.echo(f"predictions: {layout.eval_dir(run_out, metrics['name']) / layout.PREDICTIONS}")


@app.command()
def run(
    task: MaybeTaskArg = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    out: OutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    eval_split: SplitOpt = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate on the first N eval items.")] = None,
    input_column: InputColumnOpt = None,
    output_column: OutputColumnOpt = None,
    instruction: InstructionOpt = None,
    demos: DemosOpt = None,
    method: MethodOpt = None,
    teacher: TeacherOpt = None,
    teacher_backend: TeacherBackendOpt = None,
    teacher_base_url: TeacherBaseUrlOpt = None,
    num_processes: NumProcessesOpt = None,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> None:
    """The whole loop: synthesize, finetune, evaluate against prompting, write the report.

    Examples:
      selfguide run task036 --model ./tiny-model --config configs/tiny.yaml
      selfguide run task1345 --method alpaca --model ./student --teacher ./teacher   (also scored on the 252 user-oriented instructions)
    """
    from selfguide import api

    cfg = build_config(config, set_, task=task, model=model, backend=backend, base_url=base_url, out=out, seed=seed, eval_split=eval_split, limit=limit,
                       input_column=input_column, output_column=output_column, instruction=instruction, demos=demos, method=method,
                       teacher=teacher, teacher_backend=teacher_backend, teacher_base_url=teacher_base_url, num_processes=num_processes)
    result = api.run(cfg, progress=not quiet, wait=wait)
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
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write (default <run>/export/<format>/).")] = None,
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


bench_app = typer.Typer(help="Benchmarks: the paper's protocol as one command.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("superni")
def bench_superni(
    model: ModelOpt = None,
    tasks: Annotated[Optional[list[str]], typer.Option("--tasks", help="Only these tasks (repeatable or comma-separated), e.g. --tasks task190,task036.")] = None,
    limit: BenchLimitOpt = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="Narrow an axis of the grid: --grid temperature=0.7,1.0 --grid epochs=1 (axes: temperature, input_length_filter, output_length_filter, epochs).")] = None,
    setting: Annotated[Optional[str], typer.Option(help="Skip tuning and use this setting, e.g. temperature=0.8,input_length_filter=true,output_length_filter=false,epochs=3.")] = None,
    eval_split: BenchSplitOpt = "selfguide",
    out: Annotated[Path, typer.Option("--out", "-o", help="Benchmark folder.")] = Path("runs/bench-superni"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the model calls, generated tokens and training runs the grid implies; run nothing.")] = False,
    max_calls: MaxCallsOpt = None,
    parallel: ParallelOpt = None,
    baselines: Annotated[Optional[str], typer.Option(help="Held-out columns to run besides prompting and self_guide, e.g. few_shot_finetune,gold_finetune (default: all of few_shot_finetune, synthetic_in_context, prompting_with_filters, gold_finetune).")] = None,
    seeds: SeedsOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Reproduce the SELF-GUIDE evaluation on the SuperNI tasks: tune one setting on the tuning
    tasks (max-min gain), then compare it with four baselines on the held-out tasks.

    Examples:
      selfguide bench superni --model lmsys/vicuna-7b-v1.5 --dry-run
      selfguide bench superni -m ./tiny-model --tasks task190,task036,task1516,task1562 --grid temperature=1.0 --grid epochs=1,2 --limit 5 -c configs/tiny.yaml
    """
    from selfguide.backends.resolve import require_model
    from selfguide.benchmark.grid import parse_grid, parse_seeds, parse_setting
    from selfguide.benchmark.superni import parse_baselines
    from selfguide.benchmark.superni import BenchOptions, bench_superni_seeds, results_markdown, seeds_markdown

    cfg = build_config(config, set_, model=model, backend=backend, base_url=base_url, seed=seed, limit=limit)
    cfg = require_model(cfg)
    names = [n.strip() for item in tasks or [] for n in item.split(",") if n.strip()] or None
    options = BenchOptions(
        out=out,
        tasks=names,
        grid=parse_grid(grid),
        setting=parse_setting(setting) if setting else None,
        limit=limit,
        eval_split=eval_split,
        max_calls=max_calls,
        parallel=parallel,
        progress=not quiet,
        baselines=parse_baselines(baselines) if baselines else None,
        executor=executor,
        ray_address=ray_address,
    )
    seed_list = parse_seeds(seeds) if seeds else [cfg.seed]
    summary = bench_superni_seeds(cfg, options, seed_list, dry_run=dry_run)
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
    typer.echo(f"results: {out / 'results.md'} (and results.csv, results.json)")


@bench_app.command("methods")
def bench_methods(
    methods_: Annotated[list[str], typer.Option("--methods", help="The rows (repeatable or comma-separated): method names, e.g. self-guide,alpaca,few-shot-finetune, or YAML configs whose synth section (and teacher) makes the row, e.g. configs/rebase-cpu.yaml.")],
    model: ModelOpt = None,
    tasks: Annotated[Optional[list[str]], typer.Option("--tasks", help="SuperNI tasks to evaluate on (repeatable or comma-separated; default: the 14 held-out tasks).")] = None,
    limit: BenchLimitOpt = None,
    user_oriented: Annotated[Optional[bool], typer.Option("--user-oriented/--no-user-oriented", help="Also score on Self-Instruct's 252 user-oriented instructions (default: when a general-purpose method is a row).")] = None,
    user_oriented_limit: Annotated[Optional[int], typer.Option(help="Score on the first N user-oriented instructions only.")] = None,
    eval_split: BenchSplitOpt = "selfguide",
    out: Annotated[Path, typer.Option("--out", "-o", help="Benchmark folder.")] = Path("runs/bench-methods"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the model calls, generated tokens and training runs; run nothing.")] = False,
    max_calls: MaxCallsOpt = None,
    parallel: ParallelOpt = None,
    seeds: SeedsOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Compare methods on one model and the same SuperNI tasks: each row makes its data, the model
    is finetuned on it and evaluated; prompting is the reference row. Model, training and eval
    settings come from --config for every row.

    Examples:
      selfguide bench methods --methods self-guide,few-shot-finetune,alpaca --tasks task1622,task346 --limit 100 -c configs/cpu.yaml
      selfguide bench methods --methods self-guide,configs/rebase-cpu.yaml --dry-run
    """
    from selfguide.backends.resolve import require_model
    from selfguide.benchmark.grid import parse_seeds
    from selfguide.benchmark.methods import bench_methods_seeds, parse_recipes, results_markdown, seeds_markdown
    from selfguide.benchmark.superni import BenchOptions

    cfg = build_config(config, set_, model=model, backend=backend, base_url=base_url, seed=seed, limit=limit, user_oriented_limit=user_oriented_limit)
    cfg = require_model(cfg)
    recipes = parse_recipes(methods_, cfg)
    names = [n.strip() for item in tasks or [] for n in item.split(",") if n.strip()] or None
    options = BenchOptions(out=out, tasks=names, limit=limit, eval_split=eval_split, max_calls=max_calls, parallel=parallel, progress=not quiet, executor=executor, ray_address=ray_address)
    seed_list = parse_seeds(seeds) if seeds else [cfg.seed]
    summary = bench_methods_seeds(cfg, options, recipes, seed_list, user_oriented, dry_run=dry_run)
    if summary["missing_tasks"]:
        typer.echo(f"missing here (skipped): {', '.join(summary['missing_tasks'])}")
    if dry_run:
        print_bench_plan(summary["plan"])
        return
    typer.echo(seeds_markdown(summary) if "per_seed" in summary else results_markdown(summary))
    typer.echo(f"results: {out / 'results.md'} (and results.json)")


def print_bench_plan(plan: dict) -> None:
    for stage, (low, high) in plan["by_stage"].items():
        typer.echo(f"  {stage}: {low if low == high else f'{low} to {high}'} model calls")
    low, high = plan["model_calls_at_least"], plan["model_calls_at_most"]
    typer.echo(f"model calls: {low if low == high else f'{low} to {high} (some stages need one call per item the filters keep)'}")
    typer.echo(f"generated tokens: at most {plan['generated_tokens_at_most']}")
    typer.echo(f"training runs: {plan['training_runs']}")


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
    out: Annotated[Path, typer.Argument(help="Folder to write the model and tokenizer into.")] = Path("tiny-model"),
    seed: Annotated[int, typer.Option(help="Seed for the random weights.")] = 0,
    architecture: Annotated[
        str, typer.Option(help="llama, qwen2, qwen3, gemma2, gemma3 (text), mistral (sliding window) or phi3.")
    ] = "llama",
    chat_template: Annotated[bool, typer.Option(help="Off: a base model with no chat template.")] = True,
) -> None:
    """Write a tiny random model (Llama-style unless --architecture says otherwise) with a locally
    trained tokenizer (no download), to try every command on a CPU."""
    from selfguide.runfolder import make_folder
    from selfguide.tinymodel import ARCHITECTURES, build_tiny_model

    if architecture not in ARCHITECTURES:
        raise typer.BadParameter(f"one of {', '.join(ARCHITECTURES)}", param_hint="--architecture")
    make_folder(out, "OUT")
    typer.echo(f"tiny model: {build_tiny_model(out, architecture=architecture, chat_template=chat_template, seed=seed)}")


@app.command()
def config(
    config_file: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the resolved config as YAML, each setting's description as a comment above it: the
    defaults, or a file with overrides applied. The output loads back as a --config file."""
    from selfguide.config_comments import config_yaml_with_comments

    typer.echo(config_yaml_with_comments(build_config(config_file, set_)), nl=False)


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
        typer.echo(f"error: {where}{err.format_message()}{hint}", err=True)
        sys.exit(err.exit_code)
    except SelfGuideError as err:
        typer.echo(f"error: {redact_url(str(err))}", err=True)
        interruptible.leave(err.exit_code)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        typer.echo(f"error: {err.filename or 'a file'}: disk full; finished model calls are cached: free space and rerun the same command to continue", err=True)
        interruptible.leave(2)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    if code == 130:  # typer turns Ctrl-C into exit code 130
        typer.echo("interrupted: finished model calls are cached; rerun the same command to continue", err=True)
    interruptible.leave(code if isinstance(code, int) else 0)

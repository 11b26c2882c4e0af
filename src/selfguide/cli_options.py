"""The command line's shared parts: the options several commands take, each defined once, and
how flags become a RunConfig (each flag named in the errors it causes)."""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from selfguide.errors import BadInputError

TaskArg = Annotated[str, typer.Argument(help="Task file (YAML/JSON, ours or SuperNI), a SuperNI task name like task036, or a dataset: hf:NAME[:CONFIG], a datasets folder, a .parquet file.")]
# General-purpose methods (self-instruct, alpaca) make data for no one task; a task is then an eval target.
MaybeTaskArg = Annotated[Optional[str], typer.Argument(metavar="TASK", show_default=False, help="A task as for the other commands; optional for general-purpose methods (--method self-instruct, alpaca), whose rows carry their own instructions.")]
Backend = Optional[Literal["hf", "openai", "vllm", "llamacpp"]]
MaxCallsOpt = Annotated[Optional[int], typer.Option(min=0, help="Stop cleanly after this many new model calls; rerun to continue.")]
SeedsOpt = Annotated[Optional[str], typer.Option(help="Run once per seed (synthesis and training), e.g. --seeds 0,1,2, and report mean and spread (default: --seed alone).")]
BenchSplitOpt = Annotated[Literal["selfguide", "official"], typer.Option(help="selfguide: the authors' test (and, for tuning, validation) splits where present, official first 100 otherwise; official: always the first 100.")]
BenchLimitOpt = Annotated[Optional[int], typer.Option(min=1, help="Evaluate on the first N items of each eval set.")]
ExecutorOpt = Annotated[Literal["local", "ray"], typer.Option("--executor", help="local: parts run here (default); ray: each independent part (task, setting, method) is a Ray task with retries, on a Ray cluster or a local Ray (pip install 'selfguide[ray]'; docs/scale-out.md).")]
NumProcessesOpt = Annotated[Optional[int], typer.Option("--num-processes", min=1, help="Train in N processes (DDP: one per GPU, or over gloo on the CPU); batch size is per process. The run synthesizes and evaluates once (docs/scale-out.md).")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="--executor ray: the Ray cluster to join, e.g. ray://head:10001 or auto (default: $RAY_ADDRESS, else a local Ray started here).")]
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

# The options several commands share, each defined once: name -> (annotation, default). A command
# takes some with `@shared(...)` and receives their values as one dict, `opts`.
OPTIONS: dict[str, tuple[object, object]] = {
    "model": (Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id, local model folder or .gguf file (default: SmolLM2-135M-Instruct); the served model name (openai).")], None),
    "backend": (Annotated[Backend, typer.Option(help="hf (transformers, default), openai (any OpenAI-compatible server), vllm, llamacpp (GGUF files through llama-cpp-python).")], None),
    "base_url": (Annotated[Optional[str], typer.Option(help="Server URL for --backend openai, e.g. http://127.0.0.1:8000/v1.")], None),
    "out": (Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder (default runs/<task name>).")], None),
    "config": (Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file (see `selfguide config`).")], None),
    "set_": (Annotated[Optional[list[str]], typer.Option("--set", help="Override any setting: --set synth.inputs.temperature=0.7 (repeatable).")], None),
    "seed": (Annotated[Optional[int], typer.Option(help="Seed for every sampling decision and training.")], None),
    "eval_split": (Annotated[Optional[Literal["official", "selfguide-test", "selfguide-validation"]], typer.Option(help="SuperNI eval set: official (first 100), selfguide-test, selfguide-validation.")], None),
    "input_column": (Annotated[Optional[str], typer.Option(help="Dataset tasks (hf:NAME[:CONFIG], a datasets folder, a .parquet file): the input column.")], None),
    "output_column": (Annotated[Optional[str], typer.Option(help="Dataset tasks: the answer column (a class-label column gives label names).")], None),
    "instruction": (Annotated[Optional[str], typer.Option(help="Dataset tasks: the task instruction (unless the dataset has an instruction column).")], None),
    "demos": (Annotated[Optional[int], typer.Option(help="Dataset tasks: demos drawn from the train split, which the eval never sees (default 5).")], None),
    "method": (Annotated[Optional[str], typer.Option("--method", help="How the training data is made (default self-guide); `selfguide methods` lists them.")], None),
    "teacher": (Annotated[Optional[str], typer.Option("--teacher", help="A model that writes and labels the data instead of --model, which is still the one trained and evaluated (distillation): hub id, folder, .gguf file or served name.")], None),
    "teacher_backend": (Annotated[Backend, typer.Option("--teacher-backend", help="The teacher's backend (default hf), as --backend.")], None),
    "teacher_base_url": (Annotated[Optional[str], typer.Option("--teacher-base-url", help="The teacher's server URL for --teacher-backend openai.")], None),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")], False),
    "wait": (Annotated[bool, typer.Option("--wait", help="If another selfguide process is using the run folder, wait for it instead of stopping.")], False),
}
MODEL = ("model", "backend", "base_url")
TEACHER = ("teacher", "teacher_backend", "teacher_base_url")
CONFIG = ("config", "set_", "seed")
DATASET = ("input_column", "output_column", "instruction", "demos")


def shared(*names: str):
    """Add the shared options `names` to a command, after its own; it gets their values as `opts`."""

    def wrap(command):
        hints = typing.get_type_hints(command, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values() if p.name != "opts"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=OPTIONS[n][0], default=OPTIONS[n][1]) for n in names]

        @functools.wraps(command)
        def with_options(**kwargs):
            return command(**{k: v for k, v in kwargs.items() if k not in names}, opts={n: kwargs[n] for n in names})

        with_options.__signature__ = inspect.Signature(own + added)  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in own + added}
        return with_options

    return wrap


# The setting each command-line flag sets, and the flag's name for error messages.
FLAG_SETTINGS = {
    "task": ("task", "TASK"),
    "model": ("model.name", "--model"),
    "backend": ("model.backend", "--backend"),
    "base_url": ("model.base_url", "--base-url"),
    "out": ("out", "--out"),
    "seed": ("seed", "--seed"),
    "eval_split": ("eval_split", "--eval-split"),
    "limit": ("eval.limit", "--limit"),
    "user_oriented_limit": ("eval.user_oriented.limit", "--user-oriented-limit"),
    "eval_user_oriented_limit": ("eval.user_oriented.limit", "--limit"),  # `eval --user-oriented --limit N`
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


def build_config(opts: dict, base=None, **values):
    """The RunConfig of a command: defaults (or `base`), --config, its flags, then --set."""
    from selfguide.config import load_config

    values = {**{k: v for k, v in opts.items() if k in FLAG_SETTINGS}, **values}
    if values.get("out") is not None and not str(values["out"]).strip():
        raise BadInputError("--out", "value", "a folder path", "an empty string")
    settings = {FLAG_SETTINGS[name][0]: str(value) if isinstance(value, Path) else value for name, value in values.items()}
    flags = {FLAG_SETTINGS[name][0]: FLAG_SETTINGS[name][1] for name in values if values[name] is not None}
    return load_config(opts.get("config"), opts.get("set_"), settings, base=base, flags=flags)


def task_config(opts: dict, task: Optional[str], **values):
    """build_config for a command on a task, refusing flags that do not apply to that kind of task."""
    from selfguide.tasks.datasets import is_dataset_task

    cfg = build_config(opts, task=task, **values)
    if cfg.task and is_dataset_task(cfg.task):
        if opts.get("eval_split") is not None:
            raise BadInputError("--eval-split", opts["eval_split"], "a SuperNI task (a dataset task's eval split is dataset.eval_split)", "a dataset task")
    elif cfg.task:
        given = next((n for n in DATASET if opts.get(n) is not None), None)
        if given:
            raise BadInputError(FLAG_SETTINGS[given][1], "value", "a dataset task (hf:NAME, a datasets folder, a .parquet file)", "a task file or SuperNI name")
    return cfg


def checked(cfg, dry_run: bool = False):
    """`cfg` once it passed the checks a run makes before any work (see selfguide.preflight)."""
    from selfguide.preflight import check_run_config

    check_run_config(cfg, serve_check=not dry_run)
    return cfg

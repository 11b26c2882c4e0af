"""`selfguide export`: a run's synthetic pairs as a Hub-ready dataset folder in one of five formats,
each with a dataset card (README.md) and, for the chat formats, LLaMA-Factory's dataset_info.json.

  hf        data/train-00000-of-00001.parquet + README.md: `datasets.load_dataset(folder)`, or push it
  parquet   train.parquet + README.md: `datasets.load_dataset("parquet", data_files=...)`
  alpaca    alpaca.json (LLaMA-Factory alpaca with system and history) + dataset_info.json + README.md
  sharegpt  sharegpt.json (ShareGPT conversations, LLaMA-Factory and axolotl) + dataset_info.json + README.md
  openai    train.jsonl (OpenAI fine-tuning chat format) + README.md
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import ValidationError

from selfguide import layout
from selfguide.config import RunConfig, load_config
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.export.cards import dataset_card, write_model_card
from selfguide.export.rows import alpaca_row, openai_row, prompt_completion_row, sharegpt_row
from selfguide.io import describe, read_dataset_rows, read_structured, write_json, write_jsonl, write_text
from selfguide.run_task import load_method_task
from selfguide.runfolder import make_folder
from selfguide.tasks.spec import TaskSpec

logger = logging.getLogger(__name__)
# Hub license ids: apache-2.0, mit, cc-by-4.0, openrail++, other, ...
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")

ExportFormat = Literal["hf", "parquet", "alpaca", "sharegpt", "openai"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)

PROMPT_COMPLETION_FIELDS = """- `prompt`: the conversation up to the answer, as chat messages (system, demo turns, input)
- `completion`: the answer, as one assistant message
- `input`, `output`: the synthetic pair alone; `id`: its id in the run; `task`: the task name

TRL's `SFTTrainer` reads `prompt`/`completion` directly and puts the loss on the completion only."""
ALPACA_FIELDS = """LLaMA-Factory's alpaca schema: `system` (the instruction), `history` (the demos as
[user, assistant] pairs), `instruction` (the synthetic input), `input` (empty), `output` (the answer).
`dataset_info.json` registers it for LLaMA-Factory."""
SHAREGPT_FIELDS = """ShareGPT: `system` (the instruction) and `conversations`, a list of {`from`: human|gpt,
`value`} turns: the demos, the synthetic input, the answer last. LLaMA-Factory reads it through
`dataset_info.json`; axolotl through `type: chat_template` with `field_messages: conversations`."""
OPENAI_FIELDS = """OpenAI fine-tuning chat rows: `messages` of {`role`, `content`}; the demo answers carry
`weight: 0`, so only the final answer is trained on."""


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    rows: int
    url: str | None = None
    model_card: Path | None = None


def run_task_and_config(run_dir: Path) -> tuple[TaskSpec | None, RunConfig]:
    """The run's config and the task it was made from: the copy in the run folder where there is
    one (so a run exports anywhere), else the task its config names; none for a general-purpose
    method given no task."""
    config_path = run_dir / layout.CONFIG
    if not config_path.is_file():
        raise BadInputError(run_dir, "run folder", "a folder written by `selfguide run` or `synthesize` (with config.yaml)", "no config.yaml")
    config = load_config(config_path)
    saved = run_dir / layout.RUN_TASK
    try:
        task = TaskSpec.model_validate(read_structured(saved, "task copy")) if saved.is_file() else load_method_task(config)
    except ValidationError as err:
        raise BadInputError(saved, "content", "the task the run was made from, as selfguide wrote it", describe(err.errors()[0]["msg"])) from None
    if task is not None:  # the card names the task by what the user gave, never a local path
        task = task.model_copy(update={"source": public_name(config.task) if config.task else task.name})
    return task, config


def public_name(name: str) -> str:
    """What a card may say of a model or file: a Hub id or served name as given, a local path as
    its last part only (a card is published; the path is this machine's)."""
    if not name or not (name.startswith((".", "/", "~")) or Path(name).expanduser().exists()):
        return name
    return Path(name).name or "local"


def public_config(config: RunConfig) -> RunConfig:
    """`config` with every local path a card could print cut to its last part."""
    update: dict = {"model": config.model.model_copy(update={"name": public_name(config.model.name)}), "task": public_name(config.task), "out": public_name(config.out)}
    if config.teacher is not None:
        update["teacher"] = config.teacher.model_copy(update={"name": public_name(config.teacher.name)})
    if config.train.model:
        update["train"] = config.train.model_copy(update={"model": public_name(config.train.model)})
    return config.model_copy(update=update)


def general_task(config: RunConfig) -> TaskSpec:
    """What a card says of a general-purpose run (no task): its rows carry their own instructions."""
    return TaskSpec(name=config.synth.method, instruction="none: each row carries its own instruction", examples=[], type="generation", source=config.synth.method)


def export_run(
    run_dir: str | Path, format: ExportFormat = "hf", out: str | Path | None = None, *, push_to_hub: str | None = None, private: bool = False, license: str = "other"
) -> ExportResult:
    """Write the run's synthetic pairs in `format` to `out` (default `<run>/export/<format>/`) with
    a dataset card; refresh the trained model's card; optionally push the folder to the Hub."""
    run_dir = Path(run_dir)
    if format not in FORMATS:
        raise BadInputError("--format", describe(format), f"one of {', '.join(FORMATS)}")
    if not LICENSE_ID.fullmatch(license):
        raise BadInputError("--license", describe(license), "a license id such as apache-2.0, mit, cc-by-4.0 or other (lowercase letters, digits, - . +)")
    if out is not None and not str(out).strip():
        raise BadInputError("--out", "value", "a folder path", "an empty string")
    task, config = run_task_and_config(run_dir)
    dataset_path = layout.dataset_path(run_dir)
    if not dataset_path.is_file():
        raise BadInputError(run_dir, f"{layout.SYNTH}/{layout.DATASET}", "a finished synthesis (run `selfguide synthesize` first)", "no such file")
    pairs = read_dataset_rows(dataset_path)
    if not pairs:
        raise SelfGuideError(f"{dataset_path}: synthesis kept no pairs, nothing to export (see synth/summary.md)")
    if task is None and any(not isinstance(p.get("instruction"), str) for p in pairs):
        raise BadInputError(dataset_path, "rows", "rows with their own 'instruction' (the run has no task to prompt the others with)")
    folder = make_folder(Path(out), "--out") if out else make_folder(run_dir / layout.EXPORT / format, str(run_dir))
    files, data_files, fields = write_rows(folder, format, task, pairs)
    card = folder / layout.MODEL_CARD
    shown_task, shown_config = task or general_task(config), public_config(config)
    write_text(card, dataset_card(run_dir, shown_task, shown_config, pairs, data_files, fields, license))
    result = ExportResult(folder, [*files, card], len(pairs))
    if push_to_hub:
        from selfguide.export.hub import push_folder

        result.url = push_folder(folder, push_to_hub, private=private)
    try:
        result.model_card = write_model_card(run_dir, shown_task, shown_config, dataset_link=push_to_hub)
    except OSError as err:  # a read-only run folder: the export itself is done
        logger.warning("model card not refreshed: %s", err.strerror or err)
    return result


def write_rows(folder: Path, format: str, task: TaskSpec | None, pairs: list[dict]) -> tuple[list[Path], list[dict], str]:
    """The data files of one format, their `configs` entry for the card, and the card's field text."""
    if format in ("hf", "parquet"):
        from datasets import Dataset

        rel = "data/train-00000-of-00001.parquet" if format == "hf" else "train.parquet"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_list([prompt_completion_row(task, p) for p in pairs]).to_parquet(folder / rel)
        return [folder / rel], [{"split": "train", "path": rel}], PROMPT_COMPLETION_FIELDS
    if format == "openai":
        write_jsonl(folder / "train.jsonl", [openai_row(task, p) for p in pairs])
        return [folder / "train.jsonl"], [{"split": "train", "path": "train.jsonl"}], OPENAI_FIELDS
    name = f"{format}.json"
    if format == "alpaca":
        rows, info = [alpaca_row(task, p) for p in pairs], {"columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}}
    else:
        rows, info = [sharegpt_row(task, p) for p in pairs], {"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}}
    write_text(folder / name, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    write_json(folder / "dataset_info.json", {f"selfguide_{task.name if task else 'general'}": {"file_name": name, **info}})
    fields = ALPACA_FIELDS if format == "alpaca" else SHAREGPT_FIELDS
    return [folder / name, folder / "dataset_info.json"], [{"split": "train", "path": name}], fields

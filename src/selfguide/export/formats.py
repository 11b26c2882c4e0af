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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from selfguide import layout
from selfguide.config import RunConfig, load_config
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.export.cards import dataset_card, write_model_card
from selfguide.export.rows import alpaca_row, openai_row, prompt_completion_row, sharegpt_row
from selfguide.io import read_jsonl, write_json, write_jsonl, write_text
from selfguide.run_task import load_run_task
from selfguide.tasks.spec import TaskSpec

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


def run_task_and_config(run_dir: Path) -> tuple[TaskSpec, RunConfig]:
    config_path = run_dir / layout.CONFIG
    if not config_path.is_file():
        raise BadInputError(run_dir, "run folder", "a folder written by `selfguide run` or `synthesize` (with config.yaml)", "no config.yaml")
    config = load_config(config_path)
    return load_run_task(config), config


def export_run(
    run_dir: str | Path, format: ExportFormat = "hf", out: str | Path | None = None, *, push_to_hub: str | None = None, private: bool = False, license: str = "other"
) -> ExportResult:
    """Write the run's synthetic pairs in `format` to `out` (default `<run>/export/<format>/`) with
    a dataset card; refresh the trained model's card; optionally push the folder to the Hub."""
    run_dir = Path(run_dir)
    if format not in FORMATS:
        raise BadInputError("--format", repr(format), f"one of {', '.join(FORMATS)}")
    task, config = run_task_and_config(run_dir)
    dataset_path = layout.dataset_path(run_dir)
    if not dataset_path.is_file():
        raise BadInputError(run_dir, f"{layout.SYNTH}/{layout.DATASET}", "a finished synthesis (run `selfguide synthesize` first)", "no such file")
    pairs = read_jsonl(dataset_path)
    if not pairs:
        raise SelfGuideError(f"{dataset_path}: synthesis kept no pairs, nothing to export (see synth/summary.md)")
    folder = Path(out) if out else run_dir / layout.EXPORT / format
    files, data_files, fields = write_rows(folder, format, task, pairs)
    card = folder / layout.MODEL_CARD
    write_text(card, dataset_card(run_dir, task, config, pairs, data_files, fields, license))
    result = ExportResult(folder, [*files, card], len(pairs))
    if push_to_hub:
        from selfguide.export.hub import push_folder

        result.url = push_folder(folder, push_to_hub, private=private)
    result.model_card = write_model_card(run_dir, task, config, dataset_link=push_to_hub)
    return result


def write_rows(folder: Path, format: str, task: TaskSpec, pairs: list[dict]) -> tuple[list[Path], list[dict], str]:
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
    write_json(folder / "dataset_info.json", {f"selfguide_{task.name}": {"file_name": name, **info}})
    fields = ALPACA_FIELDS if format == "alpaca" else SHAREGPT_FIELDS
    return [folder / name, folder / "dataset_info.json"], [{"split": "train", "path": name}], fields

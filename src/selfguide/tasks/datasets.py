"""Tasks from `datasets` data: a Hub dataset (`hf:NAME[:CONFIG]`), a local `datasets` folder
(save_to_disk or data files) or a parquet file, with columns named for input and output.

Demos are drawn (seeded) from `demo_split`; the eval set is `eval_split` (default test, else
validation). When the two are the same split, as for a single parquet file, the demo rows are
taken out of the eval set, so the eval never sees a demo.

SuperNI through the `datasets` copy of Natural Instructions (columns task_name, definition,
inputs, targets) needs no column flags:
    selfguide run hf:Muennighoff/natural-instructions --set 'dataset.where=task_name=task036*' -m M
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfguide.errors import BadInputError
from selfguide.io import describe
from selfguide.tasks.spec import EvalItem, Example, TaskSpec, infer_type

PREFIX = "hf:"
# Natural Instructions on the Hub: used when the input/output columns are not given.
NI_COLUMNS = {"input": "inputs", "output": "targets", "instruction": "definition"}


class DatasetTaskConfig(BaseModel):
    """How a dataset becomes a task (only used when the task is hf:NAME, a folder or a parquet file)."""

    model_config = ConfigDict(extra="forbid")

    input_column: str | None = Field(None, description="Column holding the task input; unset: 'input', or 'inputs' in Natural Instructions.")
    output_column: str | None = Field(None, description="Column holding the answer (a class-label column gives label names); unset: 'output' or 'targets'.")
    instruction: str | None = Field(None, description="The task instruction; unset: the first demo's instruction_column value.")
    instruction_column: str | None = Field(None, description="Column holding the instruction (Natural Instructions: 'definition').")
    demos: int = Field(5, ge=1, le=50, description="Demos drawn (seeded) from demo_split; the paper's tasks have 2-10.")
    demo_split: str = Field("train", description="Split the demos come from; the eval never sees a demo row.")
    eval_split: str | None = Field(None, description="Split to evaluate on; unset: test, else validation, else demo_split minus the demos.")
    where: str | None = Field(None, description="Keep rows with column=value; a trailing * matches a prefix (task_name=task036*).")
    type: Literal["classification", "generation"] | None = Field(None, description="classification or generation; unset: a class-label column or the outputs decide.")


def is_dataset_task(spec: str) -> bool:
    """hf:NAME, a parquet file, or a folder of `datasets` data (not a SuperNI name or task file)."""
    if spec.startswith(PREFIX):
        return True
    path = Path(spec)
    return path.suffix == ".parquet" or (path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "dataset_info.json", "state.json", "data")))


def open_splits(spec: str) -> dict:
    import datasets

    name, _, config = spec[len(PREFIX) :].partition(":")
    if spec.startswith(PREFIX) and not name.strip():
        raise BadInputError(spec, "dataset", "hf:NAME[:CONFIG] with a dataset name, e.g. hf:imdb", "no name")
    quiet = logging.getLogger("datasets")  # its builders log a failing file's traceback before raising
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        if spec.startswith(PREFIX):
            loaded = datasets.load_dataset(name, config or None)
        elif spec.endswith(".parquet"):
            loaded = datasets.load_dataset("parquet", data_files=spec)
        elif (Path(spec) / "dataset_dict.json").exists() or (Path(spec) / "state.json").exists():
            loaded = datasets.load_from_disk(spec)
        else:
            loaded = datasets.load_dataset(spec)
    except Exception as err:  # the datasets library wraps what went wrong (no such file, offline, bad bytes) in many types
        cause = err.__cause__ or err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
        raise BadInputError(spec, "dataset", "a loadable dataset (hf:NAME[:CONFIG], a datasets folder or a parquet file)", f"{type(cause).__name__}: {first}") from None
    finally:
        quiet.setLevel(level)
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def pick_column(spec: str, columns: list[str], given: str | None, defaults: tuple[str, ...], flag: str) -> str:
    if given is not None:
        if given not in columns:
            raise BadInputError(spec, f"{flag} {describe(given)}", f"one of the columns {columns}")
        return given
    found = next((name for name in defaults if name in columns), None)
    if found is None:
        raise BadInputError(spec, flag, f"a column name (the dataset has {columns})", "none given and no default column found")
    return found


def keep_where(spec: str, split, where: str | None):
    if not where:
        return split
    column, sep, value = where.partition("=")
    if not sep or column not in split.column_names:
        raise BadInputError(spec, f"dataset.where {describe(where)}", f"column=value with a column among {split.column_names}")
    if value.endswith("*"):
        return split.filter(lambda row: str(row[column]).startswith(value[:-1]))
    return split.filter(lambda row: str(row[column]) == value)


def answer_text(spec: str, split, column: str):
    """A function (row, index) -> its references: a class-label column gives the label name, a
    list column (Natural Instructions' targets) every item, a number its text. A missing answer
    is an error, never the label "None"."""
    from datasets import ClassLabel

    feature = split.features[column]

    def answer(row: dict, i: int) -> list[str]:
        value = row[column]
        if isinstance(feature, ClassLabel) and isinstance(value, int) and value >= 0:
            return [feature.int2str(value)]
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v).strip() for v in values):
            raise BadInputError(spec, f"--output-column {column!r}", "an answer (text, a number or a list of them) in every row", f"{describe(value)} in row {i}")
        return [str(v) for v in values]

    return answer


def input_text(spec: str, row: dict, column: str, i: int) -> str:
    value = row[column]
    if not isinstance(value, str):
        raise BadInputError(spec, f"--input-column {column!r}", "a column of text", f"{describe(value)} in row {i}")
    return value


def load_dataset_task(spec: str, config: DatasetTaskConfig, seed: int = 0) -> TaskSpec:
    """A TaskSpec from a dataset; see the module docstring."""
    splits = open_splits(spec)
    if config.demo_split not in splits:
        raise BadInputError(spec, f"demo split {config.demo_split!r}", f"one of the splits {sorted(splits)}")
    eval_name = config.eval_split or next((s for s in ("test", "validation") if s in splits), config.demo_split)
    if eval_name not in splits:
        raise BadInputError(spec, f"eval split {eval_name!r}", f"one of the splits {sorted(splits)}")
    demo_rows = keep_where(spec, splits[config.demo_split], config.where)
    eval_rows = keep_where(spec, splits[eval_name], config.where)
    columns = demo_rows.column_names
    input_column = pick_column(spec, columns, config.input_column, ("input", NI_COLUMNS["input"]), "--input-column")
    output_column = pick_column(spec, columns, config.output_column, ("output", NI_COLUMNS["output"]), "--output-column")
    if len(demo_rows) < config.demos:
        raise BadInputError(spec, f"split {config.demo_split!r}", f"at least {config.demos} rows for --demos", f"{len(demo_rows)} rows")
    demo_index = sorted(random.Random(seed).sample(range(len(demo_rows)), config.demos))
    answer, eval_answer = answer_text(spec, demo_rows, output_column), answer_text(spec, eval_rows, output_column)
    demos = [demo_rows[i] for i in demo_index]
    held_out = set(demo_index) if eval_name == config.demo_split else set()
    eval_items = [EvalItem(input=input_text(spec, row, input_column, i), references=eval_answer(row, i), id=str(row.get("id", i))) for i, row in enumerate(eval_rows) if i not in held_out]
    if not eval_items:
        raise BadInputError(spec, f"eval split {eval_name!r}", "at least one row besides the demos", "none")
    instruction = config.instruction or instruction_from(spec, demos, columns, config.instruction_column)
    from datasets import ClassLabel

    is_label = isinstance(demo_rows.features[output_column], ClassLabel)
    task_type = config.type or ("classification" if is_label else infer_type([item.references[0] for item in eval_items]))
    labels = None
    if task_type == "classification":
        labels = list(demo_rows.features[output_column].names) if is_label else sorted({item.references[0].strip() for item in eval_items} | {answer(d, i)[0].strip() for i, d in zip(demo_index, demos)})
    return TaskSpec(
        name=task_name(spec, config.where),
        instruction=instruction,
        examples=[Example(input=input_text(spec, d, input_column, i), output=answer(d, i)[0]) for i, d in zip(demo_index, demos)],
        type=task_type,
        labels=labels,
        eval=eval_items,
        source=spec,
    )


def instruction_from(spec: str, demos: list[dict], columns: list[str], column: str | None) -> str:
    column = column or (NI_COLUMNS["instruction"] if NI_COLUMNS["instruction"] in columns else None)
    if column is None:
        raise BadInputError(spec, "--instruction", "the task instruction (this dataset has no instruction column)", "none given")
    if column not in columns:
        raise BadInputError(spec, f"dataset.instruction_column {describe(column)}", f"one of the columns {columns}")
    return str(demos[0][column]).strip()


def task_name(spec: str, where: str | None) -> str:
    if where:
        return where.partition("=")[2].rstrip("*").strip("_") or "dataset"
    base = spec[len(PREFIX) :] if spec.startswith(PREFIX) else Path(spec).stem
    return base.replace("/", "-").replace(":", "-")

"""Super-NaturalInstructions task files: Definition -> instruction, Positive Examples -> demos,
Instances -> eval set (the official first 100, or the SELF-GUIDE authors' split files)."""

from __future__ import annotations

import os
from pathlib import Path

from selfguide.errors import BadInputError
from selfguide.tasks.files import load_eval_jsonl, parse_examples
from selfguide.tasks.spec import EvalItem, EvalSplit, TaskSpec, infer_type

OFFICIAL_TEST_INSTANCES = 100


def superni_root_default() -> Path:
    """`$SELFGUIDE_SUPERNI` or ../shared/superni next to the working directory."""
    return Path(os.environ.get("SELFGUIDE_SUPERNI", "../shared/superni"))


def superni_task(path: Path, data: dict, eval_split: EvalSplit, superni_root: str | Path | None = None) -> TaskSpec:
    definition = data.get("Definition")
    if not isinstance(definition, list) or not definition or not all(isinstance(d, str) for d in definition):
        raise BadInputError(path, "field 'Definition'", "a non-empty list of strings")
    examples = parse_examples(path, data.get("Positive Examples"), field="Positive Examples")
    instances = data.get("Instances")
    if not isinstance(instances, list) or not instances:
        raise BadInputError(path, "field 'Instances'", "a non-empty list of {id, input, output}")
    all_items = []
    for i, instance in enumerate(instances):
        refs = instance.get("output") if isinstance(instance, dict) else None
        if not isinstance(instance, dict) or not isinstance(instance.get("input"), str) or not isinstance(refs, list) or not refs:
            raise BadInputError(path, f"Instances[{i}]", "{id, input, output: [references]}")
        all_items.append(EvalItem(input=instance["input"], references=[str(r) for r in refs], id=instance.get("id")))
    name = path.stem.split("_")[0]
    # The label set comes from the data, not the definition: task190's definition names E/C/N,
    # its instances use only C and N.
    first_refs = [item.references[0].strip() for item in all_items]
    task_type = infer_type(first_refs)
    labels = sorted(set(first_refs)) if task_type == "classification" else None
    if eval_split == "official":
        eval_items = all_items[:OFFICIAL_TEST_INSTANCES]
    else:
        split_dir = "test" if eval_split == "selfguide-test" else "validation"
        root = Path(superni_root) if superni_root else superni_root_for(path)
        split_file = root / "selfguide_splits" / split_dir / f"{name}.jsonl"
        if not split_file.exists():
            raise BadInputError(split_file, "file", f"the SELF-GUIDE {split_dir} split of {name}", "no such file (use --eval-split official)")
        eval_items = load_eval_jsonl(split_file, input_key="input_col", output_key="output_col")
    eval_inputs = {item.input for item in eval_items}
    dev_items = [item for item in all_items if item.input not in eval_inputs]
    categories = data.get("Categories") or [None]
    return TaskSpec(
        name=name,
        instruction=" ".join(d.strip() for d in definition),
        examples=examples,
        type=task_type,
        labels=labels,
        eval=eval_items,
        dev=dev_items,
        category=categories[0],
        source=str(path),
    )


def superni_root_for(task_path: Path) -> Path:
    """A task file in <root>/tasks/ has its splits in <root>/selfguide_splits/."""
    if task_path.parent.name == "tasks":
        return task_path.parent.parent
    return superni_root_default()


def find_superni_task(name: str, superni_root: str | Path | None = None) -> Path | None:
    """The task file for a short name like 'task036', or None when it is not there."""
    root = Path(superni_root) if superni_root else superni_root_default()
    matches = sorted((root / "tasks").glob(f"{name}_*.json"))
    return matches[0] if matches else None

"""Our own task files (YAML/JSON with instruction, examples, eval), and the readers the SuperNI
loader shares: structured files, demo lists, eval JSONL."""

from __future__ import annotations

from pathlib import Path

from selfguide.errors import BadInputError
from selfguide.io import describe, read_jsonl_objects, read_structured
from selfguide.tasks.spec import EvalItem, Example, TaskSpec, infer_type


def read_structured_file(path: Path, what: str = "task file") -> object:
    return read_structured(path, what)


def own_task(path: Path, data: dict) -> TaskSpec:
    unknown = set(data) - {"name", "instruction", "examples", "type", "labels", "eval", "category"}
    if unknown:
        raise BadInputError(path, f"field {describe(sorted(map(str, unknown))[0])}", "one of name, instruction, examples, type, labels, eval, category")
    instruction = data.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise BadInputError(path, "field 'instruction'", "a non-empty string", describe(instruction))
    examples = parse_examples(path, data.get("examples"))
    task_type = data.get("type")
    if task_type is not None and task_type not in ("classification", "generation"):
        raise BadInputError(path, "field 'type'", "'classification' or 'generation'", describe(task_type))
    labels = data.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise BadInputError(path, "field 'labels'", "a non-empty list of non-empty strings", describe(labels))
        if len(set(labels)) != len(labels):
            raise BadInputError(path, "field 'labels'", "distinct labels", describe(labels))
        if task_type == "generation":
            raise BadInputError(path, "field 'labels'", "no labels for a generation task")
        for i, example in enumerate(examples):
            if example.output.strip() not in labels:
                raise BadInputError(path, f"examples[{i}].output", f"one of the labels {labels}", describe(example.output))
    eval_items: list[EvalItem] = []
    if data.get("eval") is not None:
        eval_file = data["eval"]
        if not isinstance(eval_file, str):
            raise BadInputError(path, "field 'eval'", "a path to a JSONL file of {input, output}", describe(eval_file))
        eval_path = Path(eval_file) if Path(eval_file).is_absolute() else path.parent / eval_file
        eval_items = load_eval_jsonl(eval_path)
    if task_type is None:
        task_type = "classification" if labels else infer_type([item.references[0] for item in eval_items])
    if task_type == "classification" and not labels:
        labels = sorted({item.references[0].strip() for item in eval_items} | {e.output.strip() for e in examples})
    name = data.get("name") or path.stem
    if not isinstance(name, str):
        raise BadInputError(path, "field 'name'", "a string", describe(name))
    category = data.get("category")
    if category is not None and not isinstance(category, str):
        raise BadInputError(path, "field 'category'", "a string such as 'Textual Entailment'", describe(category))
    return TaskSpec(
        name=name,
        instruction=instruction.strip(),
        examples=examples,
        type=task_type,
        labels=labels,
        eval=eval_items,
        category=category,
        source=str(path),
    )


def parse_examples(path: Path, raw: object, field: str = "examples") -> list[Example]:
    if not isinstance(raw, list) or not raw:
        raise BadInputError(path, f"field {field!r}", "a list of at least one {input, output} example", describe(raw))
    examples = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise BadInputError(path, f"{field}[{i}]", "a mapping with 'input' and 'output'", describe(item))
        for key in ("input", "output"):
            value = item.get(key)
            if not isinstance(value, str) or not value.strip():
                raise BadInputError(path, f"{field}[{i}].{key}", "a non-empty string", describe(value))
        examples.append(Example(input=item["input"], output=item["output"]))
    return examples


def load_eval_jsonl(path: Path, input_key: str = "input", output_key: str = "output") -> list[EvalItem]:
    items = []
    for lineno, row in read_jsonl_objects(path, "eval JSONL file", f"a JSON object with {input_key!r} and {output_key!r}"):
        source_input, output = row.get(input_key), row.get(output_key)
        if not isinstance(source_input, str):
            raise BadInputError(path, f"line {lineno} field {input_key!r}", "a string", describe(source_input))
        references = [output] if isinstance(output, str) else output
        if not isinstance(references, list) or not references or not all(isinstance(r, str) for r in references):
            raise BadInputError(path, f"line {lineno} field {output_key!r}", "a string or a non-empty list of strings", describe(output))
        items.append(EvalItem(input=source_input, references=references, id=str(row["id"]) if "id" in row else f"{path.stem}-{lineno}"))
    if not items:
        raise BadInputError(path, "file", "at least one eval line", "an empty file")
    return items

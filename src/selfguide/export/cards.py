"""The dataset card and the model card of a run, written from its files.

Both are README.md files with Hugging Face YAML metadata (built with huggingface_hub's card data
classes, so the Hub reads them): the dataset card goes beside every export, the model card
replaces PEFT's template in the adapter (or full model) folder.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from huggingface_hub import DatasetCardData, ModelCardData

from selfguide import __version__, layout
from selfguide.config import RunConfig
from selfguide.methods import Method, get_method
from selfguide.methods.self_guide import SelfGuideConfig
from selfguide.report.report import METRIC_NAMES, settings_rows
from selfguide.report.run_files import known_as
from selfguide.report.deploy import headline
from selfguide.report.verdict import read_json
from selfguide.stages.funnel import fmt_reasons
from selfguide.summary import ModelRoles, SynthSummary, read_summary
from selfguide.tasks.spec import TaskSpec


def table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def is_hub_id(name: str) -> bool:
    """`org/name` that is not a local folder: the only kind of base model the Hub can link to."""
    return name.count("/") == 1 and not name.startswith((".", "/")) and not Path(name).exists()


def size_category(n: int) -> str:
    return "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "n>100K"


def funnel_markdown(summary: SynthSummary | None) -> str:
    if summary is None:
        return "Synthesis did not finish: no funnel."
    if not summary.stages:
        return f"No funnel: the method records no stages.\n\nFinal pairs: {summary.pairs}."
    rows = [[s.stage, s.unit, s.total, s.kept, s.n_dropped, fmt_reasons(s)] for s in summary.stages]
    return table(["stage", "unit", "in", "kept", "dropped", "drops by reason"], rows) + f"\n\nFinal pairs: {summary.pairs}."


def labels_markdown(task: TaskSpec, pairs: list[dict]) -> str:
    if not task.is_classification:
        return "Generation task: no label set."
    final = Counter(pair["output"] for pair in pairs)
    names = list(task.labels or []) + sorted(set(final) - set(task.labels or []))
    rows = [[name, final[name], f"{100 * final[name] / (final.total() or 1):.0f}%"] for name in names]
    return table(["label", "pairs", "share"], rows)


def eval_markdown(run_dir: Path) -> str:
    base = read_json(layout.eval_dir(run_dir, layout.PROMPTING) / layout.METRICS)
    tuned = read_json(layout.eval_dir(run_dir, layout.FINETUNED) / layout.METRICS)
    if not base and not tuned:
        return "Not evaluated."
    values = {name: {**(m or {}).get("superni", {}), **(m or {}).get("paper", {})} for name, m in (("prompting", base), ("finetuned", tuned))}
    rows = []
    for key in sorted(set(values["prompting"]) | set(values["finetuned"]), key=list(METRIC_NAMES).index):
        b, t = values["prompting"].get(key), values["finetuned"].get(key)
        rows.append([METRIC_NAMES[key], "-" if b is None else f"{b:.2f}", "-" if t is None else f"{t:.2f}", f"{t - b:+.2f}" if b is not None and t is not None else "-"])
    n = (base or tuned).get("n", "?")
    return table(["metric (0-100)", f"prompting (n={n})", "finetuned", "difference"], rows) + "\n\n" + "\n\n".join(headline(run_dir))


class CardFacts:
    """What both cards say about a run: the method, who made the data and the model, by the names the user knows."""

    def __init__(self, run_dir: Path, config: RunConfig):
        environment = read_json(Path(run_dir) / layout.ENVIRONMENT)
        self.method: Method = get_method(config.synth.method)
        self.summary = read_summary(layout.synth_dir(run_dir) / layout.SUMMARY)
        self.model = known_as(environment, config.model.name)
        teacher = known_as(environment, config.teacher.name) if config.teacher else self.model
        recorded = self.summary.models if self.summary is not None and self.summary.models is not None else None
        roles = recorded or ModelRoles(wrote=teacher, labelled=teacher, trained=self.model)
        self.wrote, self.labelled = known_as(environment, roles.wrote), known_as(environment, roles.labelled)
        self.from_file = roles.from_file

    @property
    def cited(self) -> str:
        return self.method.paper or self.method.display_name

    @property
    def made_by(self) -> str:
        """Who made the pairs, as the end of a sentence: "`m` wrote and labelled them for itself"."""
        if self.wrote in GOLD_SOURCES:
            return f"they come from {self.wrote}"
        if self.from_file:
            return f"the inputs come from {self.wrote} and `{self.labelled}` labelled them"
        if self.wrote != self.labelled:
            return f"`{self.wrote}` wrote them and `{self.labelled}` labelled them"
        return f"`{self.model}` wrote and labelled them for itself" if self.wrote == self.model else f"`{self.wrote}` wrote and labelled them"

    def tags(self) -> list[str]:
        return ["synthetic", "selfguide", self.method.name]


GOLD_SOURCES = ("the task's gold demos", "the task's gold instances")  # methods/baselines.py: gold data has no model author


def method_text(task: TaskSpec, config: RunConfig, summary: SynthSummary | None = None) -> str:
    synth = config.synth
    method = get_method(synth.method)
    if not isinstance(synth, SelfGuideConfig):
        stages = ", ".join(f"{s.stage} ({s.unit})" for s in summary.stages) if summary is not None and summary.stages else ""
        return f"{method.display_name} (`{synth.method}`): {method.description}" + (f"\n\nIts stages, in order: {stages}." if stages else "")
    balance = "; classes were balanced by downsampling" if task.is_classification and synth.outputs.balance_classes else ""
    written = f"The inputs came from `{synth.inputs.file}`" if synth.inputs.file else "The model wrote new task inputs from the instruction and the gold demos"
    return f"""{written}; rule-based filters
dropped empty, out-of-window, boilerplate and duplicate inputs (and copies of demo and eval
inputs); the model then labelled each kept input {synth.outputs.n} times by in-context
learning and a vote kept answers with at least {synth.outputs.min_vote_share:.0%} of the
surviving samples{balance}."""


def dataset_card(run_dir: Path, task: TaskSpec, config: RunConfig, pairs: list[dict], data_files: list[dict], fields: str, license: str = "other") -> str:
    """README.md for an exported dataset: metadata, method, models, settings, funnel, labels, eval."""
    facts = CardFacts(run_dir, config)
    title, model = facts.method.display_name, facts.model
    n = len(pairs)
    card = DatasetCardData(
        license=license,
        pretty_name=f"{title} synthetic data for {task.name}",
        tags=facts.tags(),
        task_categories=["text-classification" if task.is_classification else "text-generation"],
        size_categories=[size_category(n)],
        configs=[{"config_name": "default", "data_files": data_files}],
    )
    environment = read_json(Path(run_dir) / layout.ENVIRONMENT)
    settings = table(["setting", "value"], settings_rows(task, config, lambda name: known_as(environment, name)))
    body = f"""# {title} synthetic data: {task.name}

{n} input/output pairs made with {facts.cited}: {facts.made_by}. Produced by
selfguide {__version__}.

{chr(10).join(headline(run_dir))}

## Method

{method_text(task, config, facts.summary)}

## Models

| role | model |
|---|---|
| wrote the inputs | `{facts.wrote}` |
| labelled the inputs | `{facts.labelled}` |
| was finetuned | `{model}` ({config.train.method}) |

## Task

- name: {task.name} ({task.type}{", " + task.category if task.category else ""})
- source: {task.source or "-"}
- labels: {", ".join(task.labels) if task.labels else "-"}
- instruction: {task.instruction}

## Data fields

{fields}

Every row holds the full training prompt: the instruction as the system turn, the
{len(task.examples)} gold demos as earlier user/assistant turns, then the synthetic input; the
answer is the synthetic output. That is the prompt selfguide trains and evaluates with.

## Funnel

{funnel_markdown(facts.summary)}

## Labels

{labels_markdown(task, pairs)}

## Evaluation

{eval_markdown(run_dir)}

## Settings

{settings}

## License

The license field is `{license}`. The inputs and outputs were made by {facts.wrote}{"" if facts.labelled == facts.wrote else " and " + facts.labelled}, so
its license and usage terms apply to them; the instruction and the demos come from the task source
({task.source or task.name}), whose license applies to those parts of each prompt.
"""
    return f"---\n{card.to_yaml()}\n---\n\n{body}"


def model_card(run_dir: Path, task: TaskSpec, config: RunConfig, is_adapter: bool, dataset_link: str | None = None) -> str:
    """README.md for the finetuned adapter or model: the real base model, the data, the eval table."""
    facts = CardFacts(run_dir, config)
    title, model = facts.method.display_name, facts.model
    card = ModelCardData(
        base_model=model if is_hub_id(model) else None,
        library_name="peft" if is_adapter else "transformers",
        datasets=[dataset_link] if dataset_link and is_hub_id(dataset_link) else None,
        tags=[*facts.tags()[1:], "lora" if is_adapter else "full-finetune", "trl", "sft"],
        pipeline_tag="text-generation",
    )
    done = read_json(layout.train_dir(run_dir) / layout.TRAIN_DONE) or {}
    data = f"[{dataset_link}](https://huggingface.co/datasets/{dataset_link})" if dataset_link and is_hub_id(dataset_link) else f"`{dataset_link or run_dir / 'synth' / 'dataset.jsonl'}`"
    load = (
        'from peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained("PATH_OR_REPO")'
        if is_adapter
        else 'from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")'
    )
    body = f"""# {task.name} expert: `{model}` finetuned on {title} data

{"A LoRA adapter" if is_adapter else "A full finetune"} of `{model}` trained on {done.get("n_train", "?")} input/output
pairs made with {facts.cited}: {facts.made_by}. Trained by selfguide {__version__}.

- base model: `{model}`
- data made by: {title} (`{facts.method.name}`)
- training data: {data}
- task: {task.name} ({task.type}); instruction: {task.instruction}
- training: {config.train.method}, {config.train.epochs:g} epochs, loss on the answer tokens only

## Evaluation

{eval_markdown(run_dir)}

## Use

Prompt it as it was trained: the instruction as the system turn, the task's demos as earlier
user/assistant turns, then the input.

```python
{load}
```
"""
    return f"---\n{card.to_yaml()}\n---\n\n{body}"


def write_model_card(run_dir: Path, task: TaskSpec, config: RunConfig, dataset_link: str | None = None) -> Path | None:
    """Replace PEFT's template README.md in the trained model's folder; None when nothing was trained."""
    done = read_json(layout.train_dir(run_dir) / layout.TRAIN_DONE)
    if not done or not Path(done["model_dir"]).is_dir():
        return None
    path = Path(done["model_dir"]) / layout.MODEL_CARD
    path.write_text(model_card(Path(run_dir), task, config, done["is_adapter"], dataset_link), encoding="utf-8")
    return path

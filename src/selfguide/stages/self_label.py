"""The self-label diagnostic: can this model teach itself this task?

Before any training, the labelling stage (the same prompt, samples, filters and vote, or label
scoring) runs on real inputs whose gold answer is known: the task's gold items outside the eval
set (SuperNI instances not evaluated on), or else each demo held out in turn and labelled with
the other demos in the prompt. How often the self-label is right bounds what finetuning on
self-labels can teach: a model that labels a task at chance will learn chance.
"""

from __future__ import annotations

import random
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.cache import CachedModel, derive_seed
from selfguide.eval.evaluate import eval_requests
from selfguide.eval.metrics import exact_match, rouge_l
from selfguide.stages.annotate import OutputGenConfig, annotate, uses_label_scores
from selfguide.tasks.spec import TaskSpec


class SelfLabelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: int = Field(20, ge=0, description="Gold items to self-label (0 = off); a task without gold items outside its eval set uses its demos, each held out in turn.")
    prompting: bool = Field(
        False,
        description="Also answer the same gold items by greedy prompting (one more call per item), so the labels that "
        "passed the vote can be compared with what prompting already gets right on the same items (configs/cpu.yaml: on).",
    )


def gold_cases(task: TaskSpec, config: SelfLabelConfig, seed: int) -> tuple[list[tuple[TaskSpec, str, list[str]]], str]:
    """(task whose demos prompt the labelling, gold input, references) per case, and where they come from."""
    if config.items == 0:
        return [], ""
    if task.dev:
        rng = random.Random(derive_seed(seed, "self-label"))
        chosen = rng.sample(task.dev, min(config.items, len(task.dev)))
        return [(task, item.input, item.references) for item in chosen], "gold items outside the eval set"
    if len(task.examples) < 2:
        return [], ""
    held_out = [
        (task.model_copy(update={"examples": task.examples[:i] + task.examples[i + 1 :]}), demo.input, [demo.output])
        for i, demo in enumerate(task.examples[: config.items])
    ]
    return held_out, "demos, each held out in turn"


def self_label_calls(task: TaskSpec, config: SelfLabelConfig, seed: int) -> int:
    """Model calls of the diagnostic: one per distinct (prompt, input)."""
    cases, _ = gold_cases(task, config, seed)
    return len({(id(case_task), text) for case_task, text, _ in cases}) * (2 if config.prompting else 1)


def self_label_accuracy(task: TaskSpec, model: CachedModel, outputs: OutputGenConfig, config: SelfLabelConfig, seed: int) -> dict | None:
    """Score of the self-labels against gold: exact match for classification, ROUGE-L otherwise.

    `accuracy` counts inputs the vote drops as wrong (they would not reach training either), so it
    mixes two things: how many labels pass (`pass_rate`) and how good those are (`passed_accuracy`).
    Only the second is what finetuning learns from; `prompting_on_passed`, greedy prompting's score
    on the same passed items, is what it has to beat (`label_gain` = the difference)."""
    cases, source = gold_cases(task, config, seed)
    if not cases:
        return None
    # Cases that share a task prompt are labelled in one call, so the backend batches them.
    by_task: dict[int, list[int]] = {}
    for index, (case_task, _, _) in enumerate(cases):
        by_task.setdefault(id(case_task), []).append(index)
    answers: dict[int, str | None] = {}
    for indices in by_task.values():
        case_task = cases[indices[0]][0]
        records = [{"id": f"gold{i}", "text": cases[i][1]} for i in indices]
        for i, annotated in zip(indices, annotate(case_task, records, model, outputs, derive_seed(seed, "self-label-samples"))):
            answers[i] = annotated["output"]
    metric = "exact_match" if task.is_classification else "rougeL"

    def score(answer: str | None, references: list[str]) -> float:
        return 0.0 if answer is None else exact_match(answer, references) if metric == "exact_match" else rouge_l(answer, references)

    scores = [score(answers[i], references) for i, (_, _, references) in enumerate(cases)]
    passed = [i for i in range(len(cases)) if answers[i] is not None]
    result = {
        "metric": metric,
        "accuracy": 100 * sum(scores) / len(scores),
        "n": len(scores),
        "passed_vote": len(passed),
        "pass_rate": 100 * len(passed) / len(cases),
        "passed_accuracy": 100 * sum(scores[i] for i in passed) / len(passed) if passed else None,
        "labeler": ("score" if uses_label_scores(outputs, model) else "sample") if task.is_classification else "sample",
        "source": source,
    }
    if config.prompting:
        requests = [eval_requests(case_task, [text], outputs.max_new_tokens)[0] for case_task, text, _ in cases]
        greedy = [completions[0].text.strip() for completions in model.generate(requests, desc="prompting the self-label items")]
        prompted = [score(answer, references) for answer, (_, _, references) in zip(greedy, cases)]
        result["prompting_accuracy"] = 100 * sum(prompted) / len(prompted)
        if passed:
            result["prompting_on_passed"] = 100 * sum(prompted[i] for i in passed) / len(passed)
            result["label_gain"] = result["passed_accuracy"] - result["prompting_on_passed"]
    if task.is_classification:
        result |= chance_levels([references[0] for _, _, references in cases], [a for a in answers.values() if a is not None])
    return result


def chance_levels(gold: list[str], answers: list[str]) -> dict:
    """What the accuracy means for classification: the score of always giving the commonest gold
    answer, and how much of the self-labelling one label took (a labeler that says one label for
    everything gives single-class training data, and the model learns a constant)."""
    majority, majority_count = Counter(gold).most_common(1)[0]
    levels = {"majority_label": majority, "majority_accuracy": 100 * majority_count / len(gold)}
    if answers:
        top, top_count = Counter(answers).most_common(1)[0]
        levels |= {"top_self_label": top, "top_self_label_share": 100 * top_count / len(answers)}
    return levels



def diagnostic_text(accuracy: dict) -> str:
    """The diagnostic in words: the vote's pass rate apart from the passed labels' score, beside
    prompting's score on the same items ('' for a summary written before these were measured)."""
    if accuracy.get("pass_rate") is None:
        return ""
    text = f"{accuracy['passed_vote']} of {accuracy['n']} passed the vote"
    if accuracy.get("passed_accuracy") is None:
        return text
    text += f" and scored {accuracy['passed_accuracy']:.1f} {accuracy['metric']}"
    if accuracy.get("prompting_on_passed") is not None:
        text += f", prompting {accuracy['prompting_on_passed']:.1f} on the same items ({accuracy['label_gain']:+.1f})"
    return text

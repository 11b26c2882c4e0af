"""What the API functions accept in place of a RunConfig: a task and a few keyword settings.

    selfguide.run("task.yaml", model="HuggingFaceTB/SmolLM2-135M-Instruct")
    selfguide.run(Task(instruction=..., examples=[...], eval=[...]), model="./tiny-model", config="configs/tiny.yaml")
    selfguide.synthesize(load_config("configs/tiny.yaml"), model="./tiny-model", task="task036")
"""

from __future__ import annotations

from pathlib import Path

from selfguide.config import RunConfig, load_config
from selfguide.tasks.spec import TaskSpec

# Keyword settings and the config field each one sets.
KEYWORDS = {
    "task": "task",
    "model": "model.name",
    "backend": "model.backend",
    "base_url": "model.base_url",
    "out": "out",
    "seed": "seed",
    "eval_split": "eval_split",
    "limit": "eval.limit",
}


def run_config(
    target: RunConfig | TaskSpec | str | Path | None = None,
    *,
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    **settings,
) -> RunConfig:
    """A RunConfig from `target` (a RunConfig, a Task, or a task file / SuperNI name / dataset
    spec), a YAML `config` file, keyword `settings` (task, model, backend, base_url, out, seed,
    eval_split, limit) and `overrides` such as ["synth.inputs.rounds=5"]."""
    unknown = set(settings) - set(KEYWORDS)
    if unknown:
        raise TypeError(f"unknown setting {sorted(unknown)[0]!r}: use one of {', '.join(KEYWORDS)}, or overrides=['section.key=value']")
    values = {KEYWORDS[key]: str(value) if isinstance(value, Path) else value for key, value in settings.items()}
    task = None
    if isinstance(target, TaskSpec):
        task = target
    elif isinstance(target, (str, Path)):
        values["task"] = str(target)
    base = target if isinstance(target, RunConfig) else None
    if base is not None and config is not None:
        raise TypeError("give either a RunConfig or a config file, not both")
    resolved = load_config(config, overrides, values, base=base)
    if task is not None:
        from selfguide.tasks.memory import save_task

        out = Path(resolved.out or Path("runs") / task.name)
        resolved = resolved.model_copy(update={"task": str(save_task(task, out)), "out": str(out)})
    return resolved

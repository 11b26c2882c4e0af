"""The task a run config names: a task file, a SuperNI name or a dataset spec (none for a
general-purpose method that is given no task)."""

from __future__ import annotations

from selfguide.config import RunConfig
from selfguide.errors import SelfGuideError
from selfguide.methods import get_method
from selfguide.tasks.load import load_task
from selfguide.tasks.spec import TaskSpec


def load_run_task(config: RunConfig) -> TaskSpec:
    if not config.task:
        raise SelfGuideError("no task given: pass a task file or a SuperNI task name such as task036")
    from selfguide.tasks.datasets import is_dataset_task, load_dataset_task

    if is_dataset_task(config.task):
        return load_dataset_task(config.task, config.dataset, config.seed)
    return load_task(config.task, config.eval_split)


def load_method_task(config: RunConfig) -> TaskSpec | None:
    """The run's task; a general-purpose method (its rows carry their own instruction) needs none."""
    if not config.task and get_method(config.synth.method).general:
        return None
    return load_run_task(config)

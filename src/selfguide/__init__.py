"""selfguide: SELF-GUIDE self-synthetic finetuning (Zhao et al., 2024) as a toolkit.

    import selfguide
    result = selfguide.run("task.yaml", model="HuggingFaceTB/SmolLM2-135M-Instruct")
    task = selfguide.Task(instruction="Is the review positive or negative?", examples=[("A joy.", "positive"), ("Dull.", "negative")])

`run`, `synthesize`, `train` and `evaluate` are documented in `selfguide.api`; `Task` in
`selfguide.tasks.memory`; `load_config` in `selfguide.config`. Names load on first use, so
`import selfguide` stays fast.
"""

import types

__version__ = "0.1.0"
__all__ = ["Task", "evaluate", "load_config", "run", "synthesize", "train"]

_HOMES = {
    "run": "selfguide.api",
    "synthesize": "selfguide.api",
    "evaluate": "selfguide.api",
    "Task": "selfguide.tasks.memory",
    "load_config": "selfguide.config",
}


class _CallableTrainPackage(types.ModuleType):
    """`selfguide.train` is the training subpackage and the API function at once: calling the
    package calls `selfguide.api.train`, and `selfguide.train.sft` stays a module path."""

    def __call__(self, *args, **kwargs):
        from selfguide.api import train

        return train(*args, **kwargs)


from selfguide import train  # noqa: E402  (the package: its __init__ is empty, no torch)

train.__class__ = _CallableTrainPackage
train.__doc__ = """Finetune the model on the run's synthetic pairs: `selfguide.train(config_or_task, dataset_path=None, **settings)`.
Calls `selfguide.api.train`, whose docstring is the reference."""


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'selfguide' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

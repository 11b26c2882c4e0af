"""Finetuning inside a method: a model trained on pairs the method made, then asked for more data.

Instruction backtranslation trains a backward model and curator models before its data exists.
`finetune` trains with the project's trainer (LoRA by default, `selfguide.train.sft`) into a folder
and skips the work when that folder already holds the same training (`selfguide.train.reuse`), so a
resumed run reuses every finished model; `finetuned_model` serves the result in-process behind the
run's call cache, so its generations are cached and resumed too.
"""

from __future__ import annotations

from pathlib import Path

from selfguide.backends.cache import CachedModel
from selfguide.backends.capabilities import LOCAL_BACKEND, capabilities
from selfguide.backends.factory import cached_model
from selfguide.backends.model_config import ModelConfig
from selfguide.errors import SelfGuideError
from selfguide.io import write_jsonl
from selfguide.methods import MethodContext
from selfguide.tasks.spec import TaskSpec
from selfguide.train.config import TrainConfig
from selfguide.train.reuse import train_once

PAIRS = "train_pairs.jsonl"


def base_weights(ctx: MethodContext, override: str | None) -> str:
    """The weights to finetune: `override`, else the student's own where it loads weights (hf,
    vllm), else the weights the run finetunes (a GGUF's converted folder, a served model's train.model)."""
    if override:
        return override
    if capabilities(ctx.model.info.backend).name_is == "weights":
        return ctx.model.info.model
    if ctx.weights:
        return ctx.weights
    raise SelfGuideError(
        f"this method finetunes models of its own, which needs weights to train: the model runs on {ctx.model.info.backend}; "
        "set the method's base_model (or train.model) to a Hugging Face id or a local model folder"
    )


def finetune(task: TaskSpec, pairs: list[tuple[str, str]], base: str, out: Path, config: TrainConfig, progress: bool = True) -> Path:
    """Train on `pairs` (input, answer) with `task`'s prompt into `out`; returns the adapter (LoRA) or model folder."""
    if not pairs:
        raise SelfGuideError(f"{out}: nothing to finetune on (no pairs)")
    write_jsonl(out / PAIRS, [{"input": source_input, "output": answer} for source_input, answer in pairs])
    return train_once(task, pairs, base, out, config, progress).model_dir


def finetuned_model(base: str, model_dir: Path, like: CachedModel) -> CachedModel:
    """The finetuned model in-process (transformers), sharing `like`'s call cache, budget and progress."""
    adapter = (Path(model_dir) / "adapter_config.json").is_file()
    config = ModelConfig(name=base if adapter else str(model_dir), backend=LOCAL_BACKEND, adapter=str(model_dir) if adapter else None)
    return cached_model(config, like.cache, max_calls=like.max_calls, progress=like.progress, stats=like.stats)

"""Finetuning inside a method: a model trained on pairs the method made, then asked for more data.

Instruction backtranslation trains a backward model and curator models before its data exists.
`finetune` trains with the project's trainer (LoRA by default, `selfguide.train.sft`) into a folder
and skips the work when that folder already holds the same training (same pairs, prompt, base
weights and settings), so a resumed run reuses every finished model; `finetuned_model` serves the
result in-process behind the run's call cache, so its generations are cached and resumed too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from selfguide.backends.cache import CachedModel
from selfguide.backends.factory import cached_model
from selfguide.backends.fingerprint import model_fingerprint
from selfguide.backends.model_config import ModelConfig
from selfguide.errors import SelfGuideError
from selfguide.io import write_json, write_jsonl
from selfguide.tasks.spec import TaskSpec
from selfguide.train.config import TrainConfig

DONE = "done.json"
PAIRS = "train_pairs.jsonl"


def base_weights(model: CachedModel, override: str | None) -> str:
    """The weights to finetune: `override`, else the student's own (an in-process hf or vllm model)."""
    if override:
        return override
    if model.info.backend not in ("hf", "vllm"):
        raise SelfGuideError(
            f"this method finetunes models of its own, which needs weights to train: the model runs on {model.info.backend}; "
            "set the method's base_model to a Hugging Face id or a local model folder"
        )
    return model.info.model


def finetune(task: TaskSpec, pairs: list[tuple[str, str]], base: str, out: Path, config: TrainConfig, progress: bool = True) -> Path:
    """Train on `pairs` (input, answer) with `task`'s prompt into `out`; returns the adapter (LoRA) or model folder."""
    from selfguide.train.sft import train

    if not pairs:
        raise SelfGuideError(f"{out}: nothing to finetune on (no pairs)")
    fingerprint = training_fingerprint(task, pairs, base, config)
    done_path = out / DONE
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    if done.get("fingerprint") == fingerprint and Path(done["model_dir"]).exists():
        return Path(done["model_dir"])
    write_jsonl(out / PAIRS, [{"input": source_input, "output": answer} for source_input, answer in pairs])
    trained = train(task, pairs, base, out, config, progress=progress)
    write_json(done_path, {"fingerprint": fingerprint, "model_dir": str(trained.output_dir), "is_adapter": trained.adapter_dir is not None, "n_train": trained.n_train})
    return trained.output_dir


def finetuned_model(base: str, model_dir: Path, like: CachedModel) -> CachedModel:
    """The finetuned model in-process (transformers), sharing `like`'s call cache, budget and progress."""
    adapter = (Path(model_dir) / "adapter_config.json").is_file()
    config = ModelConfig(name=base if adapter else str(model_dir), backend="hf", adapter=str(model_dir) if adapter else None)
    return cached_model(config, like.cache, max_calls=like.max_calls, progress=like.progress, stats=like.stats)


def training_fingerprint(task: TaskSpec, pairs: list[tuple[str, str]], base: str, config: TrainConfig) -> str:
    payload = {
        "pairs": pairs,
        "instruction": task.instruction,
        "demos": [(e.input, e.output) for e in task.examples],
        "base": base,
        "weights": model_fingerprint(base),
        "train": config.model_dump(mode="json", exclude={"model", "report_to"}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

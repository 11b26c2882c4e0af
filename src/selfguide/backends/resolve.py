"""The models of a run, worked out once: what synthesizes, what gets finetuned, where the finetuned
model runs. Every API function, both benchmarks and the methods that finetune ask `resolve_models`
instead of the backend's name (what a backend can do: `selfguide.backends.capabilities`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from selfguide.backends.capabilities import LOCAL_BACKEND, capabilities, finetuned_config
from selfguide.backends.model_config import ModelConfig
from selfguide.errors import BadInputError, SelfGuideError
from selfguide.model_source import HOW_TO_GET_DEFAULT, installed_default_gguf, resolve_model

if TYPE_CHECKING:
    from selfguide.config import RunConfig
    from selfguide.train.reuse import TrainOutput

# What `from_pretrained` can take as a hub id: "name" or "org/name" (Ollama's "qwen2.5:1.5b" is not one).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass(frozen=True)
class RunModels:
    """`config` with its model and teacher resolved to what loads; `config.model` synthesizes (with
    `config.teacher`, if any) and answers the prompting baseline where `local` is the same model."""

    config: RunConfig
    weights: str | None  # what gets finetuned: train.model, else the model's own weights; None: see `problem`
    problem: BadInputError | None  # why the model names no weights to finetune (a served name that is no hub id)
    local: ModelConfig | None  # where the finetuned model and its prompting baseline run; None: no weights

    @property
    def base(self) -> ModelConfig:
        return self.config.model

    @property
    def server_baseline(self) -> bool:
        """The base model runs no finetuned model (a server): its own prompting score is an extra."""
        return not capabilities(self.base.backend).finetuned

    def trainable(self) -> str:
        """The weights to finetune; fails, naming the setting to give, when there are none."""
        if self.weights is None:
            assert self.problem is not None
            raise self.problem
        return self.weights

    def local_model(self) -> ModelConfig:
        self.trainable()
        assert self.local is not None
        return self.local

    def finetuned(self, trained: TrainOutput) -> ModelConfig:
        """The trained adapter or model folder, run where its prompting baseline ran."""
        if trained.is_adapter:
            return finetuned_config(self.local_model(), trained.model_dir)
        return finetuned_config(self.local_model(), None, trained.model_dir)


def resolve_models(config: RunConfig) -> RunModels:
    config = require_model(config)
    weights, problem = config.train.model or config.model.name, None
    if not (Path(weights).expanduser().is_dir() or (HUB_ID.fullmatch(weights) and ".." not in weights)):
        weights, problem = None, no_weights(config)
    local = None
    if weights is not None:
        local = config.model
        if not capabilities(config.model.backend).finetuned:  # in-process, on the weights that get finetuned
            local = config.model.model_copy(update={"backend": LOCAL_BACKEND, "name": weights, "adapter": None})
    return RunModels(config, weights, problem, local)


def no_weights(config: RunConfig) -> BadInputError:
    if config.train.model:
        return BadInputError("train.model", repr(config.train.model), "a Hugging Face model id or a local model folder")
    return BadInputError(
        "--model",
        repr(config.model.name),
        "a Hugging Face model id or a local model folder to finetune; a served name that is neither needs "
        "train.model (e.g. --set train.model=Qwen/Qwen2.5-1.5B-Instruct)",
    )


def require_model(config: RunConfig) -> RunConfig:
    """`config` with its model resolved to what loads: a .gguf file becomes its converted folder, and
    no model at all the default SmolLM2-135M-Instruct (see `selfguide.model_source`)."""
    model, able = config.model, capabilities(config.model.backend)
    if able.name_is == "served":
        if not model.name:
            raise SelfGuideError(f"no model given: the {model.backend} backend needs --model, the served model name")
        if able.needs_base_url and not model.base_url:
            raise SelfGuideError(f"the {model.backend} backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return require_teacher(config)
    if able.name_is == "gguf":
        # The backend runs the GGUF file itself; training needs its converted transformers folder.
        gguf = model.name or str(installed_default_gguf() or "")
        if not gguf:
            raise SelfGuideError(f"the {model.backend} backend needs --model, a .gguf file: {HOW_TO_GET_DEFAULT}")
        train_model = config.train.model or resolve_model(gguf)
        config = config.model_copy(update={"model": model.model_copy(update={"name": gguf}), "train": config.train.model_copy(update={"model": train_model})})
        return require_teacher(config)
    resolved = resolve_model(model.name)
    if resolved != model.name:
        config = config.model_copy(update={"model": model.model_copy(update={"name": resolved})})
    return require_teacher(config)


def require_teacher(config: RunConfig) -> RunConfig:
    """A teacher in-process loads from a folder: a .gguf file (hf, vllm) becomes its converted folder."""
    teacher = config.teacher
    if teacher is None:
        return config
    able = capabilities(teacher.backend)
    if not teacher.name:
        raise BadInputError("teacher.name", "value", "the teacher model: a hub id, a local folder, a .gguf file or a served name")
    if able.needs_base_url and not teacher.base_url:
        raise BadInputError("teacher.base_url", "value", f"the server's /v1 URL for an {teacher.backend} teacher")
    if able.name_is != "weights" or resolve_model(teacher.name) == teacher.name:
        return config
    return config.model_copy(update={"teacher": teacher.model_copy(update={"name": resolve_model(teacher.name)})})

"""What each backend can do, in one table: the orchestrator asks it instead of naming backends.

    backend   in-process  scores  runs finetuned        base URL  model.name is
    hf        yes         yes     adapter, full model   no        weights (hub id, folder)
    vllm      yes         no      adapter, full model   no        weights (hub id, folder)
    llamacpp  yes         no      adapter (LoRA)        no        a .gguf file
    openai    no          no      nothing               yes       the served name

A backend that runs no finetuned model (a server) has its finetuned model, and the prompting
baseline beside it, run in-process on transformers on the weights that were finetuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selfguide.backends.base import FINETUNED_RULE
from selfguide.backends.model_config import ModelConfig
from selfguide.errors import SelfGuideError
from selfguide.redact import redact_url

Finetuned = Literal["adapter", "full"]  # a LoRA adapter on the base, or a fully finetuned model folder


@dataclass(frozen=True)
class Capabilities:
    backend: str
    in_process: bool  # one call at a time in this process (concurrent calls are merged: backends/batcher.py); else a server
    scores: bool  # log-likelihoods of given answers: needs the logits in this process
    finetuned: frozenset[Finetuned]  # what finetuned weights it runs beside its base model; empty: none
    needs_base_url: bool
    name_is: Literal["weights", "gguf", "served"]  # what model.name means: loadable weights, a GGUF file, a served name
    stack: str  # the serving stack, as the report and stacks.json name it


CAPABILITIES: dict[str, Capabilities] = {
    c.backend: c
    for c in (
        Capabilities("hf", True, True, frozenset({"adapter", "full"}), False, "weights", "transformers in-process"),
        Capabilities("vllm", True, False, frozenset({"adapter", "full"}), False, "weights", "vLLM in-process"),
        Capabilities("llamacpp", True, False, frozenset({"adapter"}), False, "gguf", "llama.cpp in-process"),
        Capabilities("openai", False, False, frozenset(), True, "served", "server"),
    )
}

# Where a backend that runs no finetuned model has it run: in-process, on the finetuned weights.
LOCAL_BACKEND = "hf"



# A backend outside the table (a test's scripted model) is taken as the least able: a server.
UNKNOWN = Capabilities("other", False, False, frozenset(), False, "served", "other")


def capabilities(backend: str) -> Capabilities:
    return CAPABILITIES.get(backend, UNKNOWN)


def stack_name(model: ModelConfig) -> str:
    """The serving stack that produced a number: a server by its (redacted) URL and model name."""
    stack = capabilities(model.backend).stack
    return f"{stack} {redact_url(model.base_url or '')} ({model.name})" if capabilities(model.backend).needs_base_url else stack


def finetuned_config(local: ModelConfig, adapter: str | Path | None = None, model_dir: str | Path | None = None) -> ModelConfig:
    """The finetuned model on `local`'s backend, where its prompting baseline ran (never a mix):
    a LoRA `adapter` on `local`'s weights, or the full model in `model_dir`. A kind the backend
    cannot run beside its baseline is refused with the rule."""
    if not adapter and not model_dir:
        return local
    able = capabilities(local.backend).finetuned
    if model_dir and "full" not in able:
        raise SelfGuideError(
            f"{model_dir}: a fully finetuned model cannot run on the {local.backend} backend beside its baseline; "
            f"{FINETUNED_RULE} (or finetune a LoRA adapter: train.method=lora)"
        )
    if adapter and "adapter" not in able:
        raise SelfGuideError(f"{adapter}: a LoRA adapter cannot run on the {local.backend} backend; {FINETUNED_RULE}")
    if adapter and capabilities(local.backend).name_is == "gguf":
        from selfguide.backends.llamacpp import check_finetuned_on_llamacpp

        check_finetuned_on_llamacpp(adapter, local.name)  # the LoRA converts onto this GGUF: fail now, not mid-eval
    return local.model_copy(update={"name": str(model_dir or local.name), "adapter": str(adapter) if adapter else None})

"""ModelConfig and the one place that turns it into a backend (imported only when chosen)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfguide.backends.base import Backend, BackendInfo
from selfguide.backends.cache import CachedModel, CallCache, CallStats
from selfguide.backends.fingerprint import fingerprint
from selfguide.redact import redact_url

class ModelConfig(BaseModel):
    """Which model answers, and through what."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="Hugging Face hub id or local folder (hf, vllm); the served model name (openai); a .gguf file or a folder holding exactly one (llamacpp).")
    backend: Literal["hf", "openai", "vllm", "llamacpp"] = Field(
        "hf", description="hf: transformers in-process; openai: any OpenAI-compatible server; vllm: in-process vLLM (extra); llamacpp: GGUF models in-process through llama-cpp-python (extra)."
    )
    adapter: str | None = Field(None, description="A PEFT adapter folder applied on top of the model (llamacpp: a PEFT LoRA folder, converted to a GGUF LoRA, or a GGUF LoRA file).")
    dtype: str = Field("auto", description="auto: bf16/fp16 on GPU, fp32 on CPU; or float32, bfloat16, float16.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N (hf).")
    batch_size: int | None = Field(None, ge=1, description="Rows per forward batch (hf); unset: sized by max_batch_tokens.")
    max_batch_tokens: int = Field(16384, ge=1, description="Upper bound of rows x (prompt + new tokens) per batch (hf).")
    batch_invariant: bool = Field(
        False,
        description="Never batch two requests together (hf), so results cannot depend on batch layout. In float32 they "
        "already don't; in bf16/fp16 batched kernels add float noise, and a resumed run can differ in some samples "
        "unless this is on (at a large cost in throughput).",
    )
    base_url: str | None = Field(None, description="The server's /v1 URL (openai), e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (openai). The key is never written anywhere.")
    auth: Literal["bearer", "basic"] = Field(
        "bearer",
        description="How to authenticate to the server (openai): bearer sends the API key from api_key_env; basic sends "
        "the user:password given in base_url (http://user:pass@host/v1) as HTTP Basic auth. Credentials in base_url are "
        "redacted from every file and message.",
    )
    health_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the server's /v1/models at start before giving up (openai).")
    concurrency: int = Field(16, ge=1, description="Requests in flight at once (openai).")
    max_retries: int = Field(6, ge=0, description="Retries on 429/5xx/timeouts/resets, with exponential backoff (openai).")
    timeout: float = Field(120.0, gt=0, description="Seconds per request (openai).")
    retry_backoff: float = Field(1.0, ge=0, description="Seconds before the first retry; doubles each retry, up to 60 (openai).")
    send_top_k: bool = Field(True, description="Send top_k (vLLM/SGLang accept it; hosted OpenAI does not).")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="Share of GPU memory vLLM may take (vllm).")
    n_ctx: int = Field(4096, ge=16, description="Context window in tokens, prompt plus answer; sizes llama.cpp's KV cache (llamacpp).")
    n_threads: int | None = Field(None, ge=1, description="CPU threads llama.cpp computes with; unset: as many as torch uses (llamacpp). On a CPU shared with other jobs, 1 is often faster.")
    n_batch: int = Field(512, ge=1, description="Prompt tokens llama.cpp evaluates per forward pass (llamacpp).")


def model_fingerprint(name: str, adapter: str | None = None) -> str:
    """Changes when the weights (or the adapter) change; see `backends/fingerprint.py`."""
    return fingerprint(name, adapter)[0]


def backend_info(config: ModelConfig) -> BackendInfo:
    if config.backend == "openai":
        from selfguide.backends.openai_backend import served_model_entry

        # Asking the server first is the health check (fail fast) and its answer is the served
        # model's identity: a different model behind the same URL and name gets other cache keys.
        entry = served_model_entry(config.name, base_url=config.base_url or "", api_key_env=config.api_key_env, auth=config.auth, timeout=config.health_timeout)
        url = redact_url(config.base_url or "")
        identity = hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16] if entry else ""
        return BackendInfo("openai", config.name, f"{url}|{config.name}|{identity}", {"base_url": url, "served_model": entry})
    if config.backend == "llamacpp":
        from selfguide.backends.llamacpp import resolve_gguf

        # The GGUF's own tensor types are its precision; dtype and device do not apply.
        gguf = str(resolve_gguf(config.name))
        return BackendInfo("llamacpp", config.name, model_fingerprint(gguf, config.adapter), {"adapter": config.adapter, "gguf": gguf})
    # Precision changes the samples, so it is part of the model's identity in the cache. A local
    # folder is named by its absolute path, so ./tiny and /abs/tiny are the same model.
    precision = f"{resolved_dtype(config.dtype, config.device)}|{config.device}"
    name = str(Path(config.name).expanduser().resolve()) if Path(config.name).expanduser().is_dir() else config.name
    return BackendInfo(config.backend, name, f"{model_fingerprint(config.name, config.adapter)}|{precision}", {"adapter": config.adapter})


def resolved_dtype(dtype: str, device: str = "auto") -> str:
    """What "auto" means on this machine: bf16 or fp16 on a GPU, fp32 on a CPU (as the backends load it)."""
    if dtype != "auto":
        return dtype
    import torch

    if device.startswith("cpu") or not torch.cuda.is_available():
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def make_backend(config: ModelConfig) -> Backend:
    if config.backend == "hf":
        from selfguide.backends.hf import HFBackend

        return HFBackend(
            config.name,
            adapter=config.adapter,
            dtype=config.dtype,
            device=config.device,
            batch_size=config.batch_size,
            max_batch_tokens=config.max_batch_tokens,
            isolate_requests=config.batch_invariant,
        )
    if config.backend == "openai":
        from selfguide.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(
            config.name,
            base_url=config.base_url or "",
            api_key_env=config.api_key_env,
            concurrency=config.concurrency,
            max_retries=config.max_retries,
            timeout=config.timeout,
            send_top_k=config.send_top_k,
            backoff_base=config.retry_backoff,
            auth=config.auth,
        )
    if config.backend == "llamacpp":
        from selfguide.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config.name, adapter=config.adapter, n_ctx=config.n_ctx, n_threads=config.n_threads, n_batch=config.n_batch)
    from selfguide.backends.vllm_backend import VLLMBackend

    return VLLMBackend(config.name, adapter=config.adapter, dtype=config.dtype, gpu_memory_utilization=config.gpu_memory_utilization)


def cached_model(
    config: ModelConfig, cache: CallCache, *, max_calls: int | None = None, progress: bool = True, stats: CallStats | None = None
) -> CachedModel:
    """The model behind the call cache; the backend itself loads on the first uncached call."""
    info = backend_info(config)
    if info.backend == "openai":
        cache.note_identity(f"{info.extra['base_url']}|{info.model}", info.extra["served_model"])
    return CachedModel(info, lambda: make_backend(config), cache, max_calls=max_calls, progress=progress, stats=stats)

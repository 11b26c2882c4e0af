"""The one place that turns a ModelConfig into a backend (each backend imported only when chosen)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from selfguide.backends.base import Backend, BackendInfo
from selfguide.backends.cache import CachedModel, CallCache, CallStats
from selfguide.backends.fingerprint import model_fingerprint
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.precision import resolved_dtype
from selfguide.redact import redact_url


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


def make_backend(config: ModelConfig) -> Backend:
    if config.executor == "ray" and config.adapter is None:
        from selfguide.scale.ray_synth import RayDataBackend

        return RayDataBackend(config, backend_info(config))
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

    dtype = "auto" if config.dtype == "native" else config.dtype  # vLLM runs on GPUs, where the two agree
    return VLLMBackend(config.name, adapter=config.adapter, dtype=dtype, gpu_memory_utilization=config.gpu_memory_utilization)


def cached_model(
    config: ModelConfig, cache: CallCache, *, max_calls: int | None = None, progress: bool = True, stats: CallStats | None = None
) -> CachedModel:
    """The model behind the call cache; the backend itself loads on the first uncached call, once
    for all the CachedModels of the same model and settings that are open."""
    info = backend_info(config)
    if info.backend == "openai":
        cache.note_identity(f"{info.extra['base_url']}|{info.model}", info.extra["served_model"])
    # The weights' identity (an adapter retrained in the same folder is another model) and every setting the backend is built with.
    share = json.dumps({"info": [info.backend, info.model, info.fingerprint, info.extra], "config": config.model_dump()}, sort_keys=True, default=str)
    return CachedModel(info, lambda: make_backend(config), cache, max_calls=max_calls, progress=progress, stats=stats, share=share)

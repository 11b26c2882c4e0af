"""ModelConfig: which model answers, and through which backend."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selfguide.backends.precision import dtype_name


class ModelConfig(BaseModel):
    """Which model answers, and through what."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="Hugging Face hub id or local folder (hf, vllm); the served model name (openai); a .gguf file or a folder holding exactly one (llamacpp).")
    backend: Literal["hf", "openai", "vllm", "llamacpp"] = Field(
        "hf", description="hf: transformers in-process; openai: any OpenAI-compatible server; vllm: in-process vLLM (extra); llamacpp: GGUF models in-process through llama-cpp-python (extra)."
    )
    adapter: str | None = Field(None, description="A PEFT adapter folder applied on top of the model (llamacpp: a PEFT LoRA folder, converted to a GGUF LoRA, or a GGUF LoRA file).")
    dtype: str = Field(
        "auto",
        description="auto: bf16/fp16 on GPU, fp32 on CPU; native: the same, but bf16 on a CPU that computes bf16 in "
        "hardware (Intel AMX), ~2x the speed of fp32 there; or float32, bfloat16, float16.",
    )
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
    executor: Literal["local", "ray"] = Field(
        "local",
        description="local: the backend runs here; ray: uncached calls go out as a Ray Dataset through Ray Data LLM (openai: "
        "HTTP requests to base_url; vllm: a pool of vLLM engines), same cache keys (pip install 'selfguide[ray]'; docs/scale-out.md). "
        "A finetuned model (an adapter) still runs locally.",
    )
    replicas: int = Field(1, ge=1, description="executor ray: vLLM engines (vllm), or HTTP requests in flight (openai).")
    tensor_parallel_size: int = Field(1, ge=1, description="executor ray, vllm: GPUs per engine.")
    ray_address: str | None = Field(None, description="executor ray: the Ray cluster to join (default: $RAY_ADDRESS, else a local Ray).")
    n_ctx: int = Field(4096, ge=16, description="Context window in tokens, prompt plus answer; sizes llama.cpp's KV cache (llamacpp).")
    n_threads: int | None = Field(None, ge=1, description="CPU threads llama.cpp computes with; unset: as many as torch uses (llamacpp). On a CPU shared with other jobs, 1 is often faster.")
    n_batch: int = Field(512, ge=1, description="Prompt tokens llama.cpp evaluates per forward pass (llamacpp).")

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in ("auto", "native") and dtype_name(value) is None:
            raise ValueError("auto, native, float32, bfloat16 or float16")
        return value

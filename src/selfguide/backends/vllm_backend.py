"""In-process vLLM (the optional `vllm` extra): the fastest way to sample on a GPU.

Prompts are the exact token ids training uses (`selfguide.backends.chat.encode_prompt` with vLLM's own
tokenizer), so annotation, training and evaluation see the same text. Every request carries its
own seed in vLLM's SamplingParams, so its samples do not depend on the rest of the batch. A PEFT
adapter folder is served through vLLM's LoRA support (`enable_lora` + `LoRARequest`).

vLLM's `LLM.generate` returns only when its whole batch is done, so requests go in chunks of
`chunk_size` and each chunk's results are yielded as soon as it finishes.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from selfguide.backends.base import BackendInfo, Completion, Request, SamplingParams, ScoreRequest, label_scoring_unsupported
from selfguide.backends.chat import encode_prompt
from selfguide.errors import MissingDependencyError, SelfGuideError

INSTALL_HINT = "pip install 'selfguide[vllm]'"
# Ranks vLLM's LoRA kernels are built for; max_lora_rank must be one of them.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(adapter: str | Path) -> int:
    """The adapter's rank rounded up to a rank vLLM supports (its default max of 16 is often too small)."""
    config_path = Path(adapter) / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise SelfGuideError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)") from None
    ranks = [int(config.get("r") or 8)]
    ranks += [int(r) for r in (config.get("rank_pattern") or {}).values()]
    rank = max(ranks)
    for supported in VLLM_LORA_RANKS:
        if supported >= rank:
            return supported
    raise SelfGuideError(f"{adapter}: LoRA rank {rank} is larger than vLLM supports ({VLLM_LORA_RANKS[-1]})")


def to_vllm_params(vllm_module, params: SamplingParams):
    stop = list(params.stop) or None
    return vllm_module.SamplingParams(
        n=max(params.n, 1),
        temperature=params.temperature,
        top_k=params.top_k if params.top_k > 0 else -1,  # -1: off (accepted by every vLLM >= 0.10)
        top_p=params.top_p,
        max_tokens=params.max_new_tokens,
        stop=stop,
        include_stop_str_in_output=False,
        seed=params.seed,
    )


class VLLMBackend:
    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        seed: int = 0,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        chunk_size: int = 1024,
        trust_remote_code: bool = False,
        **engine_kwargs,
    ):
        try:
            import vllm
        except ImportError as e:
            raise MissingDependencyError(
                f"the vllm backend needs vLLM, which is not installed ({e}): {INSTALL_HINT} (Linux with a CUDA GPU), "
                "or choose the hf backend, or serve the model with any OpenAI-compatible server and use the openai backend"
            ) from None

        from selfguide.backends.fingerprint import model_fingerprint

        self._vllm = vllm
        self.model = model
        self.adapter = str(adapter) if adapter else None
        self.chunk_size = max(1, chunk_size)
        self.info = BackendInfo("vllm", model, model_fingerprint(model, self.adapter), {"adapter": self.adapter})

        kwargs = dict(
            model=model,
            seed=seed,
            dtype=dtype,
            enable_prefix_caching=True,  # every prompt of a task shares the instruction and demos
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self._lora_request = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(self.adapter))
            self._lora_request = LoRARequest("selfguide-adapter", 1, str(Path(self.adapter).resolve()))
        kwargs.update(engine_kwargs)
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, adapter={self.adapter!r})"

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Completion]]]:
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            prompts = [{"prompt_token_ids": encode_prompt(self.tokenizer, list(r.messages))} for r in chunk]
            params = [to_vllm_params(self._vllm, r.params) for r in chunk]
            outputs = self.llm.generate(prompts, sampling_params=params, lora_request=self._lora_request, use_tqdm=False)
            for k, (request, prompt, output) in enumerate(zip(chunk, prompts, outputs)):
                yield start + k, self._completions(request.params, len(prompt["prompt_token_ids"]), output)

    @staticmethod
    def _completions(params: SamplingParams, prompt_tokens: int, output) -> list[Completion]:
        completions = []
        for sample in sorted(output.outputs, key=lambda o: o.index):
            text = sample.text
            cut = False
            for stop in params.stop:  # vLLM already drops the stop string; be safe about the rest
                pos = text.find(stop) if stop else -1
                if pos >= 0:
                    text, cut = text[:pos], True
            finish = "length" if sample.finish_reason == "length" and not cut else "stop"
            completions.append(Completion(text=text, completion_tokens=len(sample.token_ids), prompt_tokens=prompt_tokens, finish_reason=finish))
        return completions

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[tuple[int, list]]:
        raise label_scoring_unsupported("vllm")

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:
            pass
        del llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass

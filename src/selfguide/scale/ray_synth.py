"""`model.executor: ray`: a stage's uncached calls go out as a Ray Dataset, through Ray Data LLM.

One row per sample: a request's n samples are n rows, sample j with the seed the openai backend
gives it when it asks one sample a request (`sample_seed`), because Ray's vLLM stage returns only
the first sample of a request. Rows carry the request's cache key, its messages and every sampling
setting. Two transports:

- backend openai: `HttpRequestProcessorConfig` posts each row to the server's /chat/completions,
  `model.replicas` requests at once (a fleet behind one URL, or `vllm serve --data-parallel-size`);
- backend vllm: `vLLMEngineProcessorConfig`, a fixed pool of `model.replicas` engines
  (`concurrency=(R, R)`), each on `model.tensor_parallel_size` GPUs, and
  `should_continue_on_error=True` so a failed request is an error row, not a failed job.

Ray is only the transport: the model's cache identity is the backend's (backends/factory.py
`backend_info`), so calls cached on a laptop are found on a cluster and the other way round. The
results stream back to the CachedModel, which stores each request the moment its n samples are
in. Error rows fail their calls as the other backends do (a SelfGuideError naming them), after
every finished request has been handed over and cached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

from selfguide.backends.base import BackendInfo, Completion, Request, ScoreRequest, label_scoring_unsupported
from selfguide.backends.cache import request_key
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.openai_backend import MAX_STOP_STRINGS, auth_headers, sample_seed, split_credentials, truncate_at_stop
from selfguide.errors import SelfGuideError
from selfguide.redact import redact_url

ERROR = "__inference_error__"  # Ray Data LLM's column for a row that failed


def sample_rows(info: BackendInfo, requests: Sequence[Request]) -> list[dict]:
    """One row per sample: the request's index and key, sample j, its seed and the sampling settings."""
    rows = []
    for i, request in enumerate(requests):
        params = request.params
        for j in range(max(params.n, 1)):
            rows.append({
                "i": i, "j": j, "key": request_key(info, request), "messages": json.dumps(list(request.messages)),
                "seed": sample_seed(params.seed, j), "temperature": params.temperature, "top_p": params.top_p,
                "top_k": params.top_k, "max_tokens": params.max_new_tokens, "stop": json.dumps(list(params.stop[:MAX_STOP_STRINGS])),
            })  # fmt: skip
    return rows


class RayDataBackend:
    """A Backend (backends/base.py) whose calls run as Ray Data LLM jobs."""

    def __init__(self, config: ModelConfig, info: BackendInfo):
        from selfguide.scale.ray_executor import connect

        if config.backend not in ("openai", "vllm"):
            raise SelfGuideError(f"model.executor ray runs the openai and vllm backends; got {config.backend}: set model.executor local")
        self.config, self.info = config, info
        self.ray = connect(config.ray_address)

    # ---- one transport each ----------------------------------------------------------------

    def http_processor(self):
        """Rows to an OpenAI-compatible /chat/completions, `replicas` requests at once."""
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        config = self.config
        url, credentials = split_credentials(config.base_url or "")
        headers = auth_headers(redact_url(config.base_url or ""), config.auth, credentials, config.api_key_env)
        key = os.environ.get(config.api_key_env)
        if key and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {key}"
        model, send_top_k = config.name, config.send_top_k

        def payload(row: dict) -> dict:
            body = {"model": model, "messages": json.loads(row["messages"]), "temperature": row["temperature"], "top_p": row["top_p"], "max_tokens": row["max_tokens"], "seed": row["seed"]}
            stop = json.loads(row["stop"])
            if stop:
                body["stop"] = stop
            if send_top_k:
                body["top_k"] = row["top_k"] if row["top_k"] > 0 else -1
            return dict(row, payload=body)

        def answer(row: dict) -> dict:
            reply = row["http_response"]
            choices = reply.get("choices") if isinstance(reply, dict) else None
            if not choices:
                message = reply.get("error", reply) if isinstance(reply, dict) else reply
                return sample_result(row, error=f"{redact_url(url)}: {str(message)[:300]}")
            usage = reply.get("usage") or {}
            choice = choices[0]
            text = ((choice.get("message") or {}).get("content")) or ""
            return sample_result(row, text=text, finish=choice.get("finish_reason") or "stop", prompt_tokens=int(usage.get("prompt_tokens") or 0), completion_tokens=int(usage.get("completion_tokens") or 0))

        processor_config = HttpRequestProcessorConfig(
            url=url.rstrip("/") + "/chat/completions", headers=headers, concurrency=config.replicas, max_retries=config.max_retries,
            base_retry_wait_time_in_s=config.retry_backoff, batch_size=16,
        )  # fmt: skip
        return build_processor(processor_config, preprocess=payload, postprocess=answer)

    def vllm_processor(self):
        """Rows through a fixed pool of `replicas` vLLM engines, each `tensor_parallel_size` GPUs wide."""
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        config = self.config
        replicas = config.replicas
        processor_config = vLLMEngineProcessorConfig(
            model_source=config.name,
            engine_kwargs={
                "tensor_parallel_size": config.tensor_parallel_size,
                "dtype": "auto" if config.dtype == "native" else config.dtype,
                "gpu_memory_utilization": config.gpu_memory_utilization,
            },
            concurrency=(replicas, replicas),
            should_continue_on_error=True,
            batch_size=64,
        )

        def prompt(row: dict) -> dict:
            sampling = {"temperature": row["temperature"], "top_p": row["top_p"], "top_k": row["top_k"] if row["top_k"] > 0 else -1, "max_tokens": row["max_tokens"], "seed": row["seed"], "n": 1}
            stop = json.loads(row["stop"])
            if stop:
                sampling["stop"] = stop
            return dict(row, messages=json.loads(row["messages"]), sampling_params=sampling)

        def answer(row: dict) -> dict:
            done = row["num_generated_tokens"] >= row["max_tokens"]
            return sample_result(row, text=row["generated_text"], finish="length" if done else "stop", prompt_tokens=int(row.get("num_input_tokens") or 0), completion_tokens=int(row["num_generated_tokens"]))

        return build_processor(processor_config, preprocess=prompt, postprocess=answer)

    # ---- the Backend protocol ---------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (index, its n completions) as each request's last sample arrives; then fail the
        requests with error rows, if any, in one SelfGuideError."""
        if not requests:
            return
        processor = self.http_processor() if self.config.backend == "openai" else self.vllm_processor()
        dataset = processor(self.ray.data.from_items(sample_rows(self.info, requests)))
        samples: dict[int, dict[int, Completion]] = {}
        errors: dict[int, str] = {}
        for row in dataset.iter_rows():
            i, j = int(row["i"]), int(row["j"])
            error = row.get("error") or row.get(ERROR) or ""
            if error:
                errors.setdefault(i, str(error))
                continue
            params = requests[i].params
            text, cut = truncate_at_stop(row["text"], params.stop)
            finish = "length" if row["finish"] == "length" and not cut else "stop"
            samples.setdefault(i, {})[j] = Completion(text=text, completion_tokens=int(row["completion_tokens"]), prompt_tokens=int(row["prompt_tokens"]), finish_reason=finish)
            if len(samples[i]) == max(params.n, 1) and i not in errors:
                yield i, [samples[i][k] for k in range(len(samples[i]))]
        if errors:
            first = next(iter(errors.values()))
            raise SelfGuideError(f"{self.info.model}: {len(errors)} of {len(requests)} requests failed on Ray (first: {first}); finished ones are cached: rerun to retry the rest")

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[tuple[int, list]]:
        raise label_scoring_unsupported(f"{self.config.backend} (model.executor ray)")

    def close(self) -> None:
        pass


def sample_result(row: dict, *, text: str = "", finish: str = "stop", prompt_tokens: int = 0, completion_tokens: int = 0, error: str = "") -> dict:
    """What a processor hands back per sample: where it belongs and what it says."""
    return {"i": row["i"], "j": row["j"], "key": row["key"], "text": text, "finish": finish, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "error": error}

"""In-process generation with transformers (optionally with a PEFT adapter on top).

Design, in short:

* Prompts are token ids from `selfguide.backends.chat.encode_prompt`, the same encoding training uses.
* Sampling is per row and reproducible: row (request i, sample j) has a key, a hash of (request
  seed, j). A logits processor applies temperature, top-k and top-p, then picks one token by
  Gumbel-max: argmax(logits + noise), where the noise of each (row, step, token id) is a pure
  integer hash of the three (counter-based, vectorised, the same on every device). It returns
  logits that are -inf everywhere but the chosen token, so `generate(do_sample=False)` picks it.
  No generator state exists at all, so nothing touches the global torch RNG, and a row's tokens
  do not depend on which other rows share its batch. Batched kernels can still move logits by
  float noise; with Gumbel-max that flips a draw only when the two best perturbed scores are
  within that noise of each other, independent of vocabulary size (inverse-CDF sampling over
  the vocabulary would be ~vocabulary-size times more fragile).
* The `n` samples of one prompt share one prefill: the batch's distinct prompts (all but the last
  token) go through one forward pass, the KV cache is expanded to the rows by index, and
  `generate` continues from it with the full ids, so it only runs the last prompt token per row.
* Prompts that share a long token prefix (every annotation or evaluation prompt of one task holds
  the instruction and all demos before its input) share its KV cache too: `shared_prefixes` picks,
  over the call's distinct prompts, the prefixes that save the most prefill; each is computed once
  (alone, no padding) and copied into every batch that needs it. A batch lays each distinct
  prompt out as [pad, shared prefix, pad, rest of the prompt] with the prefixes right-aligned in
  the first columns and the rests in the last ones; position ids follow the attention mask, so
  the padding in the middle changes nothing but float rounding. Only the rests are prefilled.
* Rows carry their own sampling settings (temperature, top-k, top-p, token limit, stop strings),
  so requests with different settings share batches: concurrent callers merged into one call
  (backends/batcher.py) run side by side. Rows are sorted by shared prefix then longest prompt
  first and decoded with continuous batching: a row leaves the batch when it ends, and waiting
  rows are prefilled and join it as soon as a quarter of it is free, within `batch_size` rows
  and `max_batch_tokens` ~ rows * (width + most new tokens). Sampled answers are mostly far
  shorter than their longest, and a step of a few rows costs nearly what a full one does. The KV
  cache has room for the steps to come, so a step writes in place (backends/decode_cache.py).
  A request's n samples share one row while their tokens agree, and fork when they part: at a
  low temperature most never do (`share_samples`). Budgets still count every sample as a row,
  as each may fork into one. Each request is yielded as soon as its last sample ends.
  (transformers' `generate`, used with
  `drop_finished` off, takes one setting per batch: there requests are grouped by settings first.)
* `score` gives the log-probability of fixed candidate answers: one prefill per distinct prompt
  (with the same prefix reuse), then one forward over every candidate as a row of its own.
"""

from __future__ import annotations

import gc
import inspect
import hashlib
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

from selfguide.backends.base import BackendInfo, CandidateScore, Completion, Request, SamplingParams, ScoreRequest
from selfguide.backends.chat import encode_prompt, render_answer, stop_strings_for
from selfguide.backends.fingerprint import fingerprint
from selfguide.errors import SelfGuideError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Helpers that need no torch


def row_seed(seed: int, sample_index: int) -> int:
    """The seed of sample `sample_index` of a request with `seed`: stable across runs and platforms."""
    digest = hashlib.sha256(f"selfguide-hf-row:{int(seed)}:{int(sample_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or name.endswith(("/", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or name in (".", "..")
    )


@dataclass(frozen=True)
class _Settings:
    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    stop: tuple[str, ...]

    @classmethod
    def of(cls, params: SamplingParams) -> _Settings:
        stop = tuple(s for s in params.stop if s)
        if params.temperature <= 0:  # greedy: top-k / top-p do not matter
            return cls(0.0, 0, 1.0, int(params.max_new_tokens), stop)
        return cls(float(params.temperature), int(params.top_k), float(params.top_p), int(params.max_new_tokens), stop)


@dataclass(frozen=True)
class _Row:
    request: int  # index into the caller's requests
    sample: int  # j, 0..n-1 (the candidate's index when scoring)
    seed: int
    prompt: tuple[int, ...]
    prefix: int = 0  # leading prompt tokens taken from a shared prefix cache
    alone: bool = False  # decoded in a batch row of its own, never shared with the request's other samples


@dataclass
class _Decoding:
    """A batch being decoded, one entry (or tensor row) per batch row. A batch row stands for one
    or more samples of one request (`rows[k]`, see `share_samples`) whose tokens agree so far.
    `ids` and `mask` are the rows' prompt layouts and generated tokens, left-padded to one width;
    `cache` holds the KV of every column but the last, which the next step feeds. Rows that ended
    stay (`done`) until the batch drops them."""

    rows: list[list[_Row]]
    ids: object  # int64 [rows, width]
    mask: object  # int64 [rows, width]
    cache: object | None
    steps: object  # int64 [rows]: tokens generated so far
    limits: object  # int64 [rows]: max_new_tokens
    sampling: list[tuple[float, int, float]]
    stops: list[tuple[str, ...]]
    done: object  # bool [rows]
    generated: list[list[int]]
    _members: dict | None = None

    def live(self) -> list[int]:
        return (~self.done).nonzero().flatten().tolist()

    def remaining(self) -> int:
        """The most steps a live row may still take."""
        return int((self.limits - self.steps).masked_fill(self.done, 0).max())

    def stop_members(self) -> dict[tuple[str, ...], object]:
        """Each distinct non-empty stop tuple, with the batch rows it covers (None: all)."""
        if self._members is None:
            covered: dict[tuple[str, ...], list[int]] = {}
            for k, stops in enumerate(self.stops):
                if stops:
                    covered.setdefault(stops, []).append(k)
            every = len(self.rows)
            self._members = {
                s: None if len(ks) == every else self.ids.new_tensor(ks) for s, ks in covered.items()
            }
        return self._members

    def select(self, keep: list[int], index) -> None:
        """Only rows `keep` (`index`, the same as a tensor) go on; the cache is the caller's."""
        self.rows = [self.rows[k] for k in keep]
        self.sampling = [self.sampling[k] for k in keep]
        self.stops = [self.stops[k] for k in keep]
        self.generated = [self.generated[k] for k in keep]
        for name in ("ids", "mask", "steps", "limits", "done"):
            setattr(self, name, getattr(self, name)[index])
        self._members = None

    @staticmethod
    def stack(torch, parts: list[_Decoding], pad_id: int) -> _Decoding:
        """`parts`' rows in order, the ids and mask right-aligned to the widest (the caches are
        stacked by the caller)."""
        width = max(part.ids.shape[1] for part in parts)

        def left_padded(name, value):
            return torch.cat(
                [torch.nn.functional.pad(getattr(p, name), (width - p.ids.shape[1], 0), value=value) for p in parts]
            )

        return _Decoding(
            rows=[row for part in parts for row in part.rows],
            ids=left_padded("ids", pad_id),
            mask=left_padded("mask", 0),
            cache=None,
            steps=torch.cat([part.steps for part in parts]),
            limits=torch.cat([part.limits for part in parts]),
            sampling=[s for part in parts for s in part.sampling],
            stops=[s for part in parts for s in part.stops],
            done=torch.cat([part.done for part in parts]),
            generated=[g for part in parts for g in part.generated],
        )


def shared_prefixes(prompts: Iterable[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
    """For each distinct prompt, how many of its leading tokens come from a prefix KV cache it
    shares with other prompts (0: none).

    Sorted by token ids, prompts that share a prefix are neighbours, and a run of k of them whose
    common prefix is p tokens long saves (k - 1) * p tokens of prefill. The runs are chosen to
    save the most: a run is split at its weakest link (the shortest common prefix of two
    neighbours) whenever its two halves save more apart. A prefix always leaves at least one
    token of each prompt, whose logits start generation."""
    ordered = sorted(set(prompts))
    lengths = dict.fromkeys(ordered, 0)
    links = [min(_common_length(a, b), len(a) - 1, len(b) - 1) for a, b in zip(ordered, ordered[1:])]
    if not links:
        return lengths
    best: dict[tuple[int, int], tuple[int, list[tuple[int, int, int]]]] = {}  # range -> (saving, runs)
    stack = [(0, len(ordered) - 1, False)]
    while stack:  # post-order over the ranges, without recursion (a chain of prompts can be long)
        first, last, children_done = stack.pop()
        if first == last:
            best[first, last] = (0, [])
            continue
        cut = min(range(first, last), key=links.__getitem__)
        if not children_done:
            stack += [(first, last, True), (first, cut, False), (cut + 1, last, False)]
            continue
        left, right = best.pop((first, cut)), best.pop((cut + 1, last))
        whole = (last - first) * links[cut]
        if whole > 0 and whole >= left[0] + right[0]:
            best[first, last] = (whole, [(first, last, links[cut])])
        else:
            best[first, last] = (left[0] + right[0], left[1] + right[1])
    for first, last, length in best[0, len(ordered) - 1][1]:
        for k in range(first, last + 1):
            lengths[ordered[k]] = length
    return lengths


def _common_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return min(len(a), len(b))


def _validate(params: SamplingParams, index: int) -> None:
    problems = []
    if params.temperature < 0:
        problems.append(f"temperature must be >= 0, got {params.temperature}")
    if params.top_k < 0:
        problems.append(f"top_k must be >= 0, got {params.top_k}")
    if not 0 < params.top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {params.top_p}")
    if params.max_new_tokens < 0:
        problems.append(f"max_new_tokens must be >= 0, got {params.max_new_tokens}")
    if params.n < 0:
        problems.append(f"n must be >= 0, got {params.n}")
    if problems:
        raise SelfGuideError(f"request {index}: " + "; ".join(problems))


# ----------------------------------------------------------------------------------------------


MASK32 = 0xFFFFFFFF
HASH_MULT = 0x45D9F3B  # < 2**27, so a 32-bit value times it stays exact in int64
SAMPLER_ROW_CHUNK = 1 << 23  # at most this many (row, token) cells of noise at a time


def _mix32(x):
    """A 32-bit integer hash on int64 tensors (or ints) that hold values below 2**32."""
    x = x ^ (x >> 16)
    x = (x * HASH_MULT) & MASK32
    x = x ^ (x >> 16)
    x = (x * HASH_MULT) & MASK32
    return x ^ (x >> 16)


def gumbel_noise(torch, row_keys, step, tokens, dtype):
    """Gumbel(0, 1) noise for every (row, token) at one generation step, a pure function of
    (row key, step, token id): no generator state, the same on every device and batch layout.

    `row_keys` is an int64 tensor [rows, 2] of two 32-bit halves of each row's seed; `step` an int
    for every row or an int64 tensor [rows, 1]; `tokens` the vocabulary size (noise for every
    token id) or an int64 tensor [rows, k] of token ids."""
    if isinstance(tokens, int):
        tokens = torch.arange(tokens, device=row_keys.device, dtype=torch.int64)[None, :]
    step_key = _mix32((step * 0x9E3779B1 + 0x7F4A7C15) & MASK32)
    h = _mix32((tokens + row_keys[:, :1]) & MASK32)
    h = _mix32(h ^ row_keys[:, 1:2])
    h = _mix32(h ^ step_key)
    u = (h.to(dtype) + 0.5) / 4294967296.0  # strictly inside (0, 1)
    return -torch.log(-torch.log(u))


# The noise above lies in [-log(-log(u_min)), -log(-log(u_max))] (about -3.1 to 22.9): a token whose
# logit is further than that span (plus a margin for rounding) below its row's best can never win.
NOISE_SPAN = math.log(-math.log(0.5 / 2**32)) - math.log(-math.log((MASK32 + 0.5) / 2**32)) + 1.0


def _make_sampler(torch, row_keys, start_len: int, temperature: float, top_k: int, top_p: float, noise_dtype):
    """`_make_row_sampler` with one setting for every row."""
    return _make_row_sampler(torch, row_keys, start_len, [(temperature, top_k, top_p)] * len(row_keys), noise_dtype)


def pick_tokens(torch, scores, keys, steps, settings: list[tuple[float, int, float]], noise_dtype):
    """One token per row of `scores`: greedy for a row whose temperature is 0, else by Gumbel-max
    over that row's own noise after its temperature, top-k and top-p (`settings`: one such triple
    per row). `steps`: how many tokens each row has generated so far, an int for all rows or an
    int64 tensor [rows]; with the row's key it picks the noise. A row's draw depends on its own
    scores, key, step and setting only, never on the rows beside it."""

    def filtered(part, temperature, top_k, top_p):
        logits = part.float() / temperature
        vocab = logits.shape[-1]
        if 0 < top_k < vocab:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            probs = torch.softmax(logits, dim=-1)
            sorted_probs, sorted_index = torch.sort(probs, dim=-1, descending=True, stable=True)
            before = sorted_probs.cumsum(dim=-1) - sorted_probs
            drop = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, sorted_index, before >= top_p)
            logits = logits.masked_fill(drop, float("-inf"))
        return logits

    def draw(part, part_keys, part_steps, setting):
        rows, vocab = part.shape
        chunk = max(1, SAMPLER_ROW_CHUNK // max(vocab, 1))
        chosen = []
        for first in range(0, rows, chunk):
            logits = filtered(part[first : first + chunk], *setting).to(noise_dtype)
            chunk_keys = part_keys[first : first + chunk]
            step = part_steps if isinstance(part_steps, int) else part_steps[first : first + chunk, None]
            # Noise only for the tokens that can win (the top-k, or those within NOISE_SPAN of the
            # best): the same argmax as over the whole vocabulary, at a fraction of the hashing.
            best = logits.max(dim=-1, keepdim=True).values
            contenders = int((logits >= best - NOISE_SPAN).sum(dim=-1).max())
            if contenders * 4 < vocab:
                values, ids = torch.topk(logits, contenders, dim=-1)
                ids, order = ids.sort(dim=-1)  # vocabulary order, so ties break as over all tokens
                values = values.gather(-1, order)
                noise = gumbel_noise(torch, chunk_keys, step, ids, noise_dtype)
                chosen.append(ids.gather(-1, torch.argmax(values + noise, dim=-1, keepdim=True)).flatten())
            else:
                noise = gumbel_noise(torch, chunk_keys, step, vocab, noise_dtype)
                chosen.append(torch.argmax(logits + noise, dim=-1))
        return torch.cat(chosen)

    keys = keys.to(scores.device)
    if not isinstance(steps, int):
        steps = steps.to(scores.device)
    members: dict[tuple[float, int, float], list[int]] = {}
    for k, setting in enumerate(settings):
        members.setdefault(setting, []).append(k)
    tokens = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
    # Each setting's rows on their own: a row's draw is the same whatever shares its batch.
    for setting, rows in members.items():
        if len(rows) == scores.shape[0]:
            part, part_keys, part_steps, index = scores, keys, steps, slice(None)
        else:
            index = torch.tensor(rows, device=scores.device)
            part, part_keys = scores[index], keys[index]
            part_steps = steps if isinstance(steps, int) else steps[index]
        tokens[index] = part.argmax(-1) if setting[0] <= 0 else draw(part, part_keys, part_steps, setting)
    return tokens


def _make_row_sampler(torch, row_keys, start_len: int, settings: list[tuple[float, int, float]], noise_dtype):
    """`pick_tokens` as a logits processor for transformers' `generate` (every row at the same
    step: the ids past `start_len`). Returns logits that let greedy decoding pick exactly that token."""
    from transformers import LogitsProcessor

    class SeededRowSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            step = max(input_ids.shape[1] - start_len, 0)
            tokens = pick_tokens(torch, scores, row_keys, step, settings, noise_dtype)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, tokens[:, None], 0.0)

    return SeededRowSampler()


class HFBackend:
    """transformers generation in this process. See the module docstring for the design.

    Beyond the common backend arguments:

    * `share_prefill` (default on): prefill each distinct prompt once for all its rows. Off: every
      row runs its own prefill (the plain `num_return_sequences` way); same results, slower.
    * `reuse_prefix` (default on, needs `share_prefill`): prompts that share a long token prefix
      share its KV cache, computed once. Off: every distinct prompt is prefilled whole; same
      results up to float rounding (token-identical in float32 in our tests), slower. Always off
      with `isolate_requests`, as the prefix a prompt shares depends on the call's other prompts.
    * `isolate_requests` (default off): a batch never mixes requests, so a request's results are
      a function of the request alone, bit for bit, even in bfloat16/float16 where batched kernels
      otherwise shift logits enough to change a few percent of samples with the batch layout.
      Costs throughput (batches are at most one request's n rows).
    * `drop_finished` (default on): decode with `_decode_stream`, which drops finished rows from the
      batch. Off: transformers' `generate`, which runs every row to the batch's longest; same tokens.
    * `refill` (default on, with `drop_finished`): rows waiting join the batch while it decodes,
      as soon as a quarter of it is free (continuous batching). Off: the next batch starts when
      the last row of this one ends; same tokens up to float rounding, slower.
    * `kv_room` (default on, with `drop_finished`): decode into KV buffers with room for the
      batch's steps (backends/decode_cache.py). Off: the cache grows by concatenation, a copy of
      the whole cache per step; same tokens, slower.
    * `share_samples` (default on, with `refill`, not with `isolate_requests`): a request's n
      samples decode as one batch row while their tokens agree (each draws its own token from the
      row's logits with its own key), and a group whose token parts forks off with a copy of the
      row's KV cache. At a low temperature most samples agree for long (a classification label,
      all of them): one row's compute instead of n. Budgets still count each sample as a row (it
      may fork), so this saves compute per row, not steps: annotation ran 1.42x in fp32 on 2 CPU
      cores (bench/decode.py), and 0.96-1.28x in bf16 on AMX, where a step of few rows costs
      nearly what a full one does. Off: one row per sample from the start; same tokens up to
      float rounding.
    """

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int | None = None,
        max_batch_tokens: int = 16384,
        trust_remote_code: bool = False,
        share_prefill: bool = True,
        reuse_prefix: bool = True,
        isolate_requests: bool = False,
        drop_finished: bool = True,
        refill: bool = True,
        kv_room: bool = True,
        share_samples: bool = True,
    ):
        import torch

        self._torch = torch
        model = str(model)
        adapter = None if adapter is None else str(adapter)
        if batch_size is not None and batch_size < 1:
            raise SelfGuideError(f"batch_size must be >= 1, got {batch_size}")
        if max_batch_tokens < 1:
            raise SelfGuideError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.batch_size = batch_size
        self.max_batch_tokens = int(max_batch_tokens)
        self.share_prefill = bool(share_prefill)
        # Which prefix a prompt shares depends on the other prompts of the call: isolated requests must not.
        self.reuse_prefix = bool(reuse_prefix) and not isolate_requests
        self._prefix_kv: dict[tuple[int, ...], list] = {}  # shared prefix -> per-layer (keys, values)
        self.isolate_requests = bool(isolate_requests)

        _check_source(model, "model")
        if adapter is not None:
            _check_source(adapter, "adapter")
        self.device = _resolve_device(torch, device)
        self.dtype = _resolve_dtype(torch, dtype, self.device)

        self.tokenizer, self.model = self._load(model, adapter, trust_remote_code)
        self._eos_ids = self._collect_eos_ids()
        self._eos_tensor = torch.tensor(self._eos_ids or [-1], device=self.device)
        self._configure_generation()
        base = self._base_model()
        self._logits_to_keep = base._supports_logits_to_keep() if hasattr(base, "_supports_logits_to_keep") else False
        # transformers 5.x renamed forward's `past_key_values` (and the output's) to `cache`; the old name warns
        self._cache_name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._encoder_decoder = bool(getattr(base.config, "is_encoder_decoder", False))
        if self._encoder_decoder:
            self.share_prefill = False
        self.drop_finished = bool(drop_finished) and not self._encoder_decoder
        self.refill = bool(refill)
        self.kv_room = bool(kv_room)
        self.share_samples = bool(share_samples)  # only with refill, without isolated requests: forks join a running batch
        self._stop_checks: dict[tuple[str, ...], object] = {}  # stop strings -> StopStringCriteria

        fp, details = fingerprint(model, adapter)
        self.info = BackendInfo(
            backend="hf",
            model=model,
            fingerprint=fp,
            extra={
                "dtype": str(self.dtype).removeprefix("torch."),
                "device": str(self.device),
                "adapter": adapter,
                **{k: v for k, v in details.items() if v is not None},
            },
        )

    # -- loading ---------------------------------------------------------------------------------

    def _load(self, model: str, adapter: str | None, trust_remote_code: bool):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = str(Path(model).expanduser()) if Path(model).expanduser().exists() else model
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except Exception as err:
            raise SelfGuideError(_load_message("tokenizer of model", model, err)) from err
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise SelfGuideError(f"tokenizer of {model} has neither a pad nor an EOS token")
            tokenizer.pad_token = tokenizer.eos_token
        try:
            loaded = AutoModelForCausalLM.from_pretrained(
                source, dtype=self.dtype, device_map=str(self.device), trust_remote_code=trust_remote_code
            )
        except Exception as err:
            raise SelfGuideError(_load_message("model", model, err)) from err
        if adapter is not None:
            try:
                from peft import PeftModel
            except ImportError as err:  # pragma: no cover - peft is a dependency
                raise SelfGuideError("an adapter was given but peft is not installed") from err
            adapter_source = str(Path(adapter).expanduser()) if Path(adapter).expanduser().exists() else adapter
            try:
                loaded = PeftModel.from_pretrained(loaded, adapter_source)
            except Exception as err:
                raise SelfGuideError(_load_message("adapter", adapter, err)) from err
            loaded = _merged(loaded).to(self.device)
            # PEFT freezes the base weights, and on a CPU PyTorch multiplies a strided input (a prefill's
            # last position, with logits_to_keep) by a frozen weight 10x (fp32) to 900x (bf16) slower
            # than by a trainable one. Nothing here takes gradients (inference_mode), so unfreeze them
            # (the floating-point ones: a quantised base holds integer weights, which cannot require grad).
            for parameter in loaded.parameters():
                if parameter.is_floating_point():
                    parameter.requires_grad_(True)
        loaded.eval()
        return tokenizer, loaded

    def _base_model(self):
        model = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _collect_eos_ids(self) -> list[int]:
        ids: list[int] = []
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        configured = getattr(self._base_model().generation_config, "eos_token_id", None)
        if configured is not None:
            for value in configured if isinstance(configured, (list, tuple)) else [configured]:
                if int(value) not in ids:
                    ids.append(int(value))
        return ids

    def _configure_generation(self) -> None:
        """Swap in a clean generation config, so that the model's own defaults (repetition penalty,
        sampling settings) never mix with the request's SamplingParams."""
        from transformers import GenerationConfig

        base = self._base_model()
        self._original_generation_config = base.generation_config
        base.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self._eos_ids or None,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    # -- generation ------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Completion]]]:
        if self.model is None:
            raise SelfGuideError("this HF backend was closed")
        for index, request in enumerate(requests):
            _validate(request.params, index)
        prompts: dict[int, tuple[int, ...]] = {}
        settings: dict[int, _Settings] = {}
        for index, request in enumerate(requests):
            params = request.params
            if params.n == 0:
                yield index, []
                continue
            prompts[index] = tuple(encode_prompt(self.tokenizer, list(request.messages)))
            if params.max_new_tokens == 0:
                yield index, [Completion("", 0, len(prompts[index]), "length") for _ in range(params.n)]
                continue
            settings[index] = _Settings.of(params)
        # Our decoder takes each row's own settings; transformers' generate one setting per batch.
        groups: dict[_Settings | None, list[int]] = {}
        for index, setting in settings.items():
            groups.setdefault(None if self.drop_finished else setting, []).append(index)

        prefix = self._prefix_lengths(prompts.values())
        # Greedy samples are all the same: compute one row and copy it.
        count = {i: 1 if s.temperature == 0 else requests[i].params.n for i, s in settings.items()}
        for members in groups.values():
            members.sort(key=lambda i: self._row_order(prompts[i], prefix, i))
            rows: list[_Row] = []
            for i in members:
                p = prompts[i]
                rows += [_Row(i, j, row_seed(requests[i].params.seed, j), p, prefix.get(p, 0)) for j in range(count[i])]
            pending = {i: [None] * count[i] for i in members}
            left = dict(count)
            if self.drop_finished:
                finished = self._stream(rows, settings)
            else:
                batches = self._pack(rows, lambda row: settings[row.request].max_new_tokens)
                finished = (pair for batch in batches for pair in self._run_batch(batch, settings))
            for row, completion in finished:
                pending[row.request][row.sample] = completion
                left[row.request] -= 1
                if left[row.request] == 0:
                    done = pending.pop(row.request)
                    n = requests[row.request].params.n
                    if settings[row.request].temperature == 0:
                        done = [Completion(**done[0].as_dict()) for _ in range(n)]
                    yield row.request, done

    def _prefix_lengths(self, prompts: Iterable[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
        return shared_prefixes(prompts) if self.reuse_prefix and self.share_prefill else {}

    @staticmethod
    def _row_order(prompt: tuple[int, ...], prefix: dict[tuple[int, ...], int], index: int):
        """Prompts sharing a prefix next to each other, longest first among them."""
        return (prompt[: prefix.get(prompt, 0)], -len(prompt), index)

    def _pack(self, rows: list[_Row], new_tokens: Callable[[_Row], int]) -> Iterator[list[_Row]]:
        """Consecutive rows in batches within the row and token limits; a batch is as wide as its
        widest shared prefix plus its widest rest of a prompt (see `_layout`) plus its rows' most
        `new_tokens`."""
        batch: list[_Row] = []
        head = tail = new = 0
        for row in rows:
            wider_head, wider_tail, more = max(head, row.prefix), max(tail, len(row.prompt) - row.prefix), max(new, new_tokens(row))
            if batch:
                too_many = self.batch_size is not None and len(batch) + 1 > self.batch_size
                other_request = self.isolate_requests and row.request != batch[0].request
                too_wide = (len(batch) + 1) * (wider_head + wider_tail + more) > self.max_batch_tokens
                if too_many or other_request or too_wide:
                    yield batch
                    batch = []
                    wider_head, wider_tail, more = row.prefix, len(row.prompt) - row.prefix, new_tokens(row)
            batch.append(row)
            head, tail, new = wider_head, wider_tail, more
        if batch:
            yield batch

    def _run_batch(self, batch: list[_Row], settings: dict[int, _Settings]) -> list[tuple[_Row, Completion]]:
        """transformers' `generate` on one batch (`drop_finished` off): each row's completion;
        `settings` maps a request to its sampling settings (one setting in the batch)."""
        torch = self._torch
        try:
            generated = self._generate_rows(batch, settings)
        except _out_of_memory(torch):
            if len(batch) == 1:
                raise
            log.warning("out of memory on a batch of %d rows: splitting it in two", len(batch))
            self._empty_device_cache()
            half = len(batch) // 2
            return self._run_batch(batch[:half], settings) + self._run_batch(batch[half:], settings)
        return [(row, self._row_completion(row, ids, settings)) for row, ids in zip(batch, generated)]

    def _row_completion(self, row: _Row, ids: list[int], settings: dict[int, _Settings]) -> Completion:
        setting = settings[row.request]
        return self._completion(ids, len(row.prompt), self._stops(setting), setting.max_new_tokens)

    def _stops(self, setting: _Settings) -> tuple[str, ...]:
        """The request's stop strings, then the chat template's end-of-turn strings."""
        return setting.stop + tuple(s for s in stop_strings_for(self.tokenizer) if s not in setting.stop)

    def _generate_rows(self, batch: list[_Row], settings: dict[int, _Settings]) -> list[list[int]]:
        """Each row's generated token ids, by transformers' `generate`."""
        torch = self._torch
        prompts, prompt_ids, prompt_mask, select = self._distinct_prompts(batch)
        setting = settings[batch[0].request]
        sampler = None
        if setting.temperature > 0:
            sampling = [(setting.temperature, setting.top_k, setting.top_p)] * len(batch)
            sampler = _make_row_sampler(torch, self._row_keys(batch), prompt_ids.shape[1], sampling, self._noise_dtype())
        with torch.inference_mode():
            return self._generate_with_hf(prompt_ids[select], prompt_mask[select], setting.max_new_tokens, sampler, self._stops(setting))

    def _noise_dtype(self):
        return self._torch.float32 if self.device.type == "mps" else self._torch.float64

    # -- continuous batching ---------------------------------------------------------------------

    def _stream(self, rows: list[_Row], settings: dict[int, _Settings]) -> Iterator[tuple[_Row, Completion]]:
        """Decode `rows` (sorted, rows sharing a prefix together) and yield each row's completion
        as soon as it ends. Out of memory: the rows in flight start again, half as many at a time."""
        queue = deque(rows)
        most_rows = self.batch_size or len(rows)
        while queue:
            flight: list[_Row] = []
            try:
                for row, ids in self._decode_stream(queue, flight, settings, most_rows):
                    yield row, self._row_completion(row, ids, settings)
            except _out_of_memory(self._torch):
                if len(flight) <= 1:
                    raise
                log.warning("out of memory with %d rows in flight: starting them again, %d at a time", len(flight), len(flight) // 2)
                queue.extendleft(reversed(flight))
                most_rows = len(flight) // 2
                self._empty_device_cache()

    def _decode_stream(self, queue: deque[_Row], flight: list[_Row], settings: dict[int, _Settings], most_rows: int):
        """Greedy (or seeded) decoding with `generate(do_sample=False)`'s EOS and stop-string rules,
        continuously batched: a row leaves the batch when it ends, and rows waiting in `queue` join
        as soon as a quarter of the batch (within `most_rows` and `max_batch_tokens`) is free
        (`refill`), rather than the batch running on with its last few rows. Sampled inputs and
        answers are mostly far shorter than their longest, and a step of a few rows costs nearly
        what a full one does. Rows joining are prefilled on their own, then their KV cache is
        stacked with the running rows' (backends/decode_cache.py).

        With `share_samples`, a request's samples start as one batch row; when their tokens part,
        each new group forks off with a copy of the row's KV and waits in `forks` to join the
        batch with the next rows admitted. `flight` holds the samples admitted and not yet
        yielded. Yields (sample, generated ids, EOS or stop token included)."""
        batch: _Decoding | None = None
        forks: list[_Decoding] = []
        while queue or flight:
            wave = self._next_wave(queue, batch, forks, len(flight), settings, most_rows)
            if wave is not None:
                flight += wave
                batch = self._admit(batch, forks, wave, settings)
                forks = []
            ended, fork = self._step(batch)
            finished = [(batch, k) for k in ended]
            if fork is not None:
                finished += [(fork, k) for k in fork.done.nonzero().flatten().tolist()]
            for part, k in finished:
                for row in part.rows[k]:
                    flight.remove(row)
                    yield row, part.generated[k]
            if fork is not None and fork.live():
                if fork.cache is not None:
                    self._keep(fork, fork.live())
                    forks.append(fork)
                else:  # this model's cache cannot take rows: such samples start again, each on its own
                    self.share_samples = False
                    for k in fork.live():
                        for row in fork.rows[k]:
                            flight.remove(row)
                            queue.appendleft(replace(row, alone=True))
            live = batch.live()
            if not live:
                batch = None
            elif len(live) * 4 <= len(batch.rows) * 3 and hasattr(batch.cache, "batch_select_indices"):
                # Rows leave in groups, as each drop copies the cache. (Caches that cannot drop rows keep them.)
                self._keep(batch, live)

    def _next_wave(
        self, queue: deque[_Row], batch: _Decoding | None, forks: list[_Decoding], flying: int, settings, most_rows: int
    ) -> list[_Row] | None:
        """The rows of `queue` to admit now with the `forks` waiting (taken from it), or None for
        not yet: as many as fit beside the `flying` samples in flight (each counted as a row of its
        own, as it may fork into one), if these and the forks are a quarter of the batch or all
        that is left; none while a batch that cannot take rows (no `refill`, isolated requests, a
        cache that cannot be stacked) still runs."""
        from selfguide.backends import decode_cache

        live = len(batch.live()) if batch is not None else 0
        if live and not (self._refills and decode_cache.plain(batch.cache)):
            return None
        # The forks waiting join with this wave: the batch is as wide, and runs as long, as they are too.
        running = ([batch] if live else []) + forks
        width = max((part.ids.shape[1] for part in running), default=0)
        remaining = max((part.remaining() for part in running), default=0)
        head = tail = new = take = 0
        joining: set = set()  # the batch rows the taken samples start as
        for row in queue:
            if self.isolate_requests and take and row.request != queue[0].request:
                break
            wider_head, wider_tail = max(head, row.prefix), max(tail, len(row.prompt) - row.prefix)
            more = max(new, settings[row.request].max_new_tokens)
            rows = flying + take + 1
            tokens = rows * (max(width, wider_head + wider_tail) + max(remaining, more))
            if rows > 1 and (rows > most_rows or tokens > self.max_batch_tokens):
                break  # the first row of an empty batch always goes
            head, tail, new, take = wider_head, wider_tail, more, take + 1
            joining.add(self._batch_row_of(row))
        waiting = len(joining) + sum(len(fork.rows) for fork in forks)
        if not waiting or (live and waiting * 4 < live + waiting and not 0 < take == len(queue)):
            return None
        return [queue.popleft() for _ in range(take)]

    @property
    def _refills(self) -> bool:
        """Whether rows may join a running batch (forks of shared samples among them)."""
        return self.refill and not self.isolate_requests

    def _batch_row_of(self, row: _Row) -> object:
        """What a sample starts as: its request's batch row (`share_samples`) or one of its own."""
        shared = self.share_samples and self._refills and not row.alone
        return row.request if shared else (row.request, row.sample)

    def _admit(self, batch: _Decoding | None, forks: list[_Decoding], wave: list[_Row], settings: dict[int, _Settings]) -> _Decoding:
        """The running batch's live rows, the `forks` and `wave`, prefilled, in one batch."""
        from selfguide.backends import decode_cache

        parts = list(forks)
        if wave:
            arrived = self._start_wave(wave, settings)
            if batch is None and not forks and not decode_cache.plain(arrived.cache):
                return arrived  # nothing cached yet, or the model's own kind: decoded as it is
            parts.append(arrived)
        if batch is not None:  # `_next_wave` admits rows beside running ones only when their cache is plain
            self._keep(batch, batch.live())
            parts.insert(0, batch)
        if len(parts) == 1 and not self.kv_room:
            return parts[0]
        joined = _Decoding.stack(self._torch, parts, self.tokenizer.pad_token_id)
        joined.cache = decode_cache.join([(part.cache, len(part.rows)) for part in parts], joined.remaining() if self.kv_room else None)
        return joined

    def _start_wave(self, wave: list[_Row], settings: dict[int, _Settings]) -> _Decoding:
        """`wave`'s rows with their prompts prefilled (all but each prompt's last token), a
        request's samples in one batch row (`share_samples`)."""
        torch = self._torch
        grouped: dict[object, list[_Row]] = {}
        for row in wave:
            grouped.setdefault(self._batch_row_of(row), []).append(row)
        rows = list(grouped.values())
        firsts = [members[0] for members in rows]
        prompts, prompt_ids, prompt_mask, select = self._distinct_prompts(firsts)
        ids, mask = prompt_ids[select], prompt_mask[select]
        cache = None
        with torch.inference_mode():
            if prompt_ids.shape[1] >= 2 and self.share_prefill:
                cache = self._prefill(prompts, prompt_ids, prompt_mask, select)
            if prompt_ids.shape[1] >= 2 and cache is None:  # every row its own prefill
                extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
                positions = (mask[:, :-1].cumsum(-1) - 1).clamp_(min=0)
                out = self.model(
                    input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions, use_cache=True, **extra
                )
                cache = getattr(out, self._cache_name)
        row_settings = [settings[row.request] for row in firsts]
        return _Decoding(
            rows=rows,
            ids=ids,
            mask=mask,
            cache=cache,
            steps=torch.zeros(len(rows), dtype=torch.long, device=self.device),
            limits=torch.tensor([s.max_new_tokens for s in row_settings], device=self.device),
            sampling=[(s.temperature, s.top_k, s.top_p) for s in row_settings],
            stops=[self._stops(s) for s in row_settings],
            done=torch.zeros(len(rows), dtype=torch.bool, device=self.device),
            generated=[[] for _ in rows],
        )

    def _step(self, batch: _Decoding) -> tuple[list[int], _Decoding | None]:
        """One decoding step for every row of `batch`: the rows that ended with it, and the
        samples whose tokens parted from their row's, forked off as rows of their own (None if none)."""
        torch = self._torch
        extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
        with torch.inference_mode():
            out = self.model(
                input_ids=batch.ids[:, -1:],
                attention_mask=batch.mask,
                position_ids=batch.mask.sum(-1, keepdim=True) - 1,
                **{self._cache_name: batch.cache},
                use_cache=True,
                **extra,
            )
            batch.cache = getattr(out, self._cache_name)
            scores = out.logits[:, -1, :].to(dtype=torch.float32)
            del out
            tokens, parted = self._pick(batch, scores)
            batch.ids = torch.cat([batch.ids, tokens[:, None]], dim=-1)
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=-1)
            batch.steps += 1
            finished = self._finished(batch, tokens)
            values = tokens.tolist()
            for k in (~batch.done).nonzero().flatten().tolist():
                batch.generated[k].append(values[k])
            fork = self._fork(batch, parted) if parted else None
            ended = (finished & ~batch.done).nonzero().flatten().tolist()
            batch.done |= finished
        return ended, fork

    def _pick(self, batch: _Decoding, scores) -> tuple[object, list[tuple[int, int, list[_Row]]]]:
        """Each batch row's next token, drawn for each of its samples (with the sample's own key);
        the samples whose draw differs from their row's first sample's, as (row, token, samples)."""
        torch = self._torch
        if not any(setting[0] > 0 for setting in batch.sampling):
            return scores.argmax(-1), []
        flat = [row for members in batch.rows for row in members]
        keys = self._row_keys(flat)
        if len(flat) == len(batch.rows):
            return pick_tokens(torch, scores, keys, batch.steps, batch.sampling, self._noise_dtype()), []
        owners = [k for k, members in enumerate(batch.rows) for _ in members]
        owner = torch.tensor(owners, device=self.device)
        drawn = pick_tokens(torch, scores[owner], keys, batch.steps[owner], [batch.sampling[k] for k in owners], self._noise_dtype())
        values = drawn.tolist()
        tokens, parted, first = [], [], 0
        for k, members in enumerate(batch.rows):
            mine = values[first : first + len(members)]
            first += len(members)
            tokens.append(mine[0])
            if len(set(mine)) > 1 and not batch.done[k]:
                groups: dict[int, list[_Row]] = {}
                for row, token in zip(members, mine):
                    groups.setdefault(token, []).append(row)
                batch.rows[k] = groups.pop(mine[0])
                parted += [(k, token, rows) for token, rows in groups.items()]
        return torch.tensor(tokens, device=self.device), parted

    def _finished(self, batch: _Decoding, tokens):
        """Which rows end with `tokens` (just appended to `batch.ids`): EOS, their token limit, a stop string."""
        torch = self._torch
        from transformers.generation.stopping_criteria import StopStringCriteria

        finished = torch.isin(tokens, self._eos_tensor) | (batch.steps >= batch.limits)
        for stops, index in batch.stop_members().items():
            check = self._stop_checks.get(stops)
            if check is None:
                check = self._stop_checks[stops] = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(stops))
            if index is None:
                finished |= check(batch.ids, None)
            else:
                finished[index] |= check(batch.ids[index], None)
        return finished

    def _fork(self, batch: _Decoding, parted: list[tuple[int, int, list[_Row]]]) -> _Decoding:
        """The `parted` samples as rows of their own, each a copy of its batch row (KV cache
        included, when the cache can be stacked; else None) but for its last token."""
        torch = self._torch
        from selfguide.backends import decode_cache

        parents = [k for k, _, _ in parted]
        index = torch.tensor(parents, device=self.device)
        tokens = torch.tensor([token for _, token, _ in parted], device=self.device)
        ids = batch.ids[index]
        ids[:, -1] = tokens
        fork = _Decoding(
            rows=[rows for _, _, rows in parted],
            ids=ids,
            mask=batch.mask[index],
            cache=decode_cache.take(batch.cache, index) if decode_cache.plain(batch.cache) else None,
            steps=batch.steps[index],
            limits=batch.limits[index],
            sampling=[batch.sampling[k] for k in parents],
            stops=[batch.stops[k] for k in parents],
            done=torch.zeros(len(parted), dtype=torch.bool, device=self.device),
            generated=[batch.generated[k][:-1] + [token] for k, token, _ in parted],
        )
        fork.done = self._finished(fork, tokens)
        return fork

    def _keep(self, batch: _Decoding, keep: list[int]) -> None:
        """Only rows `keep` of `batch` go on; columns that are padding for all of them go."""
        torch = self._torch
        from selfguide.backends import decode_cache

        if len(keep) < len(batch.rows):
            index = torch.tensor(keep, device=self.device)
            if batch.cache is not None:
                batch.cache.batch_select_indices(index)
            batch.select(keep, index)
        first = int(batch.mask.argmax(-1).min())  # each row's first real column
        if first and decode_cache.plain(batch.cache):
            batch.ids, batch.mask = batch.ids[:, first:], batch.mask[:, first:]
            decode_cache.trim(batch.cache, first)


    def _generate_with_hf(self, ids, mask, max_new_tokens: int, sampler, stops: tuple[str, ...]) -> list[list[int]]:
        """transformers' own `generate`: for encoder-decoder models, and as the baseline of
        bench/decode.py (same tokens as `_decode_rows`, every row run to the batch's longest)."""
        from transformers import LogitsProcessorList

        kwargs = {"stop_strings": list(stops), "tokenizer": self.tokenizer} if stops else {}
        sequences = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            logits_processor=LogitsProcessorList([sampler] if sampler is not None else []),
            use_cache=True,
            **kwargs,
        )
        return sequences[:, ids.shape[1] :].tolist()

    def _distinct_prompts(self, batch: list[_Row]):
        """The batch's distinct prompts (with their shared-prefix lengths), their `_layout`, and
        the index of each row's prompt in it."""
        torch = self._torch
        distinct: dict[tuple[int, ...], int] = {}
        for row in batch:
            distinct.setdefault(row.prompt, row.prefix)
        prompts = list(distinct.items())
        ids, mask = self._layout(prompts)
        position = {prompt: k for k, (prompt, _) in enumerate(prompts)}
        select = torch.tensor([position[row.prompt] for row in batch], dtype=torch.long, device=self.device)
        return prompts, ids, mask, select

    def _layout(self, prompts: list[tuple[tuple[int, ...], int]]):
        """Token ids and attention mask of (prompt, shared-prefix length) pairs, each laid out as
        [pad, prefix, pad, rest]: prefixes right-aligned in the first columns, rests in the last.
        Without shared prefixes this is plain left padding."""
        torch = self._torch
        head = max(prefix for _, prefix in prompts)
        width = head + max(len(prompt) - prefix for prompt, prefix in prompts)
        ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for k, (prompt, prefix) in enumerate(prompts):
            for end, part in ((head, prompt[:prefix]), (width, prompt[prefix:])):
                if part:
                    ids[k, end - len(part) : end] = torch.tensor(part, dtype=torch.long)
                    mask[k, end - len(part) : end] = 1
        return ids.to(self.device), mask.to(self.device)

    def _prefill(self, prompts, prompt_ids, prompt_mask, select):
        """KV cache of every distinct prompt but its last token, expanded to the batch's rows.
        Shared prefixes come from `_prefix_cache`; only the rest of each prompt runs here."""
        torch = self._torch
        head = max(prefix for _, prefix in prompts)
        ids, mask = prompt_ids[:, :-1], prompt_mask[:, :-1]
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
        cache, start = None, 0
        if head and self.reuse_prefix:
            try:
                cache, start = self._prefix_cache(prompts, head), head
            except (TypeError, ValueError, AttributeError, NotImplementedError) as err:
                log.warning("prefix reuse is not supported by this model (%s): prefilling whole prompts", err)
                self.reuse_prefix = False
                self._prefix_kv.clear()
        try:
            if ids.shape[1] > start:
                outputs = self.model(
                    input_ids=ids[:, start:],
                    attention_mask=mask,
                    position_ids=positions[:, start:],
                    **{self._cache_name: cache},
                    use_cache=True,
                    **extra,
                )
                cache = getattr(outputs, self._cache_name)
                del outputs
            if cache is None or not hasattr(cache, "batch_select_indices"):
                raise TypeError(f"no expandable KV cache ({type(cache).__name__})")
            if select.shape[0] != ids.shape[0] or not bool(
                (select == torch.arange(ids.shape[0], device=select.device)).all()
            ):
                cache.batch_select_indices(select)
            return cache
        except (TypeError, ValueError, AttributeError, NotImplementedError) as err:
            log.warning("shared prefill is not supported by this model (%s): expanding rows instead", err)
            self.share_prefill = False
            return None

    def _prefix_cache(self, prompts: list[tuple[tuple[int, ...], int]], head: int):
        """A KV cache of `head` columns holding each distinct prompt's shared prefix right-aligned
        (zeros, masked out, before it; all zeros for a prompt without one). Each prefix is
        computed once, alone, and kept while consecutive batches need it."""
        torch = self._torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        needed = {prompt[:prefix] for prompt, prefix in prompts if prefix}
        for stale in self._prefix_kv.keys() - needed:  # rows come sorted by prefix: never needed again
            del self._prefix_kv[stale]
        for prefix in needed - self._prefix_kv.keys():
            extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
            ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
            cache = getattr(self.model(input_ids=ids, use_cache=True, **extra), self._cache_name)
            layers = getattr(cache, "layers", None)
            if not layers or not all(type(layer) is DynamicLayer for layer in layers):
                raise TypeError(f"prefix reuse needs a plain DynamicCache, got {type(cache).__name__}")
            self._prefix_kv[prefix] = [(layer.keys, layer.values) for layer in layers]
        # Per layer: the batch's prefixes left-padded to `head` (slot 0: none), then one per prompt;
        # a view when all prompts share one prefix, as the cache copies it on its first update.
        order = sorted(needed)
        slots = [order.index(prompt[:prefix]) + 1 if prefix else 0 for prompt, prefix in prompts]
        data = []
        for layer in range(len(self._prefix_kv[order[0]])):
            pair = []
            for part in (0, 1):  # keys, values
                padded = [torch.nn.functional.pad(self._prefix_kv[x][layer][part], (0, 0, head - len(x), 0)) for x in order]
                stacked = torch.cat([torch.zeros_like(padded[0]), *padded])
                if len(set(slots)) == 1:
                    pair.append(stacked[slots[0] : slots[0] + 1].expand(len(prompts), -1, -1, -1))
                else:
                    pair.append(stacked[torch.tensor(slots, device=stacked.device)])
            data.append(tuple(pair))
        return DynamicCache(data)

    # -- scoring ---------------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[tuple[int, list[CandidateScore]]]:
        """Log-probability of each candidate answer after its prompt. A candidate is scored on the
        tokens training puts after the prompt: `render_answer`, closing end-of-turn included."""
        if self.model is None:
            raise SelfGuideError("this HF backend was closed")
        if self._encoder_decoder:
            raise SelfGuideError("label scoring needs a decoder-only model")
        prompts: dict[int, tuple[int, ...]] = {}
        answers: dict[int, list[tuple[int, ...]]] = {}
        for index, request in enumerate(requests):
            if not request.candidates:
                yield index, []
                continue
            messages = list(request.messages)
            prompts[index] = tuple(encode_prompt(self.tokenizer, messages))
            answers[index] = [
                tuple(self.tokenizer(render_answer(self.tokenizer, messages, c), add_special_tokens=False)["input_ids"])
                for c in request.candidates
            ]
        if not prompts:
            return
        prefix = self._prefix_lengths(prompts.values())
        rows = [
            _Row(i, j, 0, prompts[i], prefix.get(prompts[i], 0))
            for i in sorted(prompts, key=lambda i: self._row_order(prompts[i], prefix, i))
            for j in range(len(answers[i]))
        ]
        pending = {i: [None] * len(a) for i, a in answers.items()}
        left = {i: len(a) for i, a in answers.items()}
        longest = max(len(a) for candidates in answers.values() for a in candidates)
        for batch in self._pack(rows, lambda row: longest):
            for row, result in zip(batch, self._score_rows(batch, [answers[row.request][row.sample] for row in batch])):
                pending[row.request][row.sample] = result
                left[row.request] -= 1
                if left[row.request] == 0:
                    yield row.request, pending.pop(row.request)

    def _score_rows(self, batch: list[_Row], targets: list[tuple[int, ...]]) -> list[CandidateScore]:
        """One forward over each row's last prompt token and its answer, on the prompts' prefill."""
        torch = self._torch
        longest = max(len(t) for t in targets)
        if longest == 0:
            return [CandidateScore(0.0, 0) for _ in batch]
        prompts, prompt_ids, prompt_mask, select = self._distinct_prompts(batch)
        answer_ids = torch.full((len(batch), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        answer_mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for k, target in enumerate(targets):  # right-padded: padding comes after every real token
            answer_ids[k, : len(target)] = torch.tensor(target, dtype=torch.long)
            answer_mask[k, : len(target)] = 1
        answer_ids, answer_mask = answer_ids.to(self.device), answer_mask.to(self.device)
        ids = torch.cat([prompt_ids[select], answer_ids], dim=1)
        mask = torch.cat([prompt_mask[select], answer_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        extra = {"logits_to_keep": longest} if self._logits_to_keep else {}
        with torch.inference_mode():
            width = prompt_ids.shape[1]
            cache = self._prefill(prompts, prompt_ids, prompt_mask, select) if self.share_prefill and width >= 2 else None
            start = width - 1 if cache is not None else 0
            outputs = self.model(
                input_ids=ids[:, start:-1],
                attention_mask=mask[:, :-1],
                position_ids=positions[:, start:-1],
                **{self._cache_name: cache},
                use_cache=cache is not None,
                **extra,
            )
            logits = outputs.logits[:, -longest:].float()  # position t predicts answer token t
            del outputs, cache
            # log_softmax at the answer tokens only, without a vocabulary-sized copy of the logits
            logprobs = logits.gather(-1, answer_ids[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
            totals = torch.where(answer_mask.bool(), logprobs, 0.0).sum(-1).tolist()
        return [CandidateScore(total, len(target)) for total, target in zip(totals, targets)]

    def _row_keys(self, batch: list[_Row]):
        """Each row's seed as two 32-bit halves, the key of its noise stream."""
        torch = self._torch
        keys = [[row.seed & MASK32, (row.seed >> 32) & MASK32] for row in batch]
        return torch.tensor(keys, dtype=torch.int64, device=self.device)

    def _completion(
        self, ids: list[int], prompt_tokens: int, stops: tuple[str, ...], max_new_tokens: int
    ) -> Completion:
        """Cut at EOS or the first stop string; count tokens up to and including that point."""
        eos = set(self._eos_ids)
        end = next((k for k, token in enumerate(ids) if token in eos), None)
        body = ids if end is None else ids[:end]
        text = self._decode(body)
        cut = min((p for p in (text.find(s) for s in stops) if p >= 0), default=-1)
        if cut >= 0:
            return Completion(text[:cut], self._tokens_until_stop(body, stops), prompt_tokens, "stop")
        if end is not None:
            return Completion(text, end + 1, prompt_tokens, "stop")
        pad = self.tokenizer.pad_token_id
        real = len(body)
        while real > 0 and body[real - 1] == pad:  # rows that finished early are padded
            real -= 1
        return Completion(text, real, prompt_tokens, "length" if real >= max_new_tokens else "stop")

    def _tokens_until_stop(self, ids: list[int], stops: tuple[str, ...]) -> int:
        """Smallest k such that the first k tokens already contain a stop string."""
        low, high = 1, len(ids)
        while low < high:
            mid = (low + high) // 2
            if any(s in self._decode(ids[:mid]) for s in stops):
                high = mid
            else:
                low = mid + 1
        return high

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # -- cleanup ---------------------------------------------------------------------------------

    def _empty_device_cache(self) -> None:
        torch = self._torch
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the model and tokenizer and give the device memory back."""
        if getattr(self, "model", None) is None:
            return
        self.model = None
        self.tokenizer = None
        self._original_generation_config = None
        self._prefix_kv.clear()
        self._stop_checks.clear()
        self._empty_device_cache()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------


def _merged(model):
    """A PEFT model with its adapter folded into the base weights, for inference: LoRA's extra small
    matmuls per layer cost 18% of an fp32 decoding step on a CPU and twice the whole step in bf16
    (SmolLM2-135M). The model as it is for adapters that cannot be merged (prompt learning)."""
    try:
        return model.merge_and_unload()
    except (AttributeError, NotImplementedError, TypeError, ValueError) as err:
        log.info("the adapter cannot be merged (%s): decoding with it on top of the base", err)
        return model


def _out_of_memory(torch) -> type[BaseException]:
    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _check_source(name: str, what: str) -> None:
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SelfGuideError(f"{what} path {name} is not a folder")
        if what == "model" and not (path / "config.json").is_file():
            raise SelfGuideError(f"model folder {name} has no config.json")
        if what == "adapter" and not (path / "adapter_config.json").is_file():
            raise SelfGuideError(f"adapter folder {name} has no adapter_config.json")
    elif _looks_like_path(name):
        raise SelfGuideError(f"{what} folder {name} does not exist")


def _load_message(what: str, name: str, err: Exception) -> str:
    where = "local folder" if Path(name).expanduser().exists() else "Hugging Face hub id (or local folder)"
    offline = " (offline mode is on, so only models already in the local cache load)" if _offline() else ""
    return f"could not load {what} {name!r} as a {where}{offline}: {type(err).__name__}: {err}"


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _resolve_device(torch, device: str):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise SelfGuideError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SelfGuideError(f"device {device!r} was asked for but CUDA is not available")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def _resolve_dtype(torch, dtype: str, device):
    if dtype in ("auto", "native"):
        from selfguide.backends.precision import resolved_dtype

        return getattr(torch, resolved_dtype(dtype, str(device)))
    from selfguide.backends.precision import dtype_name

    name = dtype_name(dtype)
    if name is None:
        raise SelfGuideError(f"unknown dtype {dtype!r}: use auto, native, float32, bfloat16 or float16")
    return getattr(torch, name)


__all__ = ["HFBackend", "row_seed"]

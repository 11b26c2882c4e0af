"""HFBackend: generation and label scoring with transformers in this process (see the package's docstring)."""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Self

from selfguide.backends.base import BackendInfo, CandidateScore, Completion, Request, ScoreRequest
from selfguide.backends.chat import encode_prompt, render_answer, stop_strings_for
from selfguide.backends.fingerprint import fingerprint
from selfguide.backends.hf import loading
from selfguide.backends.hf.prefixes import shared_prefixes
from selfguide.backends.hf.rows import Row, Settings, validate
from selfguide.backends.hf.sampling import _make_row_sampler, row_seed, seed_keys
from selfguide.errors import SelfGuideError

log = logging.getLogger(__name__)


def _option(part: str, name: str) -> property:
    """`name` of `self.<part>`, read and set on the backend: options may change between calls."""
    return property(lambda self: getattr(getattr(self, part), name), lambda self, value: setattr(getattr(self, part), name, value))


class HFBackend:
    """transformers generation in this process. See the package docstring for the design.

    Beyond the common backend arguments:

    * `share_prefill` (default on): prefill each distinct prompt once for all its rows. Off: every
      row runs its own prefill (the plain `num_return_sequences` way); same results, slower.
    * `reuse_prefix` (default on, needs `share_prefill`): prompts that share a long token prefix
      share its KV cache, computed once. Off: every distinct prompt is prefilled whole; same
      results up to float rounding (token-identical in float32 in our tests), slower. Always off
      with `isolate_requests`, as the prefix a prompt shares depends on the call's other prompts.
      Sliding-window and hybrid models (Gemma 2/3, Mistral, Qwen's sliding layers) reuse prefixes,
      join running batches and share samples too, on plain caches with masks by position (masks.py).
    * `isolate_requests` (default off): a batch never mixes requests, so a request's results are
      a function of the request alone, bit for bit, even in bfloat16/float16 where batched kernels
      otherwise shift logits enough to change a few percent of samples with the batch layout.
      Costs throughput (batches are at most one request's n rows).
    * `drop_finished` (default on): decode with the scheduler (scheduler.py), which drops finished rows from the
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


    batch_size = _option("options", "batch_size")
    max_batch_tokens = _option("options", "max_batch_tokens")
    refill = _option("options", "refill")
    kv_room = _option("options", "kv_room")
    share_samples = _option("options", "share_samples")
    isolate_requests = _option("options", "isolate_requests")
    share_prefill = _option("prefiller", "share_prefill")
    reuse_prefix = _option("prefiller", "reuse_prefix")

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

        from selfguide.backends.hf.masks import Masks
        from selfguide.backends.hf.prefill import Prefill
        from selfguide.backends.hf.scheduler import DecodeOptions, Scheduler

        self._torch = torch
        model = str(model)
        adapter = None if adapter is None else str(adapter)
        if batch_size is not None and batch_size < 1:
            raise SelfGuideError(f"batch_size must be >= 1, got {batch_size}")
        if max_batch_tokens < 1:
            raise SelfGuideError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        loading.check_source(model, "model")
        if adapter is not None:
            loading.check_source(adapter, "adapter")
        self.device = loading.resolve_device(torch, device)
        self.dtype = loading.resolve_dtype(torch, dtype, self.device)

        self.tokenizer, self.model = loading.load(model, adapter, self.dtype, self.device, trust_remote_code)
        self._eos_ids = loading.eos_ids(self.tokenizer, self.model)
        self.eos = torch.tensor(self._eos_ids or [-1], device=self.device)  # [-1]: nothing ends a row
        self.pad_id = self.tokenizer.pad_token_id
        self.noise_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._original_generation_config = loading.clean_generation_config(self.tokenizer, self.model, self._eos_ids)
        base = loading.base_model(self.model)
        logits_to_keep = base._supports_logits_to_keep() if hasattr(base, "_supports_logits_to_keep") else False
        self._extra = {"logits_to_keep": 1} if logits_to_keep else {}
        self._logits_to_keep = logits_to_keep
        # transformers 5.x renamed forward's `past_key_values` (and the output's) to `cache`; the old name warns
        self._cache_name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._encoder_decoder = bool(getattr(base.config, "is_encoder_decoder", False))
        self.masks = Masks(base)
        if self.masks.unsupported:
            log.warning("prefix reuse, joining running batches and sample sharing are off for this model: %s", self.masks.unsupported)
        # Which prefix a prompt shares depends on the other prompts of the call: isolated requests must not.
        self.prefiller = Prefill(
            self.model,
            self.masks,
            self.device,
            self.pad_id,
            self._cache_name,
            logits_to_keep,
            share_prefill=bool(share_prefill) and not self._encoder_decoder,
            reuse_prefix=bool(reuse_prefix) and not isolate_requests and not self.masks.unsupported,
        )
        self.drop_finished = bool(drop_finished) and not self._encoder_decoder
        # share_samples takes effect only with refill, without isolated requests: forks join a running batch
        self.options = DecodeOptions(batch_size, int(max_batch_tokens), bool(refill), bool(kv_room), bool(share_samples), bool(isolate_requests))
        self.scheduler = Scheduler(self, self.options)
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

    # -- generation ------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Completion]]]:
        if self.model is None:
            raise SelfGuideError("this HF backend was closed")
        for index, request in enumerate(requests):
            validate(request.params, index)
        prompts: dict[int, tuple[int, ...]] = {}
        settings: dict[int, Settings] = {}
        for index, request in enumerate(requests):
            params = request.params
            if params.n == 0:
                yield index, []
                continue
            prompts[index] = tuple(encode_prompt(self.tokenizer, list(request.messages)))
            if params.max_new_tokens == 0:
                yield index, [Completion("", 0, len(prompts[index]), "length") for _ in range(params.n)]
                continue
            settings[index] = Settings.of(params)
        # Our decoder takes each row's own settings; transformers' generate one setting per batch.
        groups: dict[Settings | None, list[int]] = {}
        for index, setting in settings.items():
            groups.setdefault(None if self.drop_finished else setting, []).append(index)

        prefix = self._prefix_lengths(prompts.values())
        # Greedy samples are all the same: compute one row and copy it.
        count = {i: 1 if s.temperature == 0 else requests[i].params.n for i, s in settings.items()}
        for members in groups.values():
            members.sort(key=lambda i: self._row_order(prompts[i], prefix, i))
            rows: list[Row] = []
            for i in members:
                p = prompts[i]
                rows += [Row(i, j, row_seed(requests[i].params.seed, j), p, prefix.get(p, 0)) for j in range(count[i])]
            pending = {i: [None] * count[i] for i in members}
            left = dict(count)
            if self.drop_finished:
                decoded = self.scheduler.stream(rows, settings)
                finished = ((row, self._row_completion(row, ids, settings)) for row, ids in decoded)
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

    def _pack(self, rows: list[Row], new_tokens: Callable[[Row], int]) -> Iterator[list[Row]]:
        """Consecutive rows in batches within the row and token limits; a batch is as wide as its
        widest shared prefix plus its widest rest of a prompt (see `Prefill.layout`) plus its rows' most
        `new_tokens`."""
        batch: list[Row] = []
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

    def _run_batch(self, batch: list[Row], settings: dict[int, Settings]) -> list[tuple[Row, Completion]]:
        """transformers' `generate` on one batch (`drop_finished` off): each row's completion;
        `settings` maps a request to its sampling settings (one setting in the batch)."""
        torch = self._torch
        try:
            generated = self._generate_rows(batch, settings)
        except loading.out_of_memory(torch):
            if len(batch) == 1:
                raise
            log.warning("out of memory on a batch of %d rows: splitting it in two", len(batch))
            self.free_memory()
            half = len(batch) // 2
            return self._run_batch(batch[:half], settings) + self._run_batch(batch[half:], settings)
        return [(row, self._row_completion(row, ids, settings)) for row, ids in zip(batch, generated)]

    def _row_completion(self, row: Row, ids: list[int], settings: dict[int, Settings]) -> Completion:
        setting = settings[row.request]
        return self._completion(ids, len(row.prompt), self.stops(setting), setting.max_new_tokens)

    def stops(self, setting: Settings) -> tuple[str, ...]:
        """The request's stop strings, then the chat template's end-of-turn strings."""
        return setting.stop + tuple(s for s in stop_strings_for(self.tokenizer) if s not in setting.stop)

    def _generate_rows(self, batch: list[Row], settings: dict[int, Settings]) -> list[list[int]]:
        """Each row's generated token ids, by transformers' `generate`."""
        torch = self._torch
        prompts, prompt_ids, prompt_mask, select = self.prefiller.distinct_prompts(batch)
        setting = settings[batch[0].request]
        sampler = None
        if setting.temperature > 0:
            sampling = [(setting.temperature, setting.top_k, setting.top_p)] * len(batch)
            sampler = _make_row_sampler(torch, seed_keys(torch, [row.seed for row in batch], self.device), prompt_ids.shape[1], sampling, self.noise_dtype)
        with torch.inference_mode():
            return self._generate_with_hf(prompt_ids[select], prompt_mask[select], setting.max_new_tokens, sampler, self.stops(setting))


    # -- the model side of the scheduler (scheduler.Forward) ---------------------------------------

    def prefill(self, rows: list[Row]):
        return self.prefiller.rows(rows)

    def forward(self, ids, mask, cache):
        out = self.model(
            input_ids=ids[:, -1:],
            attention_mask=self.masks(mask, 1),
            position_ids=mask.sum(-1, keepdim=True) - 1,
            **{self._cache_name: cache if cache is not None else self.masks.cache()},
            use_cache=True,
            **self._extra,
        )
        return out.logits[:, -1, :].to(dtype=self._torch.float32), getattr(out, self._cache_name)

    def stopped(self, ids, stops: tuple[str, ...]):
        from transformers.generation.stopping_criteria import StopStringCriteria

        check = self._stop_checks.get(stops)
        if check is None:
            check = self._stop_checks[stops] = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(stops))
        return check(ids, None)

    def free_memory(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

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
            Row(i, j, 0, prompts[i], prefix.get(prompts[i], 0))
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

    def _score_rows(self, batch: list[Row], targets: list[tuple[int, ...]]) -> list[CandidateScore]:
        """One forward over each row's last prompt token and its answer, on the prompts' prefill."""
        torch = self._torch
        longest = max(len(t) for t in targets)
        if longest == 0:
            return [CandidateScore(0.0, 0) for _ in batch]
        prompts, prompt_ids, prompt_mask, select = self.prefiller.distinct_prompts(batch)
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
            cache = self.prefiller.shared(prompts, prompt_ids, prompt_mask, select) if self.share_prefill and width >= 2 else None
            start = width - 1 if cache is not None else 0
            outputs = self.model(
                input_ids=ids[:, start:-1],
                attention_mask=self.masks(mask[:, :-1], ids.shape[1] - 1 - start),
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
    # -- cleanup ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the model and tokenizer and give the device memory back."""
        if getattr(self, "model", None) is None:
            return
        self.model = None
        self.tokenizer = None
        self._original_generation_config = None
        self.prefiller.model = None
        self.prefiller.prefix_kv.clear()
        self._stop_checks.clear()
        self.free_memory()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

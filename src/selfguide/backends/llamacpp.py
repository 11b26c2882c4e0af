"""In-process llama.cpp through llama-cpp-python (the optional `llamacpp` extra), for GGUF models.

Design, in short:

* The prompt is the exact text training and the hf backend use: `selfguide.backends.chat.encode_prompt`
  with the transformers tokenizer that transformers builds from the same GGUF file's metadata
  (vocabulary, merges, chat template). Those token ids go to llama.cpp as they are. The first
  prompt is also tokenized by llama.cpp itself, and a disagreement is logged as a warning.
* llama.cpp computes the logits; the token is drawn here, with the hf backend's sampler
  (temperature, then top-k and top-p, then Gumbel-max over counter-based noise keyed by
  `row_seed(request seed, j)` and the step). So sample j of a request depends only on the request
  and j, and where llama.cpp's logits equal transformers' the samples are the same tokens.
  Quantized weights and other kernels move the logits, so in practice samples differ from the hf
  backend's on the hf conversion of the same GGUF.
* Prefix caching: llama.cpp keeps one sequence in its KV cache. Requests run in the sorted order
  of their prompt ids, so neighbours share the instruction and demos, and each prompt only
  evaluates the tokens after the longest prefix it shares with what the cache holds. The n samples
  of a request share one prompt evaluation: the KV cache is cut back to the prompt and the
  prompt's last logits are reused.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from selfguide.backends.base import FINETUNED_RULE, BackendInfo, Completion, Request, SamplingParams
from selfguide.backends.chat import encode_prompt, has_chat_template, render_prompt, stop_strings_for
from selfguide.errors import MissingDependencyError, SelfGuideError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'selfguide[llamacpp]'"


def resolve_gguf(name: str | Path) -> Path:
    """`name` as a .gguf file: the file itself, or the one .gguf file in a folder."""
    path = Path(name).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".gguf" and p.is_file())
        if len(files) != 1:
            found = ", ".join(p.name for p in files) or "none"
            raise SelfGuideError(f"model.name {name}: a folder for the llamacpp backend must hold exactly one .gguf file, found {found}")
        return files[0]
    if not path.is_file():
        raise SelfGuideError(f"model.name {name}: no such .gguf file (the llamacpp backend loads a local GGUF file or a folder holding one)")
    if path.suffix != ".gguf":
        raise SelfGuideError(f"model.name {name}: expected a .gguf file for the llamacpp backend")
    return path


def resolve_lora(adapter: str | Path, base: Path, workdir: Path) -> Path:
    """The adapter as a GGUF LoRA file: a .gguf file as it is, a PEFT LoRA folder converted."""
    path = Path(adapter).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    if not path.is_dir():
        raise SelfGuideError(f"model.adapter {adapter}: expected a PEFT LoRA folder or a GGUF LoRA file for the llamacpp backend")
    if not (path / "adapter_config.json").is_file():
        # A fully finetuned or merged model is a transformers folder, which llama.cpp cannot apply to the base GGUF.
        raise SelfGuideError(f"model.adapter {adapter}: the llamacpp backend applies LoRA adapters only; {FINETUNED_RULE}")
    from selfguide.backends.gguf_convert import write_lora_gguf

    return write_lora_gguf(path, base, workdir / "adapter.gguf")


def check_finetuned_on_llamacpp(trained: str | Path, base_gguf: str | Path) -> None:
    """Raise unless the finetuned model at `trained` (a PEFT LoRA folder or GGUF LoRA file) can be
    evaluated on the llamacpp backend on top of `base_gguf`, the model the prompting baseline used.
    Call it before evaluating a baseline on llamacpp: prompting and finetuned always share a backend."""
    with tempfile.TemporaryDirectory(prefix="selfguide-lora-") as workdir:
        resolve_lora(trained, resolve_gguf(base_gguf), Path(workdir))


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        raise MissingDependencyError(
            f"the llamacpp backend needs llama-cpp-python, which is not installed ({e}): {INSTALL_HINT}"
        ) from None
    return llama_cpp


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaCppBackend:
    """llama.cpp generation in this process. See the module docstring for the design."""

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
    ):
        llama_cpp = _import_llama_cpp()
        import torch
        from transformers import AutoTokenizer

        from selfguide.backends.fingerprint import fingerprint

        self._llama_cpp = llama_cpp
        self._torch = torch
        self.path = resolve_gguf(model)
        self._workdir = tempfile.TemporaryDirectory(prefix="selfguide-llamacpp-")
        lora = resolve_lora(adapter, self.path, Path(self._workdir.name)) if adapter else None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path.parent), gguf_file=self.path.name)
        except Exception as err:
            raise SelfGuideError(f"model.name {model}: transformers cannot build a tokenizer from this GGUF: {type(err).__name__}: {err}") from err
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=n_threads or torch.get_num_threads(),  # as many as torch computes with
                lora_path=str(lora) if lora else None,
                verbose=False,
            )
        except (ValueError, RuntimeError) as err:
            raise SelfGuideError(f"llama.cpp could not load {self.path}{f' with adapter {adapter}' if adapter else ''}: {err}") from err
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        # The ends the file declares (EOS, end of turn), as the hf backend stops at EOS. Not llama.cpp's
        # wider guess (every "</s>"-like token), so both backends stop at the same tokens.
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        declared = (self.tokenizer.eos_token_id, llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab))
        self._eos = {int(t) for t in declared if t is not None and 0 <= t < self.n_vocab}
        self._stops = stop_strings_for(self.tokenizer)
        self._lock = threading.Lock()  # one llama.cpp context: one request at a time
        self._checked_tokenization = False
        self.info = BackendInfo("llamacpp", str(model), fingerprint(str(self.path), adapter)[0], {"adapter": adapter, "gguf": str(self.path)})

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={str(self.path)!r})"

    # -- generation ------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Completion]]]:
        if self.llm is None:
            raise SelfGuideError("this llamacpp backend was closed")
        from selfguide.backends.hf import _validate  # the same checks and messages as the hf backend

        for index, request in enumerate(requests):
            _validate(request.params, index)
        prompts = [tuple(encode_prompt(self.tokenizer, list(r.messages))) for r in requests]
        if requests and not self._checked_tokenization:
            self._check_tokenization(list(requests[0].messages), prompts[0])
        # Sorted prompts put shared instructions and demos next to each other in the KV cache.
        for index in sorted(range(len(requests)), key=lambda i: (prompts[i], i)):
            params = requests[index].params
            if params.n == 0:
                yield index, []
                continue
            if params.max_new_tokens == 0:
                yield index, [Completion("", 0, len(prompts[index]), "length") for _ in range(params.n)]
                continue
            with self._lock:
                completions = self._run(prompts[index], params)
            yield index, completions

    def _run(self, prompt: tuple[int, ...], params: SamplingParams) -> list[Completion]:
        if not prompt:
            raise SelfGuideError("an empty prompt: the llamacpp backend needs at least one prompt token")
        if len(prompt) >= self.n_ctx:
            raise SelfGuideError(f"a prompt of {len(prompt)} tokens does not fit model.n_ctx={self.n_ctx}: raise model.n_ctx")
        first_logits = self._eval_prompt(prompt)
        greedy = params.temperature <= 0
        stops = tuple(s for s in params.stop if s) + tuple(s for s in self._stops if s not in params.stop)
        samples = []
        for j in range(1 if greedy else params.n):
            self.llm.n_tokens = len(prompt)  # drop the previous sample's tokens from the KV cache
            samples.append(self._sample(prompt, first_logits, params, j, stops))
        if greedy:  # every greedy sample is the same: compute one, copy it
            samples = [Completion(**samples[0].as_dict()) for _ in range(params.n)]
        return samples

    def _eval_prompt(self, prompt: tuple[int, ...]):
        """Evaluate what the KV cache does not hold yet; the logits after the prompt's last token."""
        import numpy as np

        held = self.llm.input_ids[: self.llm.n_tokens]
        keep = min(_common_prefix(held.tolist(), prompt), len(prompt) - 1)  # re-run >= 1 token for fresh logits
        self.llm.n_tokens = keep  # llama-cpp-python's eval() drops the KV cache beyond n_tokens
        self.llm.eval(prompt[keep:])
        return np.array(self._logits(), copy=True)

    def _logits(self):
        import numpy as np

        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def _sample(self, prompt, first_logits, params: SamplingParams, j: int, stops: tuple[str, ...]) -> Completion:
        torch = self._torch
        from selfguide.backends.hf import _make_sampler, row_seed

        budget = min(params.max_new_tokens, self.n_ctx - len(prompt))
        sampler = None
        if params.temperature > 0:
            seed = row_seed(params.seed, j)
            keys = torch.tensor([[seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF]], dtype=torch.int64)
            # The hf backend's sampler, fed the generated ids so far (start 0): step k draws the same way.
            sampler = _make_sampler(torch, keys, 0, params.temperature, params.top_k, params.top_p, torch.float64)
        longest_stop = max((len(s) for s in stops), default=0)
        ids: list[int] = []
        logits = first_logits
        while True:
            scores = torch.from_numpy(logits)[None, :]
            if sampler is None:
                token = int(torch.argmax(scores, dim=-1))
            else:
                token = int(torch.argmax(sampler(torch.tensor([ids], dtype=torch.int64), scores), dim=-1))
            if token in self._eos:
                return Completion(self._decode(ids), len(ids) + 1, len(prompt), "stop")
            ids.append(token)
            if stops:
                # A stop string of L characters lies within the last 4L tokens (a token is >= 1 byte).
                tail = self._decode(ids[-4 * longest_stop - 1 :])
                if any(s in tail for s in stops):
                    text = self._decode(ids)
                    cut = min((p for p in (text.find(s) for s in stops) if p >= 0), default=len(text))
                    return Completion(text[:cut], len(ids), len(prompt), "stop")
            if len(ids) >= budget:
                return Completion(self._decode(ids), len(ids), len(prompt), "length")
            self.llm.eval([token])
            logits = self._logits()

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _check_tokenization(self, messages, prompt: tuple[int, ...]) -> None:
        """Once per backend: does llama.cpp tokenize the rendered prompt as transformers does?"""
        self._checked_tokenization = True
        own = self.llama_tokenize(messages)
        if list(own) != list(prompt):
            log.warning(
                "llama.cpp tokenizes the prompt of %s differently from transformers' tokenizer of the same GGUF "
                "(%d vs %d tokens); the backend feeds transformers' ids, as training sees them",
                self.path.name, len(own), len(prompt),
            )

    def llama_tokenize(self, messages) -> list[int]:
        """llama.cpp's own token ids for `render_prompt(messages)` (BOS as `encode_prompt` adds it)."""
        text = render_prompt(self.tokenizer, messages)
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=not has_chat_template(self.tokenizer), special=True))

    # -- cleanup ---------------------------------------------------------------------------------

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        llm.close()
        self._workdir.cleanup()


__all__ = ["LlamaCppBackend", "check_finetuned_on_llamacpp", "resolve_gguf"]

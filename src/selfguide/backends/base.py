"""The one interface every model backend implements.

A backend takes a batch of requests (chat messages plus sampling settings) and yields, for each
request, `n` completions with token counts. Results may come back in any order and as soon as
each is ready, so the cache can store finished work before the rest of the batch is done.

Sampling must be reproducible per request: a request's completions depend only on its messages,
its settings and its `seed`, never on which other requests share its batch. That is what lets a
killed run resume from the cache and end with the same data as an uninterrupted one.

A backend may also score fixed candidate answers after a prompt (`score`): the log-probability
the model gives each candidate, for label scoring on classification tasks. Backends that cannot
(remote APIs, vLLM) raise SelfGuideError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from selfguide.errors import SelfGuideError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    max_new_tokens: int = 500
    n: int = 1
    stop: tuple[str, ...] = ()  # generation ends before the first occurrence of any of these
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    messages: tuple[Message, ...] | list[Message]
    params: SamplingParams


@dataclass
class Completion:
    text: str  # with the stop string (and anything after it) removed
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str = "stop"  # "stop" (EOS or stop string) or "length"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScoreRequest:
    messages: tuple[Message, ...] | list[Message]  # the conversation up to the answer
    candidates: tuple[str, ...]  # assistant answers to score


@dataclass
class CandidateScore:
    logprob: float  # sum of natural-log probabilities of the candidate's answer tokens
    tokens: int  # how many tokens were scored: the answer plus the closing end-of-turn/EOS

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BackendInfo:
    """What identifies the model behind a backend, for cache keys and run records."""

    backend: str  # "hf", "openai", "vllm"
    model: str  # hub id, local path, or served model name
    fingerprint: str  # changes when the weights (or adapter) change
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    info: BackendInfo

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (index into `requests`, its n completions) for every request, in any order."""
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[tuple[int, list[CandidateScore]]]:
        """Yield (index into `requests`, one score per candidate in order) for every request, in any
        order. A candidate's tokens are exactly those training puts after the prompt
        (`selfguide.backends.chat.render_answer`), the closing end-of-turn token included."""
        ...

    def close(self) -> None: ...


def label_scoring_unsupported(backend: str) -> SelfGuideError:
    """The error of a backend that cannot score fixed answers (it sees no token log-probabilities)."""
    return SelfGuideError(
        f"label scoring (scoring each label by its log-likelihood) needs the in-process hf backend; "
        f"the {backend} backend cannot score fixed answers: set model.backend=hf or turn label scoring off"
    )


# Why a finetuned model of the wrong kind is refused, and what to do instead.
FINETUNED_RULE = "after training, evaluate both prompting and finetuned with the hf backend"

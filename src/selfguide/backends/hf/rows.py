"""What the scheduler decodes: a request's sampling settings, and one row per sample."""

from __future__ import annotations

from dataclasses import dataclass

from selfguide.backends.base import SamplingParams
from selfguide.errors import SelfGuideError


@dataclass(frozen=True)
class Settings:
    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    stop: tuple[str, ...]

    @classmethod
    def of(cls, params: SamplingParams) -> Settings:
        stop = tuple(s for s in params.stop if s)
        if params.temperature <= 0:  # greedy: top-k / top-p do not matter
            return cls(0.0, 0, 1.0, int(params.max_new_tokens), stop)
        return cls(float(params.temperature), int(params.top_k), float(params.top_p), int(params.max_new_tokens), stop)


@dataclass(frozen=True)
class Row:
    request: int  # index into the caller's requests
    sample: int  # j, 0..n-1 (the candidate's index when scoring)
    seed: int
    prompt: tuple[int, ...]
    prefix: int = 0  # leading prompt tokens taken from a shared prefix cache
    alone: bool = False  # decoded in a batch row of its own, never shared with the request's other samples


def validate(params: SamplingParams, index: int) -> None:
    """Raise one error naming every bad setting of request `index`."""
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


"""What a stage says before it runs: the model calls it will make (the dry run)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Calls:
    """Model calls of one stage: `at_least` certain, `at_most` when the stage's size depends on
    what an earlier filter keeps (known once that stage has run), and generated tokens at most.
    One call is one request (its n samples included) or one scoring request."""

    at_least: int
    at_most: int
    tokens: int = 0

    @classmethod
    def exact(cls, calls: int, tokens: int = 0) -> Calls:
        return cls(calls, calls, tokens)

    def __add__(self, other: Calls) -> Calls:
        return Calls(self.at_least + other.at_least, self.at_most + other.at_most, self.tokens + other.tokens)


def total(plan: dict[str, Calls]) -> Calls:
    return sum(plan.values(), Calls(0, 0))

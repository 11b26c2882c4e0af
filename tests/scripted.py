"""A scripted backend: answers come from a Python function of (messages, params, sample index),
so tests know exactly which noise the filters and the vote must remove."""

from __future__ import annotations

from collections.abc import Callable

from selfguide.backends.base import BackendInfo, Completion, Message, SamplingParams
from selfguide.backends.cache import CachedModel, CallCache

Script = Callable[[list[Message], SamplingParams, int], str]


class ScriptedBackend:
    def __init__(self, script: Script, name: str = "scripted"):
        self.script = script
        self.info = BackendInfo("scripted", name, name)
        self.calls = 0

    def generate(self, requests):
        for i, request in enumerate(requests):
            self.calls += 1
            texts = [self.script(list(request.messages), request.params, j) for j in range(request.params.n)]
            yield i, [Completion(text=t, completion_tokens=len(t.split()), prompt_tokens=10) for t in texts]

    def close(self) -> None:
        pass


def scripted_model(script: Script, cache_path, name: str = "scripted") -> tuple[CachedModel, ScriptedBackend]:
    backend = ScriptedBackend(script, name)
    return CachedModel(backend.info, lambda: backend, CallCache(cache_path), progress=False), backend


def is_input_request(messages: list[Message]) -> bool:
    """Input-writing prompts are one user turn; annotation prompts start with the instruction as system."""
    return messages[0]["role"] == "user"

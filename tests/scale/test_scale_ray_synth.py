"""`model.executor: ray` over HTTP: synthesis through Ray Data LLM's HttpRequestProcessorConfig
against a local OpenAI-compatible server gives the dataset the openai backend gives, with the
same cache keys (Ray is only the transport)."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from tests.conftest import run_cli
from tests.fakeopenai import fake_openai
from tests.test_harden import write_task

from selfguide.backends.openai_backend import sample_seed

pytest.importorskip("ray")


def reply(body: dict, j: int) -> str:
    """A server whose sample j of a request with seed s is its one sample under sample_seed(s, j):
    what a request's n samples are, asked at once (openai backend) or one row each (Ray)."""
    seed = sample_seed(body.get("seed", 0), j)
    if body["messages"][0]["role"] == "user":  # writing an input
        return f"Review {seed % 5}: a {('slow', 'bright', 'long', 'warm')[seed % 4]} film."
    digest = hashlib.sha256(f"{body['messages'][-1]['content']}|{seed}".encode()).digest()
    return ("positive", "negative")[digest[0] % 2 if digest[1] % 3 else 0]  # mostly agreeing labels


def keys(cache) -> set[str]:
    with sqlite3.connect(cache) as db:
        return {key for (key,) in db.execute("SELECT key FROM calls")}


def test_http_synthesis_on_ray_gives_the_openai_backends_dataset(tmp_path, capsys, monkeypatch, ray_cluster):
    task = write_task(tmp_path)
    runs = {}
    with fake_openai(reply=reply) as (fake, url):
        for executor in ("local", "ray"):
            out = tmp_path / executor
            args = ["synthesize", str(task), "-m", "fake-model", "--backend", "openai", "--base-url", url, "-o", str(out), "--quiet",
                    "--set", "synth.inputs.rounds=2", "--set", "synth.outputs.n=3", "--set", f"model.executor={executor}", "--set", "model.replicas=2"]  # fmt: skip
            code, _, err = run_cli(args, capsys, monkeypatch)
            assert code == 0, err
            runs[executor] = (out / "synth" / "dataset.jsonl").read_text(), keys(out / "cache.sqlite")
    assert runs["ray"] == runs["local"] and runs["local"][0].count("\n") > 0

    # A request the server refuses is an error row: the call fails as on the openai backend (one
    # line, exit 2), and the requests answered beside it are cached.
    with fake_openai(reply=reply, faults=["400"]) as (fake, url):
        out = tmp_path / "refused"
        args = ["synthesize", str(task), "-m", "fake-model", "--backend", "openai", "--base-url", url, "-o", str(out), "--quiet", "--set", "model.executor=ray"]
        code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and "failed on Ray" in err and "injected bad request" in err and "Traceback" not in err
    assert 0 < len(keys(out / "cache.sqlite")) < fake.chat_requests

"""Issue 11: run folders stay inside runs/, one process per run folder, credentials never on
disk, servers that fail or change are noticed, and a fair, same-stack comparison on servers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.conftest import REPO, run_cli
from tests.fakeopenai import fake_openai
from tests.servers import free_port

from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.cache import CallCache, request_key
from selfguide.backends.factory import backend_info, cached_model
from selfguide.backends.model_config import ModelConfig
from selfguide.backends.openai_backend import OpenAIBackend
from selfguide.config import RunConfig, config_yaml, load_config
from selfguide.errors import SelfGuideError

TASK = """name: {name}
instruction: Say whether the review is positive or negative.
examples:
  - {{input: "A joy from start to finish.", output: positive}}
  - {{input: "Two hours I will never get back.", output: negative}}
labels: [positive, negative]
eval: eval.jsonl
"""
EVAL = "".join(json.dumps({"input": f"Review {i}: {'great' if i % 2 else 'dull'} film.", "output": "positive" if i % 2 else "negative"}) + "\n" for i in range(6))
FAST = ["--set", "model.retry_backoff=0.01", "--set", "model.max_retries=2", "--set", "model.health_timeout=2"]


def write_task(folder: Path, name: str = "sentiment") -> Path:
    (folder / "eval.jsonl").write_text(EVAL)
    path = folder / "task.yaml"
    path.write_text(TASK.format(name=json.dumps(name)))
    return path


def one_request(seed: int = 0) -> list[Request]:
    return [Request([{"role": "user", "content": "hi"}], SamplingParams(temperature=0.0, max_new_tokens=4, seed=seed))]


# ----- settings -----


def test_load_config_merges_the_file_over_base(tmp_path):
    base = RunConfig.model_validate({"model": {"name": "m", "concurrency": 3}, "synth": {"outputs": {"n": 7}}})
    (tmp_path / "c.yaml").write_text("synth:\n  outputs:\n    temperature: 0.5\n")
    config = load_config(tmp_path / "c.yaml", base=base)
    assert config.model.name == "m" and config.model.concurrency == 3
    assert config.synth.outputs.n == 7 and config.synth.outputs.temperature == 0.5


# ----- run folders -----


@pytest.mark.parametrize("name, folder", [("../../x", "x"), ("/etc/passwd", "etc-passwd"), ("..", "task"), ("a/b\\c d", "a-b-c-d"), ("task036", "task036")])
def test_task_names_become_safe_folder_names(name, folder):
    from selfguide.runfolder import safe_folder_name

    assert safe_folder_name(name) == folder


def test_task_name_cannot_write_outside_runs(tmp_path, capsys, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    task = write_task(work, "../../escaped")
    monkeypatch.chdir(work)
    code, _, err = run_cli(["synthesize", str(task), "-m", "m", "--backend", "openai", "--base-url", f"http://127.0.0.1:{free_port()}/v1", *FAST], capsys, monkeypatch)
    assert code == 2 and "not reachable" in err  # it got as far as the server
    assert (work / "runs" / "escaped" / "config.yaml").is_file()
    assert not (tmp_path / "escaped").exists()


def test_a_second_process_on_a_run_folder_stops_or_waits(tmp_path, capsys, monkeypatch):
    from selfguide.runlock import hold_run_folder

    task = write_task(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    args = ["synthesize", str(task), "-m", "m", "--backend", "openai", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "-o", str(out), *FAST]
    with hold_run_folder(out):
        code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and "in use by another selfguide process" in err and "--wait" in err and f"pid {os.getpid()}" in err

    # --wait: blocks until the holder is done, then goes on (here, to the dead server).
    release = threading.Event()

    def hold():
        with hold_run_folder(out):
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.3)
    threading.Timer(0.7, release.set).start()
    started = time.monotonic()
    code, _, err = run_cli(args + ["--wait"], capsys, monkeypatch)
    holder.join()
    assert code == 2 and "not reachable" in err and time.monotonic() - started >= 0.5


def test_the_lock_dies_with_its_process(tmp_path):
    """kill -9 leaves no stale lock: the OS drops it with the process."""
    from selfguide.runlock import hold_run_folder

    script = f"from pathlib import Path; from selfguide.runlock import hold_run_folder\nwith hold_run_folder(Path({str(tmp_path)!r})):\n    print('held', flush=True); import time; time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    with pytest.raises(SelfGuideError, match="in use"):
        with hold_run_folder(tmp_path):
            pass
    process.kill()
    process.wait()
    with hold_run_folder(tmp_path):
        pass


# ----- credentials -----


def test_config_yaml_redacts_url_credentials():
    config = RunConfig.model_validate({"model": {"backend": "openai", "base_url": "http://me:s3cr3t@host:8000/v1"}})
    text = config_yaml(config)
    assert "s3cr3t" not in text and "me:s3" not in text and "http://***@host:8000/v1" in text


def test_basic_auth_only_when_chosen_and_never_shown(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with fake_openai() as (fake, url):
        secret_url = url.replace("http://", "http://me:s3cr3t@")
        with pytest.raises(SelfGuideError, match="model.auth") as refused:
            OpenAIBackend("fake-model", base_url=secret_url)
        assert "s3cr3t" not in str(refused.value)
        backend = OpenAIBackend("fake-model", base_url=secret_url, auth="basic", send_top_k=False)
        assert "s3cr3t" not in repr(backend) + backend.base_url + json.dumps(backend.info.extra)
        list(backend.generate(one_request()))
    assert fake.headers[-1]["authorization"] == "Basic bWU6czNjcjN0"  # base64("me:s3cr3t")


# ----- servers -----


def test_malformed_replies_are_retried(monkeypatch):
    with fake_openai(faults=["badjson", "nochoices"]) as (fake, url):
        backend = OpenAIBackend("fake-model", base_url=url, send_top_k=False, max_retries=3, backoff_base=0.01)
        results = dict(backend.generate(one_request()))
    assert results[0][0].text == "positive"
    assert fake.chat_requests == 3 and backend.stats["retries"] == 2


def test_a_dead_or_silent_server_is_found_at_start():
    from selfguide.backends.openai_backend import served_model_entry

    started = time.monotonic()
    with pytest.raises(SelfGuideError, match="not reachable") as dead:
        served_model_entry("m", base_url=f"http://127.0.0.1:{free_port()}/v1")
    assert "/v1/models" in str(dead.value) and time.monotonic() - started < 5
    with fake_openai(hang_models=True) as (_, url):
        started = time.monotonic()
        with pytest.raises(SelfGuideError, match="no answer within 0.5s"):
            served_model_entry("m", base_url=url, timeout=0.5)
        assert time.monotonic() - started < 5


HANGING_CLIENT = """
import faulthandler, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for every thread's stack if exit hangs
# Ctrl-C as in a terminal: a test run started in the background by a shell without job control
# inherits an ignored SIGINT, and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
from selfguide.backends.base import Request, SamplingParams
from selfguide.backends.openai_backend import OpenAIBackend
requests = [Request([{"role": "user", "content": str(i)}], SamplingParams(seed=i)) for i in range(4)]
backend = OpenAIBackend("fake-model", base_url=sys.argv[1], send_top_k=False, concurrency=4, timeout=60)
print("started", flush=True)
try:
    list(backend.generate(requests))
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("stop", ["fatal error", "ctrl-c"])
def test_stopping_does_not_wait_for_requests_in_flight(stop):
    faults = ["hang", "hang", "hang", "400"] if stop == "fatal error" else ["hang"] * 4
    with fake_openai(faults=faults) as (fake, url):
        process = subprocess.Popen([sys.executable, "-c", HANGING_CLIENT, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 20
        while fake.chat_requests < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        if stop == "ctrl-c":
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            process.kill()
            pytest.fail(f"still running 30s after the {stop}; its threads:\n{process.communicate()[1][-6000:]}")
        took = time.monotonic() - started
    assert took < 5, f"exit took {took:.1f}s after the {stop}"
    assert process.returncode != 0


def test_a_swapped_server_model_gets_new_cache_keys_and_a_warning(tmp_path, caplog):
    config = ModelConfig(name="fake-model", backend="openai")
    with fake_openai(models=[{"id": "fake-model", "created": 1, "root": "/weights/a", "owned_by": "vllm"}]) as (fake, url):
        config.base_url = url
        first = backend_info(config)
        fake.models[0]["created"] = 2  # vLLM stamps the time on every listing: not a change
        assert backend_info(config).fingerprint == first.fingerprint
        cache = CallCache(tmp_path / "cache.sqlite")
        cached_model(config, cache)
        fake.models[0]["root"] = "/weights/b"
        with caplog.at_level(logging.WARNING):
            swapped = cached_model(config, cache)
        cache.close()
    assert swapped.info.fingerprint != first.fingerprint
    assert request_key(swapped.info, one_request()[0]) != request_key(first, one_request()[0])
    assert any("different model" in r.getMessage() for r in caplog.records)


def test_system_fingerprint_change_is_warned(caplog):
    with fake_openai(system_fingerprint="fp-1") as (fake, url):
        backend = OpenAIBackend("fake-model", base_url=url, send_top_k=False)
        list(backend.generate(one_request(0)))
        fake.system_fingerprint = "fp-2"
        with caplog.at_level(logging.WARNING):
            list(backend.generate(one_request(1)))
    assert any("fp-2" in r.getMessage() and "fp-1" in r.getMessage() for r in caplog.records)


def test_a_local_folder_is_one_model_whatever_the_path(tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    relative = backend_info(ModelConfig(name=f"./{tiny_model_dir.name}/"))
    absolute = backend_info(ModelConfig(name=str(tiny_model_dir)))
    assert request_key(relative, one_request()[0]) == request_key(absolute, one_request()[0])


# ----- training -----


def test_changed_data_in_a_finished_run_folder_trains_again(tiny_model_dir, tmp_path):
    from selfguide.tasks.load import load_task
    from selfguide.train.config import TrainConfig
    from selfguide.train.sft import train

    task = load_task(write_task(tmp_path))
    config = TrainConfig(epochs=1, gradient_checkpointing=False)
    train(task, [("Great fun.", "positive")], str(tiny_model_dir), tmp_path / "train", config, progress=False)
    result = train(task, [("Dull.", "negative"), ("Fun.", "positive")], str(tiny_model_dir), tmp_path / "train", config, progress=False)
    assert result.n_train == 2 and result.steps == 2


# ----- a fair comparison on a server -----


def fake_model_reply(body: dict, j: int) -> str:
    messages = body["messages"]
    last = messages[-1]["content"]
    if messages[0]["role"] == "user":  # writing a new input
        mood = "dull and slow" if "negative" in last.split("answer for it is:")[-1] else "great and warm"
        return f"Review {body.get('seed')}-{j}: a {mood} film."
    return "positive" if "great" in last or "joy" in last else "negative"


def test_run_on_a_server_compares_on_one_stack_and_keeps_every_invocation(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from selfguide.ledger import read_invocations

    task = write_task(tmp_path)
    out = tmp_path / "run"
    with fake_openai(reply=fake_model_reply) as (fake, url):
        args = ["run", str(task), "-m", "fake-model", "--backend", "openai", "--base-url", url, "-o", str(out), "-q",
                "--config", str(REPO / "configs" / "tiny.yaml"), "--set", f"train.model={tiny_model_dir}", "--set", "model.send_top_k=false",
                "--set", "synth.inputs.rounds=1", "--set", "synth.outputs.n=3"]
        code, printed, err = run_cli(args, capsys, monkeypatch)
        assert code == 0, err
        again, printed_again, _ = run_cli(args, capsys, monkeypatch)
    assert again == 0
    lines = printed.splitlines()
    assert any(line.startswith("prompting ") and "[transformers in-process]" in line for line in lines)
    assert any(line.startswith("self-guide ") and "[transformers in-process]" in line for line in lines)
    assert any(line.startswith("prompting on the server") and f"[server {url}" in line for line in lines)
    assert (out / "eval" / "prompting-server" / "metrics.json").is_file()
    stacks = json.loads((out / "stacks.json").read_text())
    assert stacks["prompting"] == stacks["finetuned"] == "transformers in-process"
    # Both invocations are on record with their calls, and the report shows them with a total.
    invocations = read_invocations(out)
    assert [row["command"] for row in invocations] == ["run", "run"]
    assert invocations[0]["model_calls"]["calls"] > 0 and invocations[1]["model_calls"]["calls"] == 0
    summary = json.loads((out / "synth" / "summary.json").read_text())
    first, second = summary["model_calls_by_invocation"]
    assert first["calls"] > 0 and second["calls"] == 0 and summary["model_calls_total"]["calls"] == first["calls"]
    report = (out / "report.md").read_text()
    assert "Invocations" in report and "2 invocations" in report


# ----- a full disk -----


def test_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import errno
    import sqlite3

    import selfguide.api

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(selfguide.api, "write_text", full)
    code, _, err = run_cli(["synthesize", str(write_task(tmp_path)), "-m", "m", "-o", str(tmp_path / "run")], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "config.yaml" in err and "free space" in err and "Traceback" not in err

    cache = CallCache(tmp_path / "cache.sqlite")

    class FullDisk:
        def execute(self, *args):
            raise sqlite3.OperationalError("database or disk is full")

        def close(self):
            pass

    cache._db = FullDisk()
    with pytest.raises(SelfGuideError, match="disk full") as raised:
        cache.put("k", "m", one_request()[0], [])
    assert str(tmp_path / "cache.sqlite") in str(raised.value) and "rerun" in str(raised.value)

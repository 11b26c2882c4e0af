"""Checks a command makes before any work: what would otherwise fail minutes in (after a GGUF is
dequantised, a model loaded, a folder made) fails first, naming the flag that gave it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

from selfguide.config import RunConfig
from selfguide.errors import BadInputError, MissingDependencyError, SelfGuideError
from selfguide.stages.write_inputs import read_input_file

# The flags that set each model's settings, for messages.
FLAGS = {"model": ("--model", "--backend", "--base-url"), "teacher": ("--teacher", "--teacher-backend", "--teacher-base-url")}


def check_run_config(config: RunConfig, *, serve_check: bool = True) -> None:
    """Refuse a config that cannot run, before anything is loaded, converted or written."""
    for section in ("model", "teacher"):
        model = getattr(config, section)
        if model is None:
            continue
        name_flag, backend_flag, url_flag = FLAGS[section]
        if model.backend == "llamacpp" and importlib.util.find_spec("llama_cpp") is None:
            raise MissingDependencyError(f"{backend_flag} llamacpp needs llama-cpp-python: pip install 'selfguide[llamacpp]'")
        if model.base_url:
            check_url(model.base_url, url_flag)
        if model.backend != "openai" and looks_like_path(model.name) and not Path(model.name).expanduser().exists():
            raise BadInputError(name_flag, describe_path(model.name), "an existing model folder or .gguf file, or a Hub id (user/name)", "no such file or folder")
        if section == "teacher" and model.backend == "openai" and model.base_url and serve_check:
            check_teacher_server(model)
    inputs = getattr(config.synth, "inputs", None)
    if getattr(inputs, "file", None):
        read_input_file(inputs.file)  # every line, so a bad one fails now, not after the model loads
    data = config.model_dump(mode="json")
    writer = config.teacher or config.model
    for section, model in (("synth", writer), ("eval", config.model)):
        check_new_tokens(data[section], section, model.name if model.backend in ("hf", "vllm") else "")


def check_new_tokens(data: object, where: str, model_name: str) -> None:
    """Every `max_new_tokens` under `where` fits the local model's context window (an allocation
    error deep in generation otherwise)."""
    context = model_context(model_name)
    if context is None or not isinstance(data, dict):
        return
    for key, value in data.items():
        if key == "max_new_tokens" and isinstance(value, int) and value >= context:
            raise BadInputError(f"{where}.{key}", str(value), f"fewer new tokens than the model's context of {context} (max_position_embeddings)")
        check_new_tokens(value, f"{where}.{key}", model_name)


def model_context(name: str) -> int | None:
    """A local model folder's context window, from its config.json; None when unknown."""
    import json

    path = Path(name).expanduser() / "config.json" if name else None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_position_embeddings") if path and path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def looks_like_path(name: str) -> bool:
    """A local path rather than a Hub id or served name: starts like a path or names a GGUF file."""
    return bool(name) and (name.startswith((".", "/", "~")) or name.endswith(".gguf") or name.count("/") > 1)


def describe_path(name: str) -> str:
    return name if len(name) <= 200 else name[:197] + "..."


def check_url(url: str, flag: str) -> None:
    """An http(s) URL with a host, and a port that is a number (urllib's own errors, e.g. a bad
    IPv6 literal, would otherwise surface as a traceback from deep inside the HTTP client)."""
    from selfguide.redact import redact_url

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is no number)
    except ValueError as err:
        raise BadInputError(flag, redact_url(url)[:200], "an http(s) URL such as http://127.0.0.1:8000/v1", str(err)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(flag, redact_url(url)[:200], "an http(s) URL such as http://127.0.0.1:8000/v1")


def check_teacher_server(model) -> None:
    """The teacher's server answers: the backend's own check names --base-url, the student's flag."""
    from selfguide.backends.openai_backend import served_model_entry

    try:
        served_model_entry(model.name, base_url=model.base_url, api_key_env=model.api_key_env, auth=model.auth, timeout=model.health_timeout)
    except SelfGuideError as err:
        raise SelfGuideError(str(err).replace("--base-url", "--teacher-base-url")) from None

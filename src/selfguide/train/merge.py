"""Fold a trained LoRA adapter into its base model: a plain model folder that any stack loads."""

from __future__ import annotations

from pathlib import Path

from selfguide import global_rng
from selfguide.errors import SelfGuideError


def merge_adapter(base_model: str, adapter_dir: Path, out_dir: Path) -> Path:
    """Fold a LoRA adapter into its base model and save a plain model folder (with tokenizer) to `out_dir`.

    The merge runs in fp32; the result is saved in the base model's own dtype.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise SelfGuideError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
    base_dtype = getattr(AutoConfig.from_pretrained(base_model), "dtype", None)
    if isinstance(base_dtype, str):
        base_dtype = getattr(torch, base_dtype, None)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    with global_rng.LOCK:  # PEFT draws on the global generator as it builds the adapter (selfguide/global_rng.py)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    if isinstance(base_dtype, torch.dtype) and base_dtype.is_floating_point:
        merged = merged.to(base_dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer_source = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_model
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(out_dir)
    return out_dir

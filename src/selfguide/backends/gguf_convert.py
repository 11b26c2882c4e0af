"""Llama-architecture models and their PEFT LoRA adapters written as GGUF, for the llamacpp backend.

Two writers, both with the `gguf` package (the `llamacpp` extra):

* `write_llama_gguf`: a transformers Llama folder (weights, byte-level BPE tokenizer, chat template)
  as one GGUF file in float32 or float16. Tests use it to turn the tiny local model into a GGUF.
* `write_lora_gguf`: a PEFT LoRA adapter as a GGUF LoRA adapter, which llama.cpp applies on top of
  the very GGUF the prompting baseline used (quantized or not), so prompting and finetuned are
  evaluated on the same backend and the same base weights.

llama.cpp's rotary embedding expects the rows of q_proj and k_proj in a different order from
transformers ("permuted"), exactly as llama.cpp's own convert_hf_to_gguf.py writes them; for a
LoRA delta B @ A only B's rows move.
"""

from __future__ import annotations

import json
from pathlib import Path

from selfguide.errors import MissingDependencyError, SelfGuideError

INSTALL_HINT = "pip install 'selfguide[llamacpp]'"
# PEFT target modules llama.cpp's llama graph can apply a LoRA to, by their GGUF tensor name.
LORA_TARGETS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
TOKEN_CONTROL, TOKEN_NORMAL = 3, 1  # llama.cpp token types


def _gguf():
    try:
        import gguf
    except ImportError as e:
        raise MissingDependencyError(f"writing GGUF files needs the gguf package ({e}): {INSTALL_HINT}") from None
    return gguf


def permute_rows(weights, n_head: int):
    """transformers' q/k row order -> llama.cpp's (rotary halves interleaved per head)."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def write_llama_gguf(model_dir: str | Path, out_path: str | Path, *, dtype: str = "float32") -> Path:
    """A transformers LlamaForCausalLM folder with a byte-level BPE tokenizer as one GGUF file."""
    gguf = _gguf()
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    model_dir, out_path = Path(model_dir), Path(out_path)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise SelfGuideError(f"{model_dir}: only Llama-architecture models can be written as GGUF here, got {config.get('model_type')!r}")
    float_type = {"float32": np.float32, "float16": np.float16}[dtype]
    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    layers = config["num_hidden_layers"]

    writer = gguf.GGUFWriter(out_path, "llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float((config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "float32" else gguf.LlamaFileType.MOSTLY_F16)
    _add_tokenizer(gguf, writer, AutoTokenizer.from_pretrained(model_dir), config["vocab_size"])

    tensors: dict = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(path))
    if "lm_head.weight" not in tensors and config.get("tie_word_embeddings"):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    for name, data in tensors.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise SelfGuideError(f"{model_dir}: no GGUF name for tensor {name}")
        if name.endswith("q_proj.weight"):
            data = permute_rows(data, n_head)
        elif name.endswith("k_proj.weight"):
            data = permute_rows(data, n_kv)
        # Norms stay float32, as llama.cpp's converter keeps every 1-D tensor.
        writer.add_tensor(gguf_name, data.astype(np.float32 if data.ndim == 1 else float_type))
    _write(writer)
    return out_path


def _add_tokenizer(gguf, writer, tokenizer, vocab_size: int) -> None:
    """The tokenizer as llama.cpp's "gpt2" (byte-level BPE) vocabulary, merges and special ids."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE":
        raise SelfGuideError(f"only byte-level BPE tokenizers can be written as GGUF here, got {backend['model']['type']}")
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    special = {added["id"] for added in backend.get("added_tokens", []) if added.get("special")}
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(vocab_size)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # llama.cpp's name for the GPT-2 split regex
    writer.add_token_list(tokens)
    writer.add_token_types([TOKEN_CONTROL if i in special or i not in by_id else TOKEN_NORMAL for i in range(vocab_size)])
    merges = backend["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for token_id, add in (
        (tokenizer.bos_token_id, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)  # the chat template writes BOS itself, as transformers renders it
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def gguf_heads(gguf_path: str | Path) -> tuple[str, int, int]:
    """(architecture, attention heads, key/value heads) of a GGUF model file."""
    gguf = _gguf()
    reader = gguf.GGUFReader(gguf_path)
    arch = reader.fields["general.architecture"].contents()
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
    return arch, n_head, int(kv_field.contents()) if kv_field is not None else n_head


def write_lora_gguf(adapter_dir: str | Path, base_gguf: str | Path, out_path: str | Path) -> Path:
    """A PEFT LoRA adapter folder as a GGUF LoRA adapter for the Llama GGUF `base_gguf`."""
    gguf = _gguf()
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise SelfGuideError(f"{adapter_dir}: not a PEFT adapter folder (adapter_config.json and adapter_model.safetensors expected)")
    config = json.loads(config_path.read_text())
    arch, n_head, n_kv = gguf_heads(base_gguf)
    unsupported = [
        f"{key}={config.get(key)!r}"
        for key, fine in (("peft_type", "LORA"), ("use_rslora", False), ("use_dora", False))
        if config.get(key, fine) != fine
    ]
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        unsupported.append("rank_pattern/alpha_pattern")
    if arch != "llama" or unsupported:
        raise SelfGuideError(
            f"{adapter_dir}: the llamacpp backend applies plain LoRA adapters to Llama GGUF models only "
            f"(got architecture {arch!r}{', ' + ', '.join(unsupported) if unsupported else ''}); "
            "after training, evaluate both prompting and finetuned with the hf backend"
        )

    tensors = load_file(weights_path)
    writer = gguf.GGUFWriter(out_path, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    # llama.cpp scales the delta by alpha / rank, as PEFT does.
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config.get("lora_alpha", config.get("r", 8))))
    for name in sorted(tensors):
        if ".lora_B." in name:
            continue
        if ".lora_A." not in name:
            raise SelfGuideError(f"{adapter_dir}: tensor {name} is not a LoRA A/B matrix (trained embeddings or heads cannot go to GGUF here)")
        prefix = name.split(".lora_A.")[0]  # base_model.model.model.layers.3.self_attn.q_proj
        parts = prefix.split(".layers.")
        module = parts[1].split(".", 1)[1] if len(parts) == 2 else ""
        if module not in LORA_TARGETS:
            raise SelfGuideError(
                f"{adapter_dir}: LoRA on {prefix} cannot be applied by llama.cpp here (targets: {', '.join(LORA_TARGETS)}); "
                "after training, evaluate both prompting and finetuned with the hf backend"
            )
        layer = int(parts[1].split(".", 1)[0])
        lora_a = tensors[name].astype(np.float32)  # (rank, in)
        lora_b = tensors[name.replace(".lora_A.", ".lora_B.")].astype(np.float32)  # (out, rank)
        if module == "self_attn.q_proj":
            lora_b = permute_rows(lora_b, n_head)
        elif module == "self_attn.k_proj":
            lora_b = permute_rows(lora_b, n_kv)
        base = f"blk.{layer}.{LORA_TARGETS[module]}.weight"
        writer.add_tensor(base + ".lora_a", np.ascontiguousarray(lora_a))
        writer.add_tensor(base + ".lora_b", np.ascontiguousarray(lora_b))
    _write(writer)
    return out_path


def _write(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

"""Tiny random models (Llama by default, or another popular architecture) with a locally trained
tokenizer, for offline try-outs and tests.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on a small built-in
corpus, the weights are random. The folder loads through the ordinary `from_pretrained` path,
like any hub model, so every selfguide command runs against it on a CPU in seconds.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# Roles as headers, turns closed by <|end|>, which is also EOS: generation stops at the end of a turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

WORDS = (
    "the a an of to and in is it that for on with as was by at be this are from or have not but what all "
    "were when we there can more if no out so said up its about into than them only other new some could "
    "time these two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each just those people "
    "how too little state good very make world still own see men work long get here between both life being "
    "under never day same another know while last might us great old year off come since against go came right "
    "used take three question answer sentence fact word premise hypothesis entailment neutral contradiction "
    "yes no true false positive negative support undermine input output example label task text"
).split()


def training_corpus(seed: int = 0, lines: int = 2000) -> list[str]:
    rng = random.Random(seed)
    corpus = [string.ascii_letters, string.digits, string.punctuation]
    for _ in range(lines):
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        corpus.append(sentence.capitalize() + rng.choice([".", "?", "!", ",", ":"]))
    return corpus


def build_tokenizer(vocab_size: int = 512, seed: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(training_corpus(seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="<|end|>", unk_token=None, pad_token="<pad>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# Architectures `build_tiny_model` can write: transformers config class, model class, and what sets
# each apart from Llama (besides its own layer code): sliding windows, hybrid layers, fused projections.
SLIDING_WINDOW = 16  # tokens: shorter than most test prompts, so the window is really used
ARCHITECTURES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),  # q/k norms, explicit head_dim
    # Local and global layers alternating, logits soft-capped, embeddings scaled by sqrt(hidden).
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": SLIDING_WINDOW, "layer_types": ["sliding_attention", "full_attention"]},
    ),
    # Gemma 3 text: sliding-window layers, then a global one (5:1 in the real models).
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": SLIDING_WINDOW,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
        },
    ),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": SLIDING_WINDOW}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),  # fused qkv_proj and gate_up_proj
}


def build_tiny_model(
    out_dir: str | Path,
    *,
    architecture: str = "llama",
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab_size: int = 512,
    initializer_range: float = 0.2,
    chat_template: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny random model of `architecture` (a key of ARCHITECTURES) and its tokenizer to
    `out_dir` and return the folder. Hybrid architectures repeat their layer pattern over `layers`,
    and get at least one whole pattern (Gemma 3: two sliding-window layers, then a global one).

    A wider `initializer_range` than usual makes the random model's next-token distribution
    peaked, so low-temperature samples agree often enough for the vote to keep some outputs.
    """
    import torch
    import transformers

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: one of {', '.join(ARCHITECTURES)}")
    config_name, model_name, special = ARCHITECTURES[architecture]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size, seed)
    if not chat_template:
        tokenizer.chat_template = None
    torch.manual_seed(seed)
    special = dict(special)
    pattern = special.pop("layer_types", None)
    if pattern:  # the pattern repeated over the layers, at least once whole
        layers = max(layers, len(pattern))
        special["layer_types"] = [pattern[i % len(pattern)] for i in range(layers)]
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=8192,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **special,
    )
    model = getattr(transformers, model_name)(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

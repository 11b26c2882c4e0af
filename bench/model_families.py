"""Per-stage speed of two model families against their FLOP limit, in one process: SmolLM2-135M
(the default model, Llama) and a model at Gemma 3 270M's real dimensions with random weights.

    python bench/model_families.py                                   # task1622, CPU, modest sizes
    python bench/model_families.py --items 40 --inputs 8 --new-tokens 32 --dtype bfloat16

Speed does not depend on the weights, so the Gemma-sized model is random (`Gemma3ForCausalLM`:
vocabulary 262,144, hidden 640, intermediate 2,048, 18 layers of 5 sliding-window layers (window
512) then 1 global, 4 heads, 1 KV head, head_dim 256, tied embeddings), and reads SmolLM2's
token ids (all below 49,152, so in range): both models see the same prompts, token for token.
Every request generates exactly `--new-tokens` tokens (EOS and stop strings are off), so the
answer-length ratio is 1.

Two stages over one task's eval inputs, as the pipeline sends them:

* evaluation: `--items` greedy requests (`eval_requests`);
* annotation: `--inputs` requests of n samples at the annotation defaults (`annotation_requests`).

The Gemma-sized model runs twice: "before", as the decoder ran before sliding-window layers were
masked by position (the model's own hybrid cache, which cannot be reused, joined or forked: whole
prompts, batch by batch, a row per sample), and "after" (prefix reuse, refill and sample sharing
on). Printed per stage and run: seconds, generated tokens/s, the time over SmolLM2's, the FLOP
ratio (forward FLOPs per token at the stage's mean context, Gemma over SmolLM2), and the time
ratio over the FLOP ratio: issue 23's target is at most 1.2. Model building, loading and a
warm-up call are not timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from selfguide.backends.base import Request
from selfguide.backends.hf import HFBackend
from selfguide.eval.evaluate import eval_requests
from selfguide.model_source import default_model
from selfguide.stages.annotate import OutputGenConfig, annotation_requests
from selfguide.tasks.load import load_task

GEMMA3_270M = dict(
    vocab_size=262_144,
    hidden_size=640,
    intermediate_size=2048,
    num_hidden_layers=18,
    layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
    sliding_window=512,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    tie_word_embeddings=True,
    max_position_embeddings=32_768,
)


def gemma_sized_model(tokenizer_source: str, out: Path) -> Path:
    """A random Gemma3ForCausalLM at 270M's dimensions with `tokenizer_source`'s tokenizer, written to `out`."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(Gemma3TextConfig(**GEMMA3_270M, **special))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def flops_per_token(config, context: float) -> float:
    """Forward FLOPs of one token that sees `context` tokens: 2 per weight of every matmul (the
    LM head included, tied or not) plus attention's scores and weighted sum over the keys it sees."""
    config = config.get_text_config(decoder=True)
    hidden, layers = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    weights = layers * (hidden * q + 2 * hidden * kv + q * hidden + 3 * hidden * config.intermediate_size) + hidden * config.vocab_size
    types = getattr(config, "layer_types", None) or ["full_attention"] * layers
    window = getattr(config, "sliding_window", None) or context
    seen = sum(min(context, window) if kind == "sliding_attention" else context for kind in types)
    return 2 * weights + 4 * q * seen


def fixed_length(requests: list[Request], new_tokens: int) -> list[Request]:
    from dataclasses import replace

    return [replace(r, params=replace(r.params, max_new_tokens=new_tokens, stop=())) for r in requests]


def never_stopping(backend: HFBackend) -> HFBackend:
    """Rows run to their token limit: no EOS id, no end-of-turn stop strings."""
    backend.eos = torch.tensor([-1], device=backend.device)
    backend.stops = lambda setting: ()
    return backend


def as_before(backend: HFBackend) -> HFBackend:
    """The decoder before sliding windows were masked by position: the model's own caches and masks."""
    backend.masks.window = None
    backend.reuse_prefix = False
    return backend


def run_stage(backend: HFBackend, requests: list[Request]) -> tuple[float, int, float]:
    """(seconds, generated tokens, mean context: prompt plus half the answer)."""
    started = time.perf_counter()
    out = dict(backend.generate(requests))
    seconds = time.perf_counter() - started
    completions = [c for cs in out.values() for c in cs]
    tokens = sum(c.completion_tokens for c in completions)
    context = sum(c.prompt_tokens + c.completion_tokens / 2 for c in completions) / len(completions)
    return seconds, tokens, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="task1622", help="a SuperNI task name or task file")
    parser.add_argument("--items", type=int, default=12, help="greedy evaluation requests")
    parser.add_argument("--inputs", type=int, default=3, help="annotation requests (n samples each)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens every request generates")
    parser.add_argument("--smollm2", default=None, help="SmolLM2 folder (default: the installed default model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--no-share-samples",
        action="store_true",
        help="one row per sample for every model: sample sharing depends on the weights (a random model's samples part at once, "
        "SmolLM2's mostly agree at the annotation temperature), so annotation then compares the decoders alone",
    )
    args = parser.parse_args()

    task = load_task(args.task)
    inputs = [item.input for item in task.eval]
    stages = {
        "evaluation": fixed_length(eval_requests(task, inputs[: args.items], args.new_tokens), args.new_tokens),
        "annotation": fixed_length(annotation_requests(task, inputs[: args.inputs], OutputGenConfig(), seed=0), args.new_tokens),
    }
    smollm2 = args.smollm2 or default_model()
    sizes = {"device": args.device, "dtype": args.dtype}
    with tempfile.TemporaryDirectory(prefix="gemma3-270m-random-") as folder:
        gemma = gemma_sized_model(smollm2, Path(folder))
        runs = {
            "SmolLM2-135M": lambda: never_stopping(HFBackend(smollm2, **sizes)),
            "Gemma-3-270M-sized, before": lambda: as_before(never_stopping(HFBackend(str(gemma), **sizes))),
            "Gemma-3-270M-sized, after": lambda: never_stopping(HFBackend(str(gemma), **sizes)),
        }
        results, configs = {}, {}
        for name, make in runs.items():
            backend = make()
            if args.no_share_samples:
                backend.share_samples = False
            configs[name] = backend.model.config
            dict(backend.generate(stages["evaluation"][:2]))  # warm-up
            backend.prefiller.prefix_kv.clear()
            for stage, requests in stages.items():
                results[name, stage] = run_stage(backend, requests)
            backend.close()

    base = "SmolLM2-135M"
    print(f"{task.name}, {args.dtype} on {args.device}, {torch.get_num_threads()} threads; {len(stages['evaluation'])} eval items, "
          f"{len(stages['annotation'])} inputs x n={OutputGenConfig().n}, {args.new_tokens} new tokens each; "
          f"mean context {results[base, 'evaluation'][2]:.0f} tokens")
    print(f"{'stage':<12}{'model':<30}{'seconds':>9}{'tok/s':>9}{'time ratio':>12}{'FLOP ratio':>12}{'/ limit':>9}")
    for stage in stages:
        base_seconds = results[base, stage][0]
        for name in runs:
            seconds, tokens, context = results[name, stage]
            flop_ratio = flops_per_token(configs[name], context) / flops_per_token(configs[base], context)
            ratio = seconds / base_seconds
            print(f"{stage:<12}{name:<30}{seconds:>9.1f}{tokens / seconds:>9.1f}{ratio:>11.2f}x{flop_ratio:>11.2f}x{ratio / flop_ratio:>9.2f}")


if __name__ == "__main__":
    main()

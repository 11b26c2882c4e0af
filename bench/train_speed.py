"""Training speed on CPU: selfguide's trainer with the old and the new settings, a plain PyTorch
LoRA loop and the FLOP limit, in the same process, side by side.

    python bench/train_speed.py                         # SmolLM2-135M, task036, 40 rows, 1 epoch
    python bench/train_speed.py --rows 16 --epochs 2 --task task1622

The rows are real training rows: `build_training_rows` of a SuperNI task (system instruction,
every demo as turns, the input, then the answer) over instances 100.. of the task, which lie
outside the official eval set (the first 100). Trained tokens are the non-padding tokens of
every step, prompt and answer together (at batch 1: the row lengths), summed over the run;
tokens/s divides them by the wall time of the training loop (model loading and saving excluded).

  before   TrainConfig(gradient_checkpointing=True) with TRL's own SFTTrainer loss (the fused
           LM head over every position, plus entropy and accuracy over the whole vocabulary)
  after    TrainConfig() defaults: no checkpointing on CPU, the LM head on answer positions only
  plain    model(input_ids, labels).loss.backward() + AdamW over the same LoRA weights, same rows
  limit    the step's FLOPs (counted below) at the rate of a 2048x2048 fp32 matmul measured here
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from selfguide.tasks.load import load_task
from selfguide.tasks.superni import find_superni_task
from selfguide.train import sft
from selfguide.train.config import TrainConfig
from selfguide.train.sft import build_training_rows


def superni_pairs(task_name: str, first: int, count: int) -> list[tuple[str, str]]:
    instances = json.loads(Path(find_superni_task(task_name)).read_text())["Instances"]
    return [(row["input"], row["output"][0]) for row in instances[first : first + count]]


def without_quantization_config(model: str, folder: Path) -> str:
    """`model` as a folder of links whose config.json drops a leftover `quantization_config` (the
    /work/smollm2 conversion from GGUF keeps one, and Trainer refuses to train a GGUF-quantized model)."""
    config = json.loads((Path(model) / "config.json").read_text())
    if "quantization_config" not in config:
        return model
    folder.mkdir(parents=True, exist_ok=True)
    for path in Path(model).iterdir():
        if path.name != "config.json":
            (folder / path.name).symlink_to(path.resolve())
    config.pop("quantization_config")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return str(folder)


def matmul_gflops(size: int = 2048, repeats: int = 10) -> tuple[float, float]:
    """GFLOP per wall second and per CPU second (this process's, all threads) of a square fp32 matmul."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        a @ b
    flops = 2 * size**3 * repeats / 1e9
    return flops / (time.perf_counter() - started), flops / (time.process_time() - cpu_started)


def lora_row_flops(model_config, lora: TrainConfig, length: int, answer: int, checkpointing: bool, head_on_all: bool) -> float:
    """FLOPs to train one row with LoRA on a frozen Llama-style base: matmuls only (2 per multiply-add).

    Forward: every linear layer (2 x weights per token), the LoRA branches (rank r), causal attention
    (QK^T and AV over on average half the row), the LM head on the scored positions. Backward with a
    frozen base: the input gradient of every base matmul (1 x forward), the LoRA branches twice (input
    and weight gradients), attention twice. Checkpointing adds one more forward of the layers.
    """
    d, ff, layers = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
    heads, kv_heads = model_config.num_attention_heads, model_config.num_key_value_heads
    head_dim = getattr(model_config, "head_dim", d // heads)
    q, kv = heads * head_dim, kv_heads * head_dim
    shapes = [(d, q), (d, kv), (d, kv), (q, d), (d, ff), (d, ff), (ff, d)]  # q k v o gate up down
    base = sum(i * o for i, o in shapes) * layers
    lora_params = sum(lora.lora_r * (i + o) for i, o in shapes) * layers
    attention = 2 * 2 * heads * head_dim * (length / 2) * layers  # per token: QK^T and AV, causal
    layer_forward = length * (2 * base + 2 * lora_params + attention)
    layer_backward = length * (2 * base + 4 * lora_params + 2 * attention)
    head = 2 * d * model_config.vocab_size * (length if head_on_all else answer)
    head_total = 2 * head  # forward, and the input gradient
    return layer_forward * (2 if checkpointing else 1) + layer_backward + head_total


@contextlib.contextmanager
def trl_stock_loss():
    """Make selfguide's trainer use TRL's own SFTTrainer loss, as before the answer-only LM head."""
    from trl import SFTTrainer

    kept = sft.answer_loss_trainer_class
    sft.answer_loss_trainer_class = lambda: SFTTrainer
    try:
        yield
    finally:
        sft.answer_loss_trainer_class = kept


def selfguide_run(task, pairs, model: str, out: Path, config: TrainConfig) -> dict:
    cpu_started = time.process_time()  # includes loading and saving the model: a little against selfguide
    result = sft.train(task, pairs, model, out, config, resume=False, progress=False)
    cpu = time.process_time() - cpu_started
    losses = [json.loads(line)["loss"] for line in result.log_path.read_text().splitlines() if '"loss"' in line]
    return {"tokens": result.trained_tokens, "seconds": result.train_seconds, "cpu": cpu, "losses": losses}


def plain_loop(model_name: str, rows: list[dict], config: TrainConfig) -> dict:
    """What a first script does: PEFT LoRA, the model's own loss over full logits, AdamW, batch 1."""
    from peft import LoraConfig, get_peft_model

    resolved = config.resolved()
    torch.manual_seed(resolved.seed)
    base = AutoModelForCausalLM.from_pretrained(model_name, dtype=torch.float32)
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=resolved.lora_r, lora_alpha=resolved.lora_alpha, lora_dropout=resolved.lora_dropout,
        target_modules=resolved.lora_target_modules, bias="none",
    )  # fmt: skip
    model = get_peft_model(base, lora).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=resolved.learning_rate)
    epochs = int(resolved.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / (epochs * len(rows)))
    tokens, losses = 0, []
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.where(torch.tensor([row["completion_mask"]]) == 1, ids, -100)
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += ids.numel()
            losses.append(loss.item())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"tokens": tokens, "seconds": seconds, "cpu": cpu, "losses": losses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="/work/smollm2")
    parser.add_argument("--task", default="task036")
    parser.add_argument("--rows", type=int, default=40, help="Training rows: instances 100, 101, ... of the task.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--skip", default="", help="Comma-separated runs to leave out: before, after, plain.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice).")
    parser.add_argument("--profile", type=int, default=0, help="Instead: torch.profiler tables of this many rows, before and after.")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.threads:
        torch.set_num_threads(args.threads)

    task = load_task(args.task)
    pairs = superni_pairs(args.task, 100, args.rows)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    after = TrainConfig(epochs=args.epochs)
    before = after.model_copy(update={"gradient_checkpointing": True})
    rows, dropped = build_training_rows(task, pairs, tokenizer, after.max_length)
    lengths = [len(row["input_ids"]) for row in rows]
    answers = [sum(row["completion_mask"]) for row in rows]
    model_config = AutoConfig.from_pretrained(args.model)

    gflops, cpu_gflops = matmul_gflops()
    print(f"{args.task}: {len(rows)} rows ({dropped} dropped), {min(lengths)}-{max(lengths)} tokens, "
          f"{sum(answers)} answer tokens of {sum(lengths)}; {args.epochs} epoch(s); torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"2048x2048 fp32 matmul: {gflops:.0f} GFLOP/s, {cpu_gflops:.0f} GFLOP per CPU second")

    def limit(checkpointing: bool, head_on_all: bool, rate: float) -> float:
        flops = sum(lora_row_flops(model_config, after, n, a, checkpointing, head_on_all) for n, a in zip(lengths, answers))
        return sum(lengths) / (flops / (rate * 1e9))

    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            model = without_quantization_config(args.model, Path(tmp) / "model")
            for name, config, loss in [("before", before, trl_stock_loss()), ("after", after, contextlib.nullcontext())]:
                with loss, torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
                    selfguide_run(task, pairs[: args.profile], model, Path(tmp) / name, config.model_copy(update={"epochs": 1}))
                print(f"\n{name}: {args.profile} rows")
                print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        return 0

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = without_quantization_config(args.model, Path(tmp) / "model")
        if "before" not in skip:
            with trl_stock_loss():
                results["before"] = selfguide_run(task, pairs, model, Path(tmp) / "before", before)
        if "after" not in skip:
            results["after"] = selfguide_run(task, pairs, model, Path(tmp) / "after", after)
        if "plain" not in skip:
            results["plain"] = plain_loop(model, rows, after)
    gflops_end, cpu_gflops_end = matmul_gflops()
    print(f"2048x2048 fp32 matmul after the runs: {gflops_end:.0f} GFLOP/s, {cpu_gflops_end:.0f} GFLOP per CPU second "
          "(wall rates move with other load on the machine; per CPU second much less)")  # fmt: skip

    labels = {
        "before": "selfguide before (checkpointing, TRL loss)",
        "after": "selfguide after (defaults)",
        "plain": "plain PyTorch LoRA loop",
    }
    reference = results.get("plain")
    print(f"\n{'run':44} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs plain':>9} {'CPU s':>8} {'tokens/CPU s':>13} "
          f"{'final loss':>11} {'last-epoch loss':>16}")  # fmt: skip
    for name, run in results.items():
        speed = run["tokens"] / run["seconds"]
        ratio = f"{speed / (reference['tokens'] / reference['seconds']):.2f}x" if reference else "-"
        epoch = run["losses"][-len(rows) :]
        print(f"{labels[name]:44} {run['tokens']:7d} {run['seconds']:8.1f} {speed:9.1f} {ratio:>9} {run['cpu']:8.1f} "
              f"{run['tokens'] / run['cpu']:13.1f} {run['losses'][-1]:11.4f} {statistics.mean(epoch):16.4f}")  # fmt: skip
    for name, checkpointing, head_on_all in [("before (checkpointing, head on all)", True, True), ("after (head on answers)", False, False)]:
        print(f"{'FLOP limit, ' + name:44} {'':7} {'':8} {limit(checkpointing, head_on_all, gflops):9.1f} {'':9} {'':8} "
              f"{limit(checkpointing, head_on_all, cpu_gflops):13.1f}")  # fmt: skip
    if "before" in results and "after" in results:
        pairs_ = zip(results["before"]["losses"], results["after"]["losses"], strict=True)
        diff = max(abs(a - b) for a, b in pairs_)
        print(f"\nper-step loss, before vs after: largest difference {diff:.2e} over {len(results['after']['losses'])} steps")
        print(f"speed-up after/before: {results['after']['tokens'] / results['after']['seconds'] / (results['before']['tokens'] / results['before']['seconds']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

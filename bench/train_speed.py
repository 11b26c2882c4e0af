"""Training speed on CPU: selfguide's trainer with the old and the new settings, a plain PyTorch
LoRA loop and the FLOP limit, in the same process, side by side.

    python bench/train_speed.py                         # SmolLM2-135M-Instruct, task036, 40 rows, 1 epoch
    python bench/train_speed.py --rows 16 --epochs 2 --task task1622
    python bench/train_speed.py --batch-size 8 --skip before    # shared prefix, 8 rows a step

The rows are real training rows: `build_training_rows` of a SuperNI task (system instruction,
every demo as turns, the input, then the answer) over instances 100.. of the task, which lie
outside the official eval set (the first 100). Trained tokens are the non-padding tokens of
every step, prompt and answer together (at batch 1: the row lengths), summed over the run;
tokens/s divides them by the wall time of the training loop (model loading and saving excluded).

  before   TrainConfig(gradient_checkpointing=True) with TRL's own SFTTrainer loss (the fused
           LM head over every position, plus entropy and accuracy over the whole vocabulary)
  after    TrainConfig() defaults: no checkpointing on CPU, the LM head on answer positions only
  shared   `after` with shared-prefix batches of --batch-size rows (the task prompt once a step)
           and --shared-lr (defaults: configs/cpu.yaml's batch size and learning rate); trained
           tokens still count every row's full length, so its tokens/s is the work a padded
           batch of those rows would do, per second
  plain    model(input_ids, labels).loss.backward() + AdamW over the same LoRA weights, same rows
  limit    the step's FLOPs (counted below) at the rate of a 2048x2048 fp32 matmul measured here

Batching changes the optimizer steps, so the last logged loss is not comparable across batch
sizes; "loss after" is: the mean answer-token NLL of all the rows under each run's final weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from selfguide.config import load_config
from selfguide.model_source import resolve_model
from selfguide.tasks.load import load_task
from selfguide.tasks.superni import find_superni_task
from selfguide.train import sft
from selfguide.train.config import TrainConfig
from selfguide.train.sft import build_training_rows
from selfguide.train.shared_prefix import pack_shared_prefix, shared_prefix_length


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


def lora_flops(model_config, lora: TrainConfig, tokens: int, pairs: float, scored: int, checkpointing: bool) -> float:
    """FLOPs to train `tokens` tokens, `pairs` (query, key) attention pairs and `scored` LM-head
    positions with LoRA on a frozen Llama-style base: matmuls only (2 per multiply-add).

    Forward: every linear layer (2 x weights per token), the LoRA branches (rank r), attention
    (QK^T and AV per pair), the LM head on the scored positions. Backward with a frozen base: the
    input gradient of every base matmul (1 x forward), the LoRA branches twice (input and weight
    gradients), attention twice. Checkpointing adds one more forward of the layers.
    """
    d, ff, layers = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
    heads, kv_heads = model_config.num_attention_heads, model_config.num_key_value_heads
    head_dim = getattr(model_config, "head_dim", d // heads)
    q, kv = heads * head_dim, kv_heads * head_dim
    shapes = [(d, q), (d, kv), (d, kv), (q, d), (d, ff), (d, ff), (ff, d)]  # q k v o gate up down
    base = sum(i * o for i, o in shapes) * layers
    lora_params = sum(lora.lora_r * (i + o) for i, o in shapes) * layers
    attention = 2 * 2 * heads * head_dim * pairs * layers  # QK^T and AV
    layer_forward = tokens * (2 * base + 2 * lora_params) + attention
    layer_backward = tokens * (2 * base + 4 * lora_params) + 2 * attention
    head = 2 * d * model_config.vocab_size * scored
    head_total = 2 * head  # forward, and the input gradient
    return layer_forward * (2 if checkpointing else 1) + layer_backward + head_total


def row_flops(model_config, lora: TrainConfig, length: int, answer: int, checkpointing: bool, head_on_all: bool) -> float:
    """FLOPs to train one row on its own: causal attention over half the row on average."""
    return lora_flops(model_config, lora, length, length * length / 2, length if head_on_all else answer, checkpointing)


def shared_prefix_flops(model_config, lora: TrainConfig, rows: list[dict], batch_size: int) -> float:
    """FLOPs to train the rows in shared-prefix batches of `batch_size` (in order): per batch the
    prefix once (causal), and each remainder attending to the prefix and causally to itself."""
    flops = 0.0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        ids = [row["input_ids"] for row in batch]
        prefix = shared_prefix_length(ids, [row["completion_mask"].count(0) for row in batch]) if len(batch) > 1 else 0
        remainders = [len(row) - prefix for row in ids]
        pairs = prefix * prefix / 2 + sum(n * prefix + n * n / 2 for n in remainders)
        answers = sum(sum(row["completion_mask"]) for row in batch)
        flops += lora_flops(model_config, lora, prefix + sum(remainders), pairs, answers, checkpointing=False)
    return flops


def answer_loss(model, rows: list[dict], batch_size: int = 8) -> float:
    """Mean answer-token NLL of the rows under `model`: what training minimises, measured the same
    way for every run (packed shared-prefix forwards of `batch_size` rows, exact and quick)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            examples = [
                {"input_ids": row["input_ids"], "labels": [t if m else -100 for t, m in zip(row["input_ids"], row["completion_mask"])]}
                for row in rows[start : start + batch_size]
            ]
            packed = pack_shared_prefix(examples)
            logits = model(input_ids=packed["input_ids"], attention_mask=packed["attention_mask"], position_ids=packed["position_ids"]).logits
            total += torch.nn.functional.cross_entropy(logits[0, :-1].float(), packed["labels"][0, 1:], ignore_index=-100, reduction="sum").item()
            count += int(packed["labels"][0, 1:].ne(-100).sum())
    return total / count


def adapter_loss(model_name: str, adapter_dir: Path, rows: list[dict]) -> float:
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(model_name, dtype=torch.float32)
    return answer_loss(PeftModel.from_pretrained(base, str(adapter_dir)), rows)


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
    return {
        "tokens": result.trained_tokens, "seconds": result.train_seconds, "cpu": cpu, "losses": losses,
        "adapter": result.adapter_dir,
    }  # fmt: skip


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
    return {"tokens": tokens, "seconds": seconds, "cpu": cpu, "losses": losses, "loss_after": answer_loss(model, rows)}


def main() -> int:
    recipe = load_config(Path(__file__).resolve().parents[1] / "configs" / "cpu.yaml").train
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="Weights to train (default: selfguide's SmolLM2-135M-Instruct).")
    parser.add_argument("--task", default="task036")
    parser.add_argument("--rows", type=int, default=40, help="Training rows: instances 100, 101, ... of the task.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=recipe.batch_size, help="Rows per step of the shared run (default: configs/cpu.yaml's).")
    parser.add_argument("--shared-lr", type=float, default=recipe.learning_rate, help="Learning rate of the shared run (default: configs/cpu.yaml's).")
    parser.add_argument("--skip", default="", help="Comma-separated runs to leave out: before, after, shared, plain.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice).")
    parser.add_argument("--profile", type=int, default=0, help="Instead: torch.profiler tables of this many rows, before and after.")
    args = parser.parse_args()
    args.model = resolve_model(args.model)
    skip = set(filter(None, args.skip.split(",")))
    if args.threads:
        torch.set_num_threads(args.threads)

    task = load_task(args.task)
    pairs = superni_pairs(args.task, 100, args.rows)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    after = TrainConfig(epochs=args.epochs)
    before = after.model_copy(update={"gradient_checkpointing": True})
    shared = after.model_copy(update={"batch_size": args.batch_size, "shared_prefix": True, "learning_rate": args.shared_lr})
    rows, dropped = build_training_rows(task, pairs, tokenizer, after.max_length)
    lengths = [len(row["input_ids"]) for row in rows]
    answers = [sum(row["completion_mask"]) for row in rows]
    model_config = AutoConfig.from_pretrained(args.model)

    gflops, cpu_gflops = matmul_gflops()
    print(f"{args.task}: {len(rows)} rows ({dropped} dropped), {min(lengths)}-{max(lengths)} tokens, "
          f"{sum(answers)} answer tokens of {sum(lengths)}; {args.epochs} epoch(s); torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"2048x2048 fp32 matmul: {gflops:.0f} GFLOP/s, {cpu_gflops:.0f} GFLOP per CPU second")

    def row_limit(checkpointing: bool, head_on_all: bool) -> float:
        """FLOPs of one epoch, one row a step."""
        return sum(row_flops(model_config, after, n, a, checkpointing, head_on_all) for n, a in zip(lengths, answers))

    # FLOPs of one epoch as each run trains it.
    flops = {
        "before": row_limit(checkpointing=True, head_on_all=True),
        "after": row_limit(checkpointing=False, head_on_all=False),
        "shared": shared_prefix_flops(model_config, after, rows, args.batch_size),
        "plain": row_limit(checkpointing=False, head_on_all=True),
    }

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
        base_loss = answer_loss(AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32), rows)
        if "before" not in skip:
            with trl_stock_loss():
                results["before"] = selfguide_run(task, pairs, model, Path(tmp) / "before", before)
        if "after" not in skip:
            results["after"] = selfguide_run(task, pairs, model, Path(tmp) / "after", after)
        if "shared" not in skip:
            results["shared"] = selfguide_run(task, pairs, model, Path(tmp) / "shared", shared)
        for run in results.values():
            run["loss_after"] = adapter_loss(model, run["adapter"], rows)
        if "plain" not in skip:
            results["plain"] = plain_loop(model, rows, after)
    gflops_end, cpu_gflops_end = matmul_gflops()
    print(f"2048x2048 fp32 matmul after the runs: {gflops_end:.0f} GFLOP/s, {cpu_gflops_end:.0f} GFLOP per CPU second "
          "(wall rates move with other load on the machine; per CPU second much less)")  # fmt: skip

    labels = {
        "before": "selfguide before (checkpointing, TRL loss)",
        "after": "selfguide after (defaults)",
        "shared": f"selfguide shared prefix, batch {args.batch_size}, lr {args.shared_lr:g}",
        "plain": "plain PyTorch LoRA loop",
    }
    limit_labels = {
        "before": "before (checkpointing, head on all)",
        "after": "after (head on answers)",
        "shared": f"shared prefix, batch {args.batch_size}",
        "plain": "plain (head on all)",
    }
    limits = {name: sum(lengths) / (epoch_flops / (gflops * 1e9)) for name, epoch_flops in flops.items()}
    cpu_limits = {name: sum(lengths) / (epoch_flops / (cpu_gflops * 1e9)) for name, epoch_flops in flops.items()}
    reference = results.get("plain")
    print(f"\n{'run':44} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs plain':>9} {'of limit':>9} {'CPU s':>8} "
          f"{'tokens/CPU s':>13} {'final loss':>11} {'loss after':>11}")  # fmt: skip
    for name, run in results.items():
        speed = run["tokens"] / run["seconds"]
        ratio = f"{speed / (reference['tokens'] / reference['seconds']):.2f}x" if reference else "-"
        print(f"{labels[name]:44} {run['tokens']:7d} {run['seconds']:8.1f} {speed:9.1f} {ratio:>9} {speed / limits[name]:8.2f}x "
              f"{run['cpu']:8.1f} {run['tokens'] / run['cpu']:13.1f} {run['losses'][-1]:11.4f} {run['loss_after']:11.4f}")  # fmt: skip
    print(f"{'(base model, untrained)':44} {'':7} {'':8} {'':9} {'':9} {'':9} {'':8} {'':13} {'':11} {base_loss:11.4f}")
    for name in flops:
        print(f"{'FLOP limit, ' + limit_labels[name]:44} {'':7} {'':8} {limits[name]:9.1f} {'':9} {'':9} {'':8} "
              f"{cpu_limits[name]:13.1f}")  # fmt: skip
    if "after" in results and "shared" in results:
        speedup = results["shared"]["tokens"] / results["shared"]["seconds"] / (results["after"]["tokens"] / results["after"]["seconds"])
        print(f"speed-up shared/after: {speedup:.2f}x")
    if "before" in results and "after" in results:
        pairs_ = zip(results["before"]["losses"], results["after"]["losses"], strict=True)
        diff = max(abs(a - b) for a, b in pairs_)
        print(f"\nper-step loss, before vs after: largest difference {diff:.2e} over {len(results['after']['losses'])} steps")
        print(f"speed-up after/before: {results['after']['tokens'] / results['after']['seconds'] / (results['before']['tokens'] / results['before']['seconds']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

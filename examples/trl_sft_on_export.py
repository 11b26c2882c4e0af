"""Train on a `selfguide export --format hf` folder with TRL alone: no selfguide code.

    selfguide export runs/task036 --format hf
    python examples/trl_sft_on_export.py runs/task036/export/hf HuggingFaceTB/SmolLM2-135M-Instruct out/

The rows' `prompt` (instruction, demos as turns, input) and `completion` (the answer) are TRL's
conversational prompt-completion format, so SFTTrainer puts the loss on the answer only, as
selfguide's own training does.
"""

import sys

import torch
from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer


def main(folder: str, model: str, out: str) -> None:
    # download_mode: datasets reuses a cached local folder by its name, even after a re-export.
    dataset = load_dataset(folder, split="train", download_mode="force_redownload", verification_mode="no_checks")
    cuda = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=out, num_train_epochs=1, per_device_train_batch_size=1, learning_rate=2e-4, report_to=[], save_strategy="no", logging_steps=1,
        bf16=cuda, use_cpu=not cuda,  # TRL defaults to bf16, which a CPU-only machine refuses
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, peft_config=LoraConfig(r=8, target_modules="all-linear"))
    row = trainer.train_dataset[0]
    trained = sum(label != -100 for label in row["labels"])
    print(f"{len(dataset)} rows; first row: {len(row['input_ids'])} tokens, {trained} of them trained on (the answer)")
    result = trainer.train()
    print(f"train loss {result.training_loss:.4f} after {result.global_step} steps")
    trainer.save_model(out)


if __name__ == "__main__":
    main(*sys.argv[1:4])

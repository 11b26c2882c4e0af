"""TrainConfig: the finetuning settings, importable without loading torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

LORA_DEFAULT_LR = 2e-4
FULL_DEFAULT_LR = 5e-5


class TrainConfig(BaseModel, extra="forbid"):
    """How to finetune. Defaults follow the SELF-GUIDE paper unless a description says otherwise."""

    model: str = Field(
        "",
        description="Hugging Face id or local folder of the weights to finetune; unset: model.name. Needed with "
        "the openai backend when the served name is not one (e.g. Ollama's qwen2.5:1.5b); the finetuned model and "
        "the prompting baseline it is compared with run in-process on these weights.",
    )
    method: Literal["lora", "full"] = Field(
        "lora",
        description="'lora' trains a PEFT LoRA adapter (the default here, fits on one GPU); 'full' updates every "
        "weight, as the SELF-GUIDE paper does.",
    )
    epochs: float = Field(3.0, gt=0, description="Passes over the synthetic training pairs (paper: 3).")
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="Peak learning rate (linear decay). None: 5e-5 for 'full' (paper / Hugging Face default), "
        "2e-4 for 'lora' (a usual LoRA rate; not from the paper).",
    )
    batch_size: int = Field(1, ge=1, description="Examples per device per step (paper: 1).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps whose gradients add up before an update.")
    max_length: int = Field(
        2000,
        ge=1,
        description="Longest training example in tokens, prompt and answer together; longer ones are dropped "
        "and counted, never truncated (paper: examples over 2000 tokens dropped).",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank (LoRA only; not from the paper).")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha (LoRA only).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA branch (LoRA only).")
    lora_target_modules: list[str] | str = Field(
        "all-linear",
        description="Modules LoRA wraps: 'all-linear' (every linear layer but the output head) or a list of "
        "module names such as ['q_proj', 'v_proj'].",
    )
    bf16: bool | None = Field(
        None,
        description="bf16 mixed precision. None: on when a CUDA GPU supports bf16, else fp32 (always fp32 on CPU).",
    )
    gradient_checkpointing: bool = Field(
        True,
        description="Recompute activations in the backward pass to save GPU memory (TRL's default; not from the "
        "paper).",
    )
    seed: int = Field(42, description="Seed for adapter initialisation, data order and dropout.")
    save_every_epoch: bool = Field(
        True,
        description="Write a checkpoint after every epoch under out_dir/checkpoints, so a crash keeps the "
        "finished epochs and training can resume.",
    )
    logging_steps: int = Field(1, ge=1, description="Log the training loss every this many optimizer steps.")

    def resolved(self, cuda_bf16: bool | None = None) -> TrainConfig:
        """This config with `learning_rate` and `bf16` filled in for this machine."""
        if cuda_bf16 is None:
            cuda_bf16 = cuda_bf16_available()
        lr = self.learning_rate
        if lr is None:
            lr = LORA_DEFAULT_LR if self.method == "lora" else FULL_DEFAULT_LR
        bf16 = cuda_bf16 if self.bf16 is None else self.bf16
        return self.model_copy(update={"learning_rate": lr, "bf16": bf16})


def cuda_bf16_available() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())

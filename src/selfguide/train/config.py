"""TrainConfig: the finetuning settings, importable without loading torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Finetuning on the synthetic pairs. The paper: full finetune, 3 epochs, batch 1, lr 5e-5, bf16,
    a checkpoint per epoch, examples over 2000 tokens dropped. LoRA is the default here."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["lora", "full"] = Field("lora", description="lora (default) or full finetuning (the paper's).")
    epochs: float = Field(3.0, gt=0, description="Passes over the synthetic data (paper: 3).")
    learning_rate: float | None = Field(None, gt=0, description="Unset: 5e-5 for full (paper), 2e-4 for LoRA.")
    batch_size: int = Field(1, ge=1, description="Examples per device per step (paper: 1).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps accumulated per optimizer update.")
    max_length: int = Field(2000, ge=8, description="Examples longer than this many tokens are dropped and counted (paper: 2000).")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: list[str] | str = Field("all-linear", description="Modules LoRA adapts; 'all-linear' or a list of names.")
    bf16: bool | None = Field(None, description="Unset: bf16 on a GPU that supports it, fp32 otherwise.")
    seed: int = Field(42, description="Training seed.")
    save_every_epoch: bool = Field(True, description="Write a checkpoint per epoch; a crashed run resumes from the last.")
    logging_steps: int = Field(1, ge=1, description="Log the loss every this many steps.")

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.method == "full" else 2e-4

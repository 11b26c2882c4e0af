"""TrainConfig: the finetuning settings, importable without loading torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

LORA_DEFAULT_LR = 2e-4
FULL_DEFAULT_LR = 5e-5
# Experiment trackers TRL can report to, and the package each one needs.
TRACKER_PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "trackio": "trackio",
    "comet_ml": "comet_ml",
    "clearml": "clearml",
    "neptune": "neptune",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
}


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
    batch_size: int = Field(
        1,
        ge=1,
        description="Examples per device per step (paper: 1). With shared_prefix a step of several task rows costs "
        "little more than one on a CPU; fewer optimizer steps then want a higher learning_rate (configs/cpu.yaml: "
        "8 rows, 4x the one-row rate, for the same final loss).",
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps whose gradients add up before an update.")
    shared_prefix: bool | None = Field(
        None,
        description="Train each batch as one packed sequence: the rows' common token prefix (a SELF-GUIDE task "
        "prompt: instruction and every demo) once, then each row's remainder, masked so that the loss and "
        "gradients equal the padded batch's (not from the paper). Needs batch_size > 1 to save anything; it "
        "does not change the optimizer steps, batch_size does. None: on on CPU (one process or DDP) when "
        "batch_size > 1 and the rows' common prefix is at least half a row (task rows, not rows with their "
        "own instruction). On a GPU it is always off (not implemented there).",
    )
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
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute activations in the backward pass to save memory (not from the paper). None: on "
        "when training on a CUDA GPU (TRL's default), off on CPU, where memory is plentiful and the recomputed "
        "forward would cost about a third of every step.",
    )
    # Left out of dumps at their defaults (exclude_if), so the fingerprints of trainings made before these
    # fields existed still match: a rerun after an upgrade reuses them.
    num_processes: int = Field(
        1,
        ge=1,
        exclude_if=lambda value: value == 1,
        description="Train in this many processes (DDP through accelerate's launcher: one per GPU, or over gloo on "
        "the CPU); batch_size is per process, so the global batch is batch_size x num_processes. The run itself "
        "stays one process: it synthesizes and evaluates once. See docs/scale-out.md.",
    )
    accelerate_config: str | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="With num_processes > 1: an accelerate config file for the launcher, e.g. FSDP2 or DeepSpeed "
        "ZeRO-3 for method full (TRL publishes examples/accelerate_configs/); unset: plain DDP.",
    )
    seed: int | None = Field(None, description="Seed for adapter initialisation, data order and dropout; unset: the run's `seed`.")
    save_every_epoch: bool = Field(
        True,
        description="Write a checkpoint after every epoch under out_dir/checkpoints, so a crash keeps the "
        "finished epochs and training can resume.",
    )
    logging_steps: int = Field(1, ge=1, description="Log the training loss every this many optimizer steps.")
    report_to: str | list[str] = Field(
        "none",
        description="Experiment trackers that also receive the training logs: 'none' (only train_log.jsonl), or "
        f"one or a list of {', '.join(TRACKER_PACKAGES)}. Each needs its package installed; tensorboard writes "
        "its event files to the training folder's tensorboard/.",
    )

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, value: str | list[str]) -> str | list[str]:
        unknown = [name for name in trackers(value) if name not in TRACKER_PACKAGES]
        if unknown:
            raise ValueError(f"unknown tracker {unknown[0]!r}: expected 'none' or some of {', '.join(TRACKER_PACKAGES)}")
        return value

    def seeded(self, run_seed: int) -> TrainConfig:
        """This config with `seed` filled in from the run's seed when unset."""
        return self if self.seed is not None else self.model_copy(update={"seed": run_seed})

    def resolved(self, cuda_bf16: bool | None = None, cuda: bool | None = None) -> TrainConfig:
        """This config with `learning_rate`, `bf16` and `gradient_checkpointing` filled in for this machine
        (and `seed`, when no run filled it: RunConfig.training, 0 like a run's default seed)."""
        if cuda_bf16 is None:
            cuda_bf16 = cuda_bf16_available()
        if cuda is None:
            cuda = cuda_available()
        lr = self.learning_rate
        if lr is None:
            lr = LORA_DEFAULT_LR if self.method == "lora" else FULL_DEFAULT_LR
        bf16 = cuda_bf16 if self.bf16 is None else self.bf16
        checkpointing = cuda if self.gradient_checkpointing is None else self.gradient_checkpointing
        seed = 0 if self.seed is None else self.seed
        return self.model_copy(update={"learning_rate": lr, "bf16": bf16, "gradient_checkpointing": checkpointing, "seed": seed})


def trackers(report_to: str | list[str]) -> list[str]:
    """The tracker names in a `report_to` value ('none' is none)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [name for name in names if name != "none"]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cuda_bf16_available() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())

"""Finetune a model on the (input, output) pairs it synthesised: TRL's SFTTrainer, LoRA by default.

Every training row is the task prompt the evaluator will send, token for token (`encode_prompt` of
`task_messages`: instruction as system turn, the gold demos as earlier turns, then the input; a
pair with its own instruction: that instruction and the input, zero-shot),
followed by the answer as `render_answer` renders it (closing end-of-turn / EOS included). The
rows reach TRL pre-tokenised with a `completion_mask`, and `completion_only_loss=True` makes TRL
turn it into labels that are -100 over the prompt, so the loss is on the answer tokens only. On CPU
only the positions that predict an answer token go through the LM head (`AnswerLossTrainer`; TRL
does the same on CUDA), and activations are not recomputed: see bench/train_speed.py. With
batch_size > 1, a CPU batch of task rows trains as one packed sequence holding the shared task
prompt once (`train.shared_prefix`, selfguide.train.shared_prefix).

Outputs under `out_dir`:
  adapter/            PEFT LoRA adapter + tokenizer (method "lora"), or
  model/              full model + tokenizer (method "full")
  checkpoints/        one Trainer checkpoint per epoch; `train(resume=True)` continues from the last
  train_log.jsonl     one JSON object per logged step (loss, learning rate, grad norm, epoch, ...)
  train_config.json   the resolved TrainConfig (learning rate, bf16, checkpointing filled in)
  tensorboard/        event files, when `report_to` includes tensorboard

Runs unchanged under `accelerate launch` (DDP): only the main process writes the outputs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from selfguide import global_rng, layout
from selfguide.backends.chat import encode_prompt, render_answer
from selfguide.errors import MissingDependencyError, SelfGuideError
from selfguide.prompts.task import Pair, pair_messages
from selfguide.tasks.spec import TaskSpec
from selfguide.train.config import TRACKER_PACKAGES, TrainConfig, trackers
from selfguide.train.launch import JOB_RESULT, launched, train_in_processes
from selfguide.train.fingerprint import training_fingerprint
from selfguide.train.shared_prefix import attention_mask_for, shared_prefix_collator, useful_shared_prefix

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


@dataclass
class TrainResult:
    """What `train` wrote. `adapter_dir` is set for LoRA, `model_dir` for a full finetune."""

    adapter_dir: Path | None
    model_dir: Path | None
    n_train: int
    n_dropped_too_long: int
    log_path: Path
    final_loss: float | None
    steps: int
    config_path: Path
    epochs: float
    trained_tokens: int  # prompt + answer tokens of the rows trained in this call (no padding; a shared prefix counts per row)
    train_seconds: float  # wall time of this call's training loop, without loading and saving

    @property
    def summary(self) -> str:
        """One line: pairs, steps, epochs, final loss, trained tokens/s, wall time."""
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.4f}"
        speed = self.trained_tokens / self.train_seconds if self.train_seconds > 0 else 0.0
        return (
            f"trained {self.n_train} pairs ({self.n_dropped_too_long} dropped as too long): {self.steps} steps, "
            f"{self.epochs:g} epochs, final loss {loss}, {speed:.0f} trained tokens/s, {self.train_seconds:.1f} s"
        )

    @property
    def output_dir(self) -> Path:
        """The adapter folder (LoRA) or the model folder (full)."""
        path = self.adapter_dir or self.model_dir
        assert path is not None
        return path

    def to_json(self) -> dict:
        """Its fields, paths as strings: what a training rank hands back to the launcher (`train_job`)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, fields: dict) -> TrainResult:
        """The result `to_json` wrote."""
        paths = {f.name for f in dataclasses.fields(cls) if str(f.type).startswith("Path")}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in fields.items()})


def build_training_rows(task: TaskSpec | None, pairs: list[Pair], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """One pre-tokenised row per pair, and how many were dropped for being too long.

    Each row holds `input_ids` = prompt ids + completion ids, and `completion_mask` (0 over the
    prompt, 1 over the answer). The prompt ids are `encode_prompt` of the same messages the
    evaluator builds (`pair_messages`: the task prompt, or a row's own instruction zero-shot); the
    completion ids are `render_answer` tokenised without special tokens, so the sequence is
    exactly what the model sees and then should produce at test time. `task` may be None when
    every pair carries its own instruction. A pair equal to a demo is prompted with the other demos.
    """
    instruction = task.instruction if task is not None else None
    demos = [(example.input, example.output) for example in task.examples] if task is not None else []
    rows: list[dict] = []
    dropped = 0
    for pair in pairs:
        answer = pair[1]
        # A demo trained on (synth.demo_copies) leaves its own prompt: else it learns to copy the answer from context.
        messages = pair_messages(pair, instruction, [demo for demo in demos if demo != pair])
        prompt_ids = list(encode_prompt(tokenizer, messages))
        completion_text = render_answer(tokenizer, messages, answer)
        completion_ids = list(tokenizer(completion_text, add_special_tokens=False)["input_ids"])
        if len(prompt_ids) + len(completion_ids) > max_length:
            dropped += 1
            continue
        rows.append(
            {
                "input_ids": prompt_ids + completion_ids,
                "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
            }
        )
    return rows, dropped


def build_trainer(
    task: TaskSpec | None,
    pairs: list[Pair],
    model: str,
    out_dir: Path,
    config: TrainConfig,
    *,
    callbacks: list | None = None,
    progress: bool = True,
):
    """The configured SFTTrainer (not yet trained), the resolved config and the dropped count.

    Split out of `train` so tests can look at the batches that reach the model.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    model, out_dir = str(model), Path(out_dir)
    resolved = config.resolved()
    if not pairs:
        raise SelfGuideError("nothing to train on: no (input, output) pairs were given")
    require_trackers(resolved.report_to)
    tokenizer = AutoTokenizer.from_pretrained(model)
    rows, dropped = build_training_rows(task, pairs, tokenizer, resolved.max_length)
    if not rows:
        raise SelfGuideError(
            f"nothing to train on: all {dropped} pairs are longer than max_length={resolved.max_length} tokens "
            "(prompt with instruction and demos, plus answer); raise max_length or shorten the task prompt"
        )

    use_cpu = not torch.cuda.is_available()
    lora = resolved.method == "lora"
    # LoRA keeps the frozen base in bf16 (PEFT upcasts the adapter weights to fp32); a full finetune keeps fp32
    # master weights and runs the forward under bf16 autocast.
    dtype = "bfloat16" if (lora and resolved.bf16) else "float32"
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns).
    checkpointing_field = "activation_checkpointing"
    if checkpointing_field not in _fields(SFTConfig):
        checkpointing_field = "gradient_checkpointing"
    args = SFTConfig(
        output_dir=str(out_dir / layout.CHECKPOINTS),
        num_train_epochs=resolved.epochs,
        learning_rate=resolved.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        per_device_train_batch_size=resolved.batch_size,
        gradient_accumulation_steps=resolved.gradient_accumulation_steps,
        bf16=bool(resolved.bf16),
        fp16=False,
        use_cpu=use_cpu,
        **{checkpointing_field: resolved.gradient_checkpointing},
        seed=resolved.seed,
        data_seed=resolved.seed,
        save_strategy="epoch" if resolved.save_every_epoch else "no",
        logging_strategy="steps",
        logging_steps=resolved.logging_steps,
        logging_first_step=True,
        report_to=trackers(resolved.report_to) or "none",
        push_to_hub=False,
        disable_tqdm=True,  # our own named bar (TrainingProgressCallback) instead of Trainer's bar and log dicts
        dataloader_num_workers=0,
        # Under DDP every trainable weight (LoRA or full) is used in each forward; skip the unused-parameter scan.
        ddp_find_unused_parameters=False,
        # Rows are already cut to max_length (longer ones dropped), so TRL has nothing to truncate.
        max_length=None,
        # Pre-tokenised rows carry `completion_mask`; TRL turns it into -100 labels only with this set
        # (its default, None, means False for a dataset without prompt/completion text columns).
        completion_only_loss=True,
        packing=False,
        model_init_kwargs={"dtype": dtype},
    )
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            task_type="CAUSAL_LM",
            r=resolved.lora_r,
            lora_alpha=resolved.lora_alpha,
            lora_dropout=resolved.lora_dropout,
            target_modules=resolved.lora_target_modules,
            bias="none",
        )
    shared_prefix = resolved.shared_prefix
    if shared_prefix is None:
        shared_prefix = use_cpu and resolved.batch_size > 1 and useful_shared_prefix(rows)
    elif shared_prefix and not use_cpu:
        logger.warning("train.shared_prefix is only implemented on CPU (the answer-positions loss): ignored on this GPU")
        shared_prefix = False
    resolved = resolved.model_copy(update={"shared_prefix": shared_prefix})
    # On CUDA, TRL's fused LM head already scores only the answer positions (with Triton); its CPU path scores all.
    trainer_class = answer_loss_trainer_class() if use_cpu else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if shared_prefix:
        trainer.data_collator = shared_prefix_collator(trainer.data_collator)
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the loss per step goes to train_log.jsonl
    if progress:
        trainer.add_callback(TrainingProgressCallback())
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(out_dir / "tensorboard")  # inside the run folder, not under checkpoints/
    return trainer, resolved, dropped


def require_trackers(report_to: str | list[str]) -> None:
    """Fail before loading the model when a chosen tracker's package is not installed."""
    for name in trackers(report_to):
        package = TRACKER_PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(
                f"train.report_to: {name} is chosen but its package is not installed; `pip install {package}`, "
                "or set train.report_to to 'none'"
            )


@cache
def answer_loss_trainer_class():
    """SFTTrainer whose loss sends only the answer positions through the LM head. Built lazily (imports TRL).

    Used on CPU: there TRL's own loss scores every position with its fused LM head (it compacts to the
    answer positions only on Triton devices) and computes the entropy over the whole vocabulary for its
    logs. With answers a few tokens long after a prompt of hundreds, that is a fifth of a step's FLOPs
    plus several full-vocabulary passes over every position. The loss is the same: the summed
    answer-token NLL over the batch's answer tokens (`num_items_in_batch` when Trainer passes it, so
    gradient accumulation and DDP weigh tokens as TRL does).

    It also trains shared-prefix batches (selfguide.train.shared_prefix): one packed row with a 4D
    attention mask, whose `row_tokens` counts the tokens of the rows it packs.
    """
    import torch
    from trl import SFTTrainer

    class AnswerLossTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            targets = inputs["labels"][:, 1:]
            # Positions whose next token is an answer token in some row of the batch.
            scored = (targets != -100).any(dim=0).nonzero().squeeze(1)
            model_inputs = {key: value for key, value in inputs.items() if key not in ("labels", "row_tokens")}
            mask = model_inputs.get("attention_mask")
            if mask is not None and mask.dim() == 4:  # a shared-prefix batch
                model_inputs["attention_mask"] = attention_mask_for(mask, self.model.config._attn_implementation)
            outputs = model(**model_inputs, use_cache=False, logits_to_keep=scored)
            logits, kept = outputs.logits, targets[:, scored]
            answer = kept != -100
            nll = torch.nn.functional.cross_entropy(
                logits.float().flatten(0, 1), kept.flatten(), ignore_index=-100, reduction="sum"
            )
            count = answer.sum() if num_items_in_batch is None else num_items_in_batch
            loss = nll / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages the gradients across ranks

            with torch.no_grad():
                correct = self.accelerator.gather_for_metrics(((logits.argmax(-1) == kept) & answer).sum()).sum()
                valid = self.accelerator.gather_for_metrics(answer.sum()).sum()
            self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
            if mode == "train":
                if "row_tokens" in inputs:
                    tokens = inputs["row_tokens"]
                elif "attention_mask" in inputs:
                    tokens = inputs["attention_mask"].sum()
                else:
                    tokens = inputs["input_ids"].numel()
                self._total_train_tokens += int(self.accelerator.gather_for_metrics(torch.as_tensor(tokens)).sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    return AnswerLossTrainer


def TrainingProgressCallback():
    """A TrainerCallback showing one "training" bar with the epoch and the last loss, on the main process.
    Built lazily, like JsonlLogCallback."""
    from transformers import TrainerCallback

    from selfguide.progress import bar as progress_bar

    class _TrainingProgressCallback(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress_bar("training", total=state.max_steps, initial=state.global_step, unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(epoch=f"{state.epoch:.2f}", loss=f"{logs['loss']:.4f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return _TrainingProgressCallback()


def train(
    task: TaskSpec | None,
    pairs: list[Pair],
    model: str,
    out_dir: Path,
    config: TrainConfig,
    *,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Finetune `model` (a local folder or hub id already in the cache) on `pairs` for `task`.

    With `resume`, continues from the last complete checkpoint in `out_dir/checkpoints` when one was
    written by the same run (same model, config and data); without it, old checkpoints are removed.
    """
    out_dir = Path(out_dir)
    if config.num_processes > 1 and not launched():  # N ranks in processes of their own (train/launch.py)
        return TrainResult.from_json(train_in_processes(task, pairs, model, out_dir, config, resume=resume, progress=progress))
    log_path = out_dir / layout.TRAIN_LOG
    config_path = out_dir / layout.TRAIN_CONFIG
    checkpoints = out_dir / layout.CHECKPOINTS
    callback = JsonlLogCallback(log_path)
    # One training at a time in this process (benchmark tasks run in threads): it seeds torch's
    # global generator and draws on it, so nothing else may draw meanwhile (selfguide/global_rng.py).
    with global_rng.LOCK:
        trainer, resolved, dropped = build_trainer(task, pairs, model, out_dir, config, callbacks=[callback], progress=progress)
        state = trainer.args.distributed_state
        n_train = len(trainer.train_dataset)
        fingerprint = training_fingerprint(task, pairs, model, config)

        last = last_checkpoint(checkpoints) if resume else None
        if last is not None and _read_json(checkpoints / layout.TRAIN_FINGERPRINT).get("fingerprint") != fingerprint:
            # Checkpoints of an earlier training in this folder (the data, model or settings changed
            # since): they cannot be resumed, so training starts over and replaces them.
            logger.warning("%s: checkpoints of a different training (data, model or settings changed): starting over", checkpoints)
            last, resume = None, False
        if state.is_main_process:
            out_dir.mkdir(parents=True, exist_ok=True)
            if not resume and checkpoints.exists():
                shutil.rmtree(checkpoints)
            checkpoints.mkdir(parents=True, exist_ok=True)
            (checkpoints / layout.TRAIN_FINGERPRINT).write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
            config_path.write_text(resolved.model_dump_json(indent=2) + "\n")
            # The log keeps the steps of the checkpoint we resume from and drops any logged after it.
            resumed_step = _checkpoint_step(last) if last is not None else 0
            _truncate_log(log_path, resumed_step)
        state.wait_for_everyone()

        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
        train_seconds = time.perf_counter() - started

        final_dir = out_dir / (layout.ADAPTER if resolved.method == "lora" else layout.FULL_MODEL)
        trainer.save_model(str(final_dir))
        state.wait_for_everyone()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = TrainResult(
        adapter_dir=final_dir if resolved.method == "lora" else None,
        model_dir=final_dir if resolved.method == "full" else None,
        n_train=n_train,
        n_dropped_too_long=dropped,
        log_path=log_path,
        final_loss=float(losses[-1]) if losses else None,
        steps=trainer.state.global_step,
        config_path=config_path,
        epochs=resolved.epochs,
        trained_tokens=trainer._total_train_tokens,
        train_seconds=train_seconds,
    )
    if progress and state.is_main_process:
        print(result.summary, flush=True)
    return result


def JsonlLogCallback(path: Path):
    """A TrainerCallback appending every Trainer log (the loss per step, then the end-of-training summary) to a
    JSONL file, one flushed line per log, from the main process only. Built lazily so that importing this module
    (for TrainConfig) stays free of transformers."""
    from transformers import TrainerCallback

    class _JsonlLogCallback(TrainerCallback):
        def __init__(self, path: Path):
            self.path = Path(path)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, "epoch": state.epoch, **logs}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, default=float) + "\n")
                handle.flush()

    return _JsonlLogCallback(path)


def last_checkpoint(folder: Path) -> Path | None:
    """The latest complete Trainer checkpoint in `folder` (one with its trainer_state.json), if any."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    complete = [
        path
        for path in folder.iterdir()
        if path.is_dir() and _checkpoint_step(path) is not None and (path / "trainer_state.json").is_file()
    ]
    return max(complete, key=_checkpoint_step) if complete else None


def _checkpoint_step(path: Path) -> int | None:
    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    try:
        return int(name[len(CHECKPOINT_PREFIX) :])
    except ValueError:
        return None


def _truncate_log(log_path: Path, keep_up_to_step: int) -> None:
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if keep_up_to_step and "loss" in entry and entry.get("step", 0) <= keep_up_to_step:
            kept.append(line)
    log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _fields(cls) -> set[str]:
    import dataclasses

    return {field.name for field in dataclasses.fields(cls)}


def train_job(job_path: str) -> None:
    """One rank of a training in processes (train/launch.py): the job file's training; rank 0
    writes its result beside it."""
    from accelerate import PartialState

    job = json.loads(Path(job_path).read_text())
    task = TaskSpec.model_validate(job["task"]) if job["task"] is not None else None
    config = TrainConfig.model_validate(job["config"])
    out_dir = Path(job_path).parent
    result = train(task, [tuple(p) for p in job["pairs"]], job["model"], out_dir, config, resume=job["resume"], progress=job["progress"])
    if PartialState().is_main_process:
        (out_dir / JOB_RESULT).write_text(json.dumps(result.to_json()))


if __name__ == "__main__":
    train_job(sys.argv[1])

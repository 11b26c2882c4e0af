"""Finetuning on synthetic pairs (selfguide.train.sft): TRL SFTTrainer + PEFT on the tiny model, on CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfguide.backends.chat import encode_prompt, render_answer
from selfguide.errors import SelfGuideError
from selfguide.prompts.task import task_messages
from selfguide.tasks.spec import Example, TaskSpec
from selfguide.train.config import TrainConfig
from selfguide.train.merge import merge_adapter
from selfguide.train.sft import TrainResult, build_trainer, build_training_rows, train

REPO = Path(__file__).resolve().parents[2]
COLORS = ["red", "green", "blue", "red", "green", "blue", "red", "green"]
PAIRS = [(f"Item {i}", color) for i, color in enumerate(COLORS)]
LONG_PAIR = ("word " * 300, "red")  # far over the max_length used below
MAX_LENGTH = 128
LORA = TrainConfig(epochs=3, learning_rate=1e-2, max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def task() -> TaskSpec:
    return TaskSpec(
        name="t",
        instruction="Reply with the color.",
        examples=[Example(input="The sky", output="blue"), Example(input="Grass", output="green")],
        type="generation",
    )


@pytest.fixture(scope="module")
def lora_run(task, tiny_model_dir, tmp_path_factory):
    """One LoRA training run shared by the tests that look at its outputs."""
    out = tmp_path_factory.mktemp("lora-run")
    return train(task, [*PAIRS, LONG_PAIR], str(tiny_model_dir), out, LORA), out


def messages_for(task: TaskSpec, source_input: str):
    return task_messages(task.instruction, [(e.input, e.output) for e in task.examples], source_input)


def answer_loss(model, rows) -> float:
    """Mean NLL of the answer tokens given the prompt, over the rows (what training minimises)."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            logits = model(input_ids=ids).logits[0, :-1]
            targets = ids[0, 1:]
            mask = torch.tensor(row["completion_mask"][1:], dtype=torch.bool)
            nll = torch.nn.functional.cross_entropy(logits[mask], targets[mask], reduction="sum")
            total, count = total + nll.item(), count + int(mask.sum())
    return total / count


def load_base(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat-template", "plain"])
def test_training_prompt_is_the_evaluator_prompt(task, tmp_path, chat_template):
    from transformers import AutoTokenizer

    from selfguide.tinymodel import build_tiny_model

    tok = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "m", chat_template=chat_template))
    rows, dropped = build_training_rows(task, PAIRS, tok, max_length=MAX_LENGTH)
    assert dropped == 0 and len(rows) == len(PAIRS)
    for row, (source_input, answer) in zip(rows, PAIRS, strict=True):
        messages = messages_for(task, source_input)
        prompt_ids = encode_prompt(tok, messages)
        completion_ids = tok(render_answer(tok, messages, answer), add_special_tokens=False)["input_ids"]
        n_prompt = row["completion_mask"].count(0)
        assert row["input_ids"][:n_prompt] == prompt_ids
        assert row["input_ids"][n_prompt:] == completion_ids
        assert row["completion_mask"] == [0] * len(prompt_ids) + [1] * len(completion_ids)
        # The answer closes its turn, so the model learns to stop.
        assert tok.eos_token_id in completion_ids


def test_a_demo_trained_on_leaves_its_own_prompt(task, tokenizer):
    """synth.demo_copies trains on the demos: each demo row is prompted with the other demos only,
    or the answer would sit in its own context and the row would teach copying."""
    demo = (task.examples[0].input, task.examples[0].output)
    (demo_row, plain_row), _ = build_training_rows(task, [demo, PAIRS[0]], tokenizer, MAX_LENGTH)
    others = [(e.input, e.output) for e in task.examples[1:]]
    n_prompt = demo_row["completion_mask"].count(0)
    assert demo_row["input_ids"][:n_prompt] == encode_prompt(tokenizer, task_messages(task.instruction, others, demo[0]))
    n_plain = plain_row["completion_mask"].count(0)
    assert plain_row["input_ids"][:n_plain] == encode_prompt(tokenizer, messages_for(task, PAIRS[0][0]))  # every demo


def test_answer_only_loss_masks_the_prompt(task, tiny_model_dir, tokenizer, tmp_path):
    config = TrainConfig(batch_size=3, max_length=MAX_LENGTH, shared_prefix=False)  # padded batches
    trainer, _, dropped = build_trainer(task, PAIRS, str(tiny_model_dir), tmp_path, config)
    assert dropped == 0
    rows, _ = build_training_rows(task, PAIRS, tokenizer, MAX_LENGTH)
    by_ids = {tuple(row["input_ids"]): row for row in rows}
    # The batches the trainer feeds the model: labels are -100 over the prompt and over padding,
    # and equal to the input ids over the answer.
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["labels"].shape == batch["input_ids"].shape and batch["input_ids"].shape[0] == 3
    for input_ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        length = int(attention.sum())
        row = by_ids[tuple(input_ids[:length].tolist())]
        n_prompt = row["completion_mask"].count(0)
        assert (labels[:n_prompt] == -100).all()
        assert labels[n_prompt:length].tolist() == row["input_ids"][n_prompt:]
        assert (labels[length:] == -100).all()


def test_too_long_examples_are_dropped_and_counted(task, tokenizer, lora_run):
    rows, dropped = build_training_rows(task, [*PAIRS, LONG_PAIR, LONG_PAIR], tokenizer, MAX_LENGTH)
    assert (len(rows), dropped) == (len(PAIRS), 2)
    assert all(len(row["input_ids"]) <= MAX_LENGTH for row in rows)
    # An example exactly at the limit stays.
    longest = max(len(row["input_ids"]) for row in rows)
    assert len(build_training_rows(task, PAIRS, tokenizer, longest)[0]) == len(PAIRS)
    assert len(build_training_rows(task, PAIRS, tokenizer, longest - 1)[0]) < len(PAIRS)
    result, _ = lora_run
    assert (result.n_train, result.n_dropped_too_long) == (len(PAIRS), 1)


def test_nothing_to_train_on_is_a_clear_error(task, tiny_model_dir, tmp_path):
    with pytest.raises(SelfGuideError, match="nothing to train on"):
        train(task, [], str(tiny_model_dir), tmp_path / "a", LORA)
    with pytest.raises(SelfGuideError, match="nothing to train on: all 2 pairs are longer than max_length=128"):
        train(task, [LONG_PAIR, LONG_PAIR], str(tiny_model_dir), tmp_path / "b", LORA)


def test_lora_training_lowers_the_loss(task, tiny_model_dir, tokenizer, lora_run):
    from peft import PeftModel

    result, _ = lora_run
    losses = [entry["loss"] for entry in read_log(result.log_path) if "loss" in entry]
    assert len(losses) == result.steps == 3 * len(PAIRS)
    assert result.final_loss == pytest.approx(losses[-1])
    first_epoch, last_epoch = losses[: len(PAIRS)], losses[-len(PAIRS) :]
    assert sum(last_epoch) / len(last_epoch) < 0.5 * sum(first_epoch) / len(first_epoch)
    # And on the training pairs, measured independently of the trainer's own log.
    rows, _ = build_training_rows(task, PAIRS, tokenizer, MAX_LENGTH)
    before = answer_loss(load_base(tiny_model_dir), rows)
    after = answer_loss(PeftModel.from_pretrained(load_base(tiny_model_dir), str(result.adapter_dir)), rows)
    assert after < 0.5 * before


def test_lora_outputs_reload_and_change_the_model(task, tiny_model_dir, tokenizer, lora_run):
    from peft import PeftModel

    result, out = lora_run
    adapter = result.adapter_dir
    assert adapter == out / "adapter" and result.model_dir is None
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "tokenizer.json"):
        assert (adapter / name).is_file(), name
    assert json.loads((adapter / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    # One checkpoint per epoch, and the resolved config.
    checkpoints = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-16", "checkpoint-24", "checkpoint-8"]
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["learning_rate"] == 1e-2 and saved["bf16"] is False and saved["method"] == "lora"
    assert TrainConfig(**saved).resolved() == TrainConfig(**saved)
    assert TrainConfig().resolved(cuda_bf16=False).learning_rate == 2e-4
    assert TrainConfig(method="full").resolved(cuda_bf16=True).model_dump()["learning_rate"] == 5e-5
    assert TrainConfig().resolved(cuda_bf16=True).bf16 is True
    # Checkpointing saves GPU memory; on a CPU it only recomputes the forward.
    assert saved["gradient_checkpointing"] is False
    assert TrainConfig().resolved(cuda=True).gradient_checkpointing is True
    assert TrainConfig(gradient_checkpointing=True).resolved(cuda=False).gradient_checkpointing is True

    base = load_base(tiny_model_dir)
    tuned = PeftModel.from_pretrained(load_base(tiny_model_dir), str(adapter))
    prompt = torch.tensor([encode_prompt(tokenizer, messages_for(task, PAIRS[0][0]))])
    with torch.no_grad():
        base_logits, tuned_logits = base(prompt).logits, tuned(prompt).logits
        assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)
        base_out = base.generate(prompt, max_new_tokens=6, do_sample=False)[0, prompt.shape[1] :]
        tuned_out = tuned.generate(prompt, max_new_tokens=6, do_sample=False)[0, prompt.shape[1] :]
    assert base_out.tolist() != tuned_out.tolist()
    # The tuned model answers with a color and closes its turn.
    assert tokenizer.decode(tuned_out, skip_special_tokens=True).strip() in set(COLORS)
    assert tokenizer.eos_token_id in tuned_out.tolist()


def test_merge_adapter_matches_base_plus_adapter(task, tiny_model_dir, tokenizer, lora_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, _ = lora_run
    merged_dir = merge_adapter(str(tiny_model_dir), result.adapter_dir, tmp_path / "merged")
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert AutoTokenizer.from_pretrained(merged_dir).chat_template == tokenizer.chat_template
    tuned = PeftModel.from_pretrained(load_base(tiny_model_dir), str(result.adapter_dir)).eval()
    prompt = torch.tensor([encode_prompt(tokenizer, messages_for(task, "Item 3"))])
    with torch.no_grad():
        assert torch.allclose(merged.eval()(prompt).logits, tuned(prompt).logits, atol=1e-4)


def test_full_finetune_writes_a_loadable_model(task, tiny_model_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    config = TrainConfig(method="full", epochs=1, learning_rate=1e-3, max_length=MAX_LENGTH, save_every_epoch=False)
    result = train(task, PAIRS, str(tiny_model_dir), tmp_path, config)
    assert result.model_dir == tmp_path / "model" and result.adapter_dir is None
    assert not (tmp_path / "adapter").exists() and not list((tmp_path / "checkpoints").glob("checkpoint-*"))
    assert json.loads((tmp_path / "train_config.json").read_text())["learning_rate"] == 1e-3
    tuned = AutoModelForCausalLM.from_pretrained(result.model_dir)
    base = load_base(tiny_model_dir)
    tuned_weights, base_weights = tuned.state_dict(), base.state_dict()
    assert tuned_weights.keys() == base_weights.keys()
    assert any(not torch.equal(tuned_weights[k], base_weights[k]) for k in base_weights)
    rows, _ = build_training_rows(task, PAIRS, tokenizer, MAX_LENGTH)
    assert answer_loss(tuned, rows) < answer_loss(base, rows)


def test_training_is_deterministic_given_the_seed(task, tiny_model_dir, tmp_path):
    config = TrainConfig(epochs=1, learning_rate=1e-2, max_length=MAX_LENGTH, save_every_epoch=False)
    runs = [train(task, PAIRS, str(tiny_model_dir), tmp_path / name, config) for name in ("a", "b")]
    losses = [[e["loss"] for e in read_log(r.log_path) if "loss" in e] for r in runs]
    assert losses[0] == losses[1]
    other = train(task, PAIRS, str(tiny_model_dir), tmp_path / "c", config.model_copy(update={"seed": 7}))
    assert [e["loss"] for e in read_log(other.log_path) if "loss" in e] != losses[0]


def test_training_follows_the_run_seed_unless_its_own_is_set():
    from selfguide.config import load_config

    assert load_config(values={"seed": 3}).training().seed == 3  # `selfguide run --seed 3` trains with seed 3 too
    assert load_config(overrides=["train.seed=5"], values={"seed": 3}).training().seed == 5
    assert TrainConfig().resolved(cuda_bf16=False, cuda=False).seed == 0  # a TrainConfig used without a run


def test_resume_continues_from_the_last_finished_epoch(task, tiny_model_dir, tmp_path):
    import shutil

    config = TrainConfig(epochs=2, learning_rate=1e-2, max_length=MAX_LENGTH)
    full = train(task, PAIRS, str(tiny_model_dir), tmp_path, config)
    full_log = [e for e in read_log(full.log_path) if "loss" in e]
    assert [e["step"] for e in full_log] == list(range(1, 17))

    # A crash during epoch 2: its checkpoint and the final adapter never got written, but its first
    # steps were already logged.
    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-16")
    shutil.rmtree(tmp_path / "adapter")
    resumed = train(task, PAIRS, str(tiny_model_dir), tmp_path, config)
    log = [e for e in read_log(resumed.log_path) if "loss" in e]
    # Steps 1-8 kept from the first run, 9-16 trained again after resuming: each step logged once.
    assert [e["step"] for e in log] == list(range(1, 17))
    assert resumed.steps == 16 and (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    # Resuming restores optimizer, scheduler, data order and RNG: the same losses as without the crash.
    assert [e["loss"] for e in log] == pytest.approx([e["loss"] for e in full_log], rel=1e-4)

    # Checkpoints from another run (here another learning rate) are never resumed: training starts over.
    other = train(task, PAIRS, str(tiny_model_dir), tmp_path, config.model_copy(update={"learning_rate": 5e-3}))
    other_log = [e for e in read_log(other.log_path) if "loss" in e]
    assert [e["step"] for e in other_log] == list(range(1, 17)) and other_log[0]["loss"] == pytest.approx(full_log[0]["loss"], rel=1e-4)
    assert [e["loss"] for e in other_log][1:] != pytest.approx([e["loss"] for e in full_log][1:], rel=1e-4)
    # Without resume, old checkpoints are cleared and training starts over.
    fresh = train(task, PAIRS, str(tiny_model_dir), tmp_path, config.model_copy(update={"epochs": 1}), resume=False)
    assert fresh.steps == 8
    assert [p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")] == ["checkpoint-8"]
    assert [e["step"] for e in read_log(fresh.log_path) if "loss" in e] == list(range(1, 9))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(model_dir: Path, out: Path, *overrides: str) -> None:
    """tests/accelerate_train_script.py in two CPU processes (DDP over gloo), TrainConfig `overrides` as FIELD=JSON."""
    # `accelerate launch --cpu --num_processes 2` starts a single process unless an MPI hostfile is
    # given (accelerate 1.x simple launcher), so the two processes come from the torchrun launcher
    # (--multi_gpu) with CUDA hidden and ACCELERATE_USE_CPU set: DDP over gloo on the CPU.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(REPO / "tests" / "accelerate_train_script.py"), str(model_dir), str(out), *overrides,
    ]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.slow
def test_training_under_accelerate_launch_with_two_cpu_processes(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    accelerate_launch(tiny_model_dir, out)

    reports = [json.loads((out / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["num_processes"] for r in reports] == [2, 2]
    assert reports[0]["distributed_type"].endswith("MULTI_CPU") and reports[0]["backend"] == "gloo"
    # 8 pairs over 2 processes at batch size 1: 4 steps per epoch, 2 epochs, the same on both ranks.
    assert [r["steps"] for r in reports] == [8, 8]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    # Only the main process logged: each step once.
    steps = [e["step"] for e in read_log(out / "train_log.jsonl") if "loss" in e]
    assert steps == list(range(1, 9))
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]


@pytest.mark.slow
def test_shared_prefix_batches_under_accelerate_launch_equal_padded_ones(tiny_model_dir, tmp_path):
    # 8 pairs, 2 per process and step: 2 steps per epoch. No dropout: packed and padded batches draw different masks.
    accelerate_launch(tiny_model_dir, tmp_path / "shared", "batch_size=2", "lora_dropout=0.0", "shared_prefix=true")
    accelerate_launch(tiny_model_dir, tmp_path / "padded", "batch_size=2", "lora_dropout=0.0", "shared_prefix=false")
    assert json.loads((tmp_path / "shared" / "train_config.json").read_text())["shared_prefix"] is True
    shared, padded = ([e for e in read_log(tmp_path / name / "train_log.jsonl") if "loss" in e] for name in ("shared", "padded"))
    assert [e["step"] for e in shared] == [e["step"] for e in padded] == [1, 2, 3, 4]
    assert [e["loss"] for e in shared] == pytest.approx([e["loss"] for e in padded], rel=1e-4)
    assert shared[-1]["num_tokens"] == padded[-1]["num_tokens"]


def test_answer_positions_only_loss_equals_trls_loss(task, tiny_model_dir, tmp_path, monkeypatch):
    """The LM head on answer positions only gives TRL's loss, step by step, with batches of 3 rows: TRL's
    padded, ours packed around their shared prefix (the default on CPU)."""
    import trl

    from selfguide.train import sft

    # No LoRA dropout: packed and padded batches would draw different dropout masks.
    config = TrainConfig(epochs=1, batch_size=3, learning_rate=1e-2, max_length=MAX_LENGTH, save_every_epoch=False, lora_dropout=0.0)
    pairs = [*PAIRS, ("A much longer item than the others, to pad the batch", "blue")]
    ours = train(task, pairs, str(tiny_model_dir), tmp_path / "ours", config, progress=False)
    assert json.loads(ours.config_path.read_text())["shared_prefix"] is True
    monkeypatch.setattr(sft, "answer_loss_trainer_class", lambda: trl.SFTTrainer)
    padded = config.model_copy(update={"shared_prefix": False})
    theirs = train(task, pairs, str(tiny_model_dir), tmp_path / "trl", padded, progress=False)
    our_log, trl_log = read_log(ours.log_path), read_log(theirs.log_path)
    assert [e["loss"] for e in our_log if "loss" in e] == pytest.approx([e["loss"] for e in trl_log if "loss" in e], rel=1e-4)
    assert [e["mean_token_accuracy"] for e in our_log if "loss" in e] == [e["mean_token_accuracy"] for e in trl_log if "loss" in e]
    # Trained tokens: prompt and answer, no padding.
    assert ours.trained_tokens == theirs.trained_tokens == our_log[-2]["num_tokens"] == trl_log[-2]["num_tokens"]


def test_progress_is_a_named_bar_and_one_summary_line(task, tiny_model_dir, tokenizer, tmp_path, capsys):
    config = TrainConfig(epochs=2, learning_rate=1e-2, max_length=MAX_LENGTH, save_every_epoch=False)
    result = train(task, PAIRS, str(tiny_model_dir), tmp_path / "a", config)
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == result.summary
    assert result.summary.startswith("trained 8 pairs (0 dropped as too long): 16 steps, 2 epochs, final loss ")
    assert f"final loss {result.final_loss:.4f}" in result.summary and " trained tokens/s, " in result.summary
    rows, _ = build_training_rows(task, PAIRS, tokenizer, MAX_LENGTH)
    assert result.trained_tokens == 2 * sum(len(row["input_ids"]) for row in rows)
    assert "training: 100%" in err and "16/16" in err and "loss=" in err
    # No raw log dicts, per step or at the end.
    assert "{'loss'" not in out + err and "'train_runtime'" not in out + err
    train(task, PAIRS, str(tiny_model_dir), tmp_path / "b", config, progress=False)
    quiet_out, quiet_err = capsys.readouterr()  # (library loading bars aside: the CLI silences those)
    assert quiet_out == "" and "training:" not in quiet_err


def test_tensorboard_writes_event_files_inside_the_training_folder(task, tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(epochs=1, learning_rate=1e-2, max_length=MAX_LENGTH, report_to="tensorboard")
    train(task, PAIRS, str(tiny_model_dir), tmp_path / "out", config, progress=False)
    events = list((tmp_path / "out" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    assert len(accumulator.Scalars("train/loss")) == len(PAIRS)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not (tmp_path / "out" / "checkpoints" / "runs").exists()


def test_unknown_or_missing_tracker_is_a_clear_error(task, tiny_model_dir, tmp_path):
    import importlib.util

    from pydantic import ValidationError

    from selfguide.config import load_config
    from selfguide.errors import BadInputError, MissingDependencyError

    with pytest.raises(ValidationError, match="unknown tracker 'tensorbored'"):
        TrainConfig(report_to=["tensorboard", "tensorbored"])
    with pytest.raises(BadInputError, match="train.report_to"):
        load_config(None, ["train.report_to=tensorbored"])
    assert TrainConfig(report_to="none").report_to == "none"
    if importlib.util.find_spec("swanlab") is not None:
        pytest.skip("swanlab is installed")
    config = TrainConfig(epochs=1, max_length=MAX_LENGTH, report_to=["swanlab"])
    with pytest.raises(MissingDependencyError, match="train.report_to: swanlab is chosen but its package is not installed; `pip install swanlab`"):
        train(task, PAIRS, str(tiny_model_dir), tmp_path, config)
    assert not (tmp_path / "train_config.json").exists()


def test_trainings_in_threads_take_turns_and_match_a_training_alone(task, tiny_model_dir, tmp_path, monkeypatch):
    """Two threads train at once while a third keeps loading a LoRA adapter into the hf backend
    (PEFT draws on torch's global generator as it builds one): the trainings take turns, and each
    ends with the losses and weights of the same training alone (selfguide/global_rng.py)."""
    import threading

    from safetensors.torch import load_file

    from selfguide.backends.cache import CallCache
    from selfguide.backends.factory import cached_model
    from selfguide.backends.model_config import ModelConfig
    from selfguide.train import sft

    config = TrainConfig(epochs=2, learning_rate=1e-2, max_length=MAX_LENGTH, save_every_epoch=False)
    alone = train(task, PAIRS, str(tiny_model_dir), tmp_path / "alone", config)

    guard, inside, most = threading.Lock(), [0], [0]

    def counted_build(*args, **kwargs):
        """build_trainer (seeding, LoRA init) to the end of trainer.train, counted as one training."""
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        trainer, resolved, dropped = real_build(*args, **kwargs)
        real_train = trainer.train

        def train_and_leave(*a, **k):
            try:
                return real_train(*a, **k)
            finally:
                with guard:
                    inside[0] -= 1

        trainer.train = train_and_leave
        return trainer, resolved, dropped

    real_build = sft.build_trainer
    monkeypatch.setattr(sft, "build_trainer", counted_build)
    done, loads = threading.Event(), []

    def keep_loading():
        adapter = ModelConfig(name=str(tiny_model_dir), adapter=str(alone.adapter_dir), device="cpu", dtype="float32")
        cache = CallCache(tmp_path / "loads.sqlite")
        while not done.is_set():
            model = cached_model(adapter, cache, progress=False)
            model.backend()
            model.close()
            loads.append(1)

    start = threading.Barrier(2)
    results: dict[str, sft.TrainResult] = {}

    def train_in_thread(name: str):
        start.wait(timeout=30)
        results[name] = train(task, PAIRS, str(tiny_model_dir), tmp_path / name, config)

    loader = threading.Thread(target=keep_loading)
    trainers = [threading.Thread(target=train_in_thread, args=(name,)) for name in ("a", "b")]
    loader.start()
    for thread in trainers:
        thread.start()
    for thread in trainers:
        thread.join(timeout=300)
    done.set()
    loader.join(timeout=60)

    assert set(results) == {"a", "b"} and most[0] == 1 and loads
    losses = [e["loss"] for e in read_log(alone.log_path) if "loss" in e]
    weights = load_file(alone.adapter_dir / "adapter_model.safetensors")
    for result in results.values():
        assert [e["loss"] for e in read_log(result.log_path) if "loss" in e] == losses
        assert all(torch.equal(weights[k], v) for k, v in load_file(result.adapter_dir / "adapter_model.safetensors").items())


def test_a_train_result_survives_the_trip_from_a_training_rank():
    """A rank in its own process hands its result back as JSON (train/launch.py): paths come back as paths."""
    result = TrainResult(Path("out/adapter"), None, 12, 1, Path("out/train_log.jsonl"), 0.5, 6, Path("out/train_config.json"), 2.0, 900, 3.5)
    back = TrainResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back == result and isinstance(back.log_path, Path) and back.model_dir is None

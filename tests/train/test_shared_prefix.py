"""Shared-prefix batches (selfguide.train.shared_prefix): one packed sequence trains exactly like the padded batch."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from selfguide.tasks.spec import Example, TaskSpec
from selfguide.train.config import TrainConfig
from selfguide.train.sft import build_trainer, build_training_rows, train
from selfguide.train.shared_prefix import pack_shared_prefix, shared_prefix_collator, useful_shared_prefix

MAX_LENGTH = 160
# Inputs and answers of different lengths, so the remainders after the task prompt differ.
PAIRS = [
    ("Item 1", "red"),
    ("A much longer item than the others", "green"),
    ("Item 22 of many", "light blue"),
    ("Leaf", "green"),
    ("Item 4", "red"),
    ("Two words", "blue"),
    ("Another fairly long item here", "dark red"),
    ("Item 7", "blue"),
]
CONFIG = TrainConfig(epochs=2, learning_rate=1e-2, max_length=MAX_LENGTH, lora_dropout=0.0, batch_size=4)


@pytest.fixture(scope="module")
def task() -> TaskSpec:
    return TaskSpec(
        name="t",
        instruction="Reply with the color of the item.",
        examples=[Example(input="The sky", output="blue"), Example(input="Grass", output="green")],
        type="generation",
    )


def padded_collator(tokenizer):
    """The collator TRL's SFTTrainer builds for pre-tokenised rows: right padding, a 2D mask."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)


def examples_of(trainer, count: int) -> list[dict]:
    """The first rows as they reach the collator: input_ids and labels (-100 off the answer)."""
    return [{key: trainer.train_dataset[i][key] for key in ("input_ids", "labels")} for i in range(count)]


def loss_and_grads(trainer, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model = trainer.model
    model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = {name: param.grad.clone() for name, param in model.named_parameters() if param.requires_grad}
    return loss.item(), grads


def lora_trainer(task, pairs, model_dir, out, attn="sdpa"):
    """A trainer whose LoRA B weights are random, so that every LoRA weight gets a gradient."""
    trainer, _, _ = build_trainer(task, pairs, str(model_dir), out, CONFIG.model_copy(update={"shared_prefix": True}), progress=False)
    trainer.model.set_attn_implementation(attn)
    assert trainer.model.config._attn_implementation == attn
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    trainer.model.train()
    return trainer


def assert_packed_equals_padded(trainer, tokenizer, examples) -> dict:
    packed, padded = pack_shared_prefix(examples), padded_collator(tokenizer)(examples)
    assert packed is not None and packed["input_ids"].shape[0] == 1
    # The same answer tokens are scored (Trainer's num_items_in_batch), and every row's tokens are counted.
    answers = sum(sum(label != -100 for label in example["labels"]) for example in examples)
    assert packed["labels"][..., 1:].ne(-100).sum() == padded["labels"][..., 1:].ne(-100).sum() == answers
    assert int(packed["row_tokens"]) == int(padded["attention_mask"].sum())
    packed_loss, packed_grads = loss_and_grads(trainer, packed)
    padded_loss, padded_grads = loss_and_grads(trainer, padded)
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    assert packed_grads.keys() == padded_grads.keys() and len(packed_grads) > 0
    for name, grad in packed_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(grad, padded_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    return packed


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_step_equals_the_padded_batch(task, tiny_model_dir, tokenizer, tmp_path, attn):
    trainer = lora_trainer(task, PAIRS, tiny_model_dir, tmp_path, attn)
    examples = examples_of(trainer, 4)
    packed = assert_packed_equals_padded(trainer, tokenizer, examples)
    lengths = [len(example["input_ids"]) for example in examples]
    assert len(set(lengths)) > 1
    # One copy of the prefix, then each row's remainder, positioned as if it followed the prefix alone.
    prefix = (sum(lengths) - packed["input_ids"].shape[1]) // (len(examples) - 1)  # packed: P + (len - P) per row
    assert prefix > max(lengths) // 2
    assert packed["input_ids"][0, :prefix].tolist() == examples[0]["input_ids"][:prefix]
    assert packed["position_ids"][0].tolist() == list(range(prefix)) + [
        position for n in lengths for position in range(prefix, n)
    ]
    mask = packed["attention_mask"][0, 0]
    first, second = prefix, lengths[0]  # where the first two remainders start
    assert mask[second, :prefix].all() and mask[second, second] and not mask[second, first:second].any()
    assert not mask[first, first + 1 :].any()


def test_a_remainder_of_only_the_answer(task, tiny_model_dir, tokenizer, tmp_path):
    # Rows with the same prompt: their common prefix reaches the answers, so it stops one token
    # before, and each remainder is the prompt's last token and the answer.
    pairs = [("Item 1", "red"), ("Item 1", "dark green"), ("Item 1", "blue")]
    trainer = lora_trainer(task, pairs, tiny_model_dir, tmp_path)
    examples = examples_of(trainer, 3)
    packed = assert_packed_equals_padded(trainer, tokenizer, examples)
    prompt = next(i for i, label in enumerate(examples[0]["labels"]) if label != -100)
    assert packed["input_ids"].shape[1] == (prompt - 1) + sum(len(e["input_ids"]) - (prompt - 1) for e in examples)


def test_one_row_packs_to_itself_and_trains_as_before(task, tiny_model_dir, tokenizer, tmp_path):
    trainer = lora_trainer(task, PAIRS, tiny_model_dir, tmp_path)
    example = examples_of(trainer, 1)
    packed = assert_packed_equals_padded(trainer, tokenizer, example)
    length = len(example[0]["input_ids"])
    assert packed["input_ids"][0].tolist() == example[0]["input_ids"]
    assert packed["position_ids"][0].tolist() == list(range(length))
    assert torch.equal(packed["attention_mask"][0, 0], torch.ones(length, length).tril().bool())
    # The collator leaves a batch of one row to the padded path.
    batch = shared_prefix_collator(padded_collator(tokenizer))(example)
    assert batch["attention_mask"].dim() == 2


def test_rows_without_a_common_prefix_take_the_padded_path(task, tiny_model_dir, tokenizer, tmp_path):
    examples = [
        {"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]},
        {"input_ids": [9, 6, 7], "labels": [-100, -100, 7]},
    ]
    assert pack_shared_prefix(examples) is None
    batch = shared_prefix_collator(padded_collator(tokenizer))(examples)
    assert batch["attention_mask"].dim() == 2 and batch["input_ids"].shape == (2, 4)
    # Rows that carry their own instruction share no useful prefix: by default the trainer pads them.
    own = [(source, answer, f"Instruction {i}: name a color that fits, in one word.") for i, (source, answer) in enumerate(PAIRS)]
    rows, _ = build_training_rows(None, own, tokenizer, MAX_LENGTH)
    assert not useful_shared_prefix(rows)
    _, resolved, _ = build_trainer(None, own, str(tiny_model_dir), tmp_path / "own", CONFIG, progress=False)
    assert resolved.shared_prefix is False
    # Task rows do, and batch size 1 never packs.
    assert useful_shared_prefix(build_training_rows(task, PAIRS, tokenizer, MAX_LENGTH)[0])
    # A demo trained on leaves its own prompt (synth.demo_copies): one such row does not turn packing off for all.
    demo = (task.examples[0].input, task.examples[0].output)
    assert useful_shared_prefix(build_training_rows(task, [*PAIRS, demo], tokenizer, MAX_LENGTH)[0])
    _, resolved, _ = build_trainer(task, PAIRS, str(tiny_model_dir), tmp_path / "task", CONFIG, progress=False)
    assert resolved.shared_prefix is True
    one = CONFIG.model_copy(update={"batch_size": 1})
    assert build_trainer(task, PAIRS, str(tiny_model_dir), tmp_path / "one", one, progress=False)[1].shared_prefix is False


def read_losses(path) -> list[tuple[int, float]]:
    return [(entry["step"], entry["loss"]) for entry in map(json.loads, path.read_text().splitlines()) if "loss" in entry]


def test_training_with_shared_prefix_matches_padded_batches_and_resumes(task, tiny_model_dir, tokenizer, tmp_path):
    shared = train(task, PAIRS, str(tiny_model_dir), tmp_path / "shared", CONFIG, progress=False)
    padded = train(task, PAIRS, str(tiny_model_dir), tmp_path / "padded", CONFIG.model_copy(update={"shared_prefix": False}), progress=False)
    assert (shared.steps, padded.steps) == (4, 4)  # 8 pairs, 4 per step, 2 epochs
    assert (tmp_path / "shared" / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "shared" / "train_config.json").read_text())["shared_prefix"] is True
    shared_log, padded_log = read_losses(shared.log_path), read_losses(padded.log_path)
    assert [step for step, _ in shared_log] == [1, 2, 3, 4]
    assert [loss for _, loss in shared_log] == pytest.approx([loss for _, loss in padded_log], rel=1e-4)
    assert shared_log[-1][1] < shared_log[0][1]
    rows, _ = build_training_rows(task, PAIRS, tokenizer, MAX_LENGTH)
    assert shared.trained_tokens == padded.trained_tokens == 2 * sum(len(row["input_ids"]) for row in rows)

    # A crash in epoch 2: resuming from the epoch-1 checkpoint gives the same losses.
    shutil.rmtree(tmp_path / "shared" / "checkpoints" / "checkpoint-4")
    shutil.rmtree(tmp_path / "shared" / "adapter")
    resumed = train(task, PAIRS, str(tiny_model_dir), tmp_path / "shared", CONFIG, progress=False)
    assert resumed.steps == 4 and (tmp_path / "shared" / "adapter" / "adapter_model.safetensors").is_file()
    resumed_log = read_losses(resumed.log_path)
    assert [step for step, _ in resumed_log] == [1, 2, 3, 4]
    assert [loss for _, loss in resumed_log] == pytest.approx([loss for _, loss in shared_log], rel=1e-4)

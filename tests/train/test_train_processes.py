"""`selfguide train|run --num-processes N`: one training in N processes (DDP over gloo on the CPU
here), started by the run itself through accelerate's launcher (selfguide/train/launch.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import REPO, run_cli
from tests.test_harden import write_task

COLORS = ["red", "green", "blue", "red", "green", "blue", "red", "green"]
# No dropout: each process draws its own masks, so with dropout on the two runs differ by design.
SETTINGS = ["--set", "train.lora_dropout=0.0", "--set", "train.learning_rate=0.01", "--set", "train.shared_prefix=false", "--quiet"]


def losses(folder: Path) -> list[float]:
    return [e["loss"] for e in map(json.loads, (folder / "train_log.jsonl").read_text().splitlines()) if "loss" in e]


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """8 pairs, 2 epochs: one process at batch 2 and two processes at batch 1 each make the same 8
    steps on the same global batches. Their losses agree to 1e-4 (relative). Not exactly: in
    float32 (eps 1.2e-7) two ranks' gradients averaged by all-reduce, and matmuls on one thread per
    rank instead of several, add in another order, and the rounding carries through the updates.
    Measured on 2 cores: 3e-7 at most over the 8 steps; 1e-4 leaves room for other thread counts
    and BLAS builds; another global batch or data order gives other losses altogether."""
    task = write_task(tmp_path)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"input": f"Item {i}", "output": c}) + "\n" for i, c in enumerate(COLORS)))
    runs = {}
    for processes, batch in ((1, 2), (2, 1)):
        out = tmp_path / f"p{processes}"
        args = ["train", str(data), "--task", str(task), "-m", str(tiny_model_dir), "-o", str(out), "--epochs", "2",
                "--num-processes", str(processes), "--set", f"train.batch_size={batch}", *SETTINGS]  # fmt: skip
        code, _, err = run_cli(args, capsys, monkeypatch)
        assert code == 0, err
        runs[processes] = losses(out)
    assert len(runs[1]) == 8 and runs[2] == pytest.approx(runs[1], rel=1e-4)
    assert (tmp_path / "p2" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_run_with_two_processes_trains_once_and_evaluates_once(tiny_model_dir, tmp_path, capsys, monkeypatch):
    task = write_task(tmp_path)
    out = tmp_path / "run"
    args = ["run", str(task), "-m", str(tiny_model_dir), "-c", str(REPO / "configs" / "tiny.yaml"), "-o", str(out), "--limit", "2",
            "--set", "synth.inputs.rounds=1", "--set", "synth.outputs.n=2", "--num-processes", "2", *SETTINGS]  # fmt: skip
    code, stdout, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    adapters = [p for p in out.rglob("adapter_model.safetensors") if "checkpoints" not in p.parts]
    assert len(adapters) == 1  # one training, not one per process
    trained = adapters[0].parent.parent
    steps = [e["step"] for e in map(json.loads, (trained / "train_log.jsonl").read_text().splitlines()) if "loss" in e]
    assert steps == sorted(set(steps))  # each step logged once, by rank 0
    assert json.loads((trained / "train_config.json").read_text())["num_processes"] == 2
    assert len(list(out.rglob("report.md"))) == 1
    predictions = [p for p in out.rglob("predictions.jsonl")]
    assert predictions and all(len(p.read_text().splitlines()) == 2 for p in predictions)  # each eval once, on 2 items

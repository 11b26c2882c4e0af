"""Train the tiny model on a fixed toy task; run by tests/train/test_train.py under `accelerate launch`.

Usage: accelerate launch ... tests/accelerate_train_script.py MODEL_DIR OUT_DIR [FIELD=JSON ...]

FIELD=JSON arguments override TrainConfig fields, e.g. batch_size=2 shared_prefix=false.

Each process writes OUT_DIR/rank-<i>.json with what it saw (world size, the TrainResult), so the
test can check that two processes really trained together and that only rank 0 wrote outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from selfguide.tasks.spec import Example, TaskSpec
from selfguide.train.sft import TrainConfig, train

COLORS = ["red", "green", "blue", "red", "green", "blue", "red", "green"]


def main(model_dir: str, out_dir: str, overrides: dict) -> None:
    task = TaskSpec(
        name="t",
        instruction="Reply with the color.",
        examples=[Example(input="The sky", output="blue")],
        type="generation",
    )
    pairs = [(f"Item {i}", color) for i, color in enumerate(COLORS)]
    config = TrainConfig(epochs=2, learning_rate=1e-2, lora_r=4, lora_alpha=8, **overrides)
    result = train(task, pairs, model_dir, Path(out_dir), config)

    from accelerate import PartialState

    state = PartialState()
    report = {
        "process_index": state.process_index,
        "num_processes": state.num_processes,
        "distributed_type": str(state.distributed_type),
        "backend": getattr(state, "backend", None),
        "steps": result.steps,
        "n_train": result.n_train,
        "final_loss": result.final_loss,
        "adapter_dir": str(result.adapter_dir),
    }
    Path(out_dir, f"rank-{state.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], {field: json.loads(value) for field, value in (arg.split("=", 1) for arg in sys.argv[3:])})

"""Training reuse: one fingerprint of what decides a training, and `train_once`, which skips a
training its folder already finished.

The fingerprint covers the pairs, the task prompt (instruction and demos), the weights (by name
and by `model_fingerprint`) and every setting that changes the trained weights. `train_once` keeps
it in <out>/done.json beside the trained folder; `selfguide.train.sft` keeps it beside its
checkpoints, so an interrupted training resumes only into the same training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from selfguide import layout
from selfguide.errors import SelfGuideError
from selfguide.io import write_json
from selfguide.prompts.task import Pair
from selfguide.tasks.spec import TaskSpec
from selfguide.train.config import TrainConfig
from selfguide.train.fingerprint import training_fingerprint


@dataclass
class TrainOutput:
    out_dir: Path
    model_dir: Path  # the adapter folder (LoRA) or the full model folder
    is_adapter: bool
    n_train: int
    n_dropped_too_long: int
    log_path: Path
    reused: bool = False
    merged_dir: Path | None = None


def train_once(task: TaskSpec | None, pairs: list[Pair], weights: str, out: Path, config: TrainConfig, progress: bool = True) -> TrainOutput:
    """Finetune `weights` on `pairs` into `out`, or reuse the training `out` already finished with
    the same fingerprint."""
    from selfguide.train.sft import train

    fingerprint = training_fingerprint(task, pairs, weights, config)
    done_path = out / layout.TRAIN_DONE
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    if done.get("fingerprint") == fingerprint and Path(done["model_dir"]).exists():
        return TrainOutput(out, Path(done["model_dir"]), done["is_adapter"], done["n_train"], done.get("n_dropped_too_long", 0), out / layout.TRAIN_LOG, reused=True)
    try:
        trained = train(task, pairs, weights, out, config, progress=progress)
    except OSError as err:
        if Path(weights).is_dir():
            raise
        # from_pretrained could not find it: a served name that is no hub id, or no network.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SelfGuideError(f"{weights!r}: could not load it to finetune ({first}); set train.model to its Hugging Face id or a local folder") from None
    result = TrainOutput(out, Path(trained.output_dir), trained.adapter_dir is not None, trained.n_train, trained.n_dropped_too_long, Path(trained.log_path))
    write_json(
        done_path,
        {"fingerprint": fingerprint, "model_dir": str(result.model_dir), "is_adapter": result.is_adapter, "n_train": result.n_train, "n_dropped_too_long": result.n_dropped_too_long},
    )
    return result

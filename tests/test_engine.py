"""The run engine's steps on their own: what a dry run counts, what an empty dataset leaves, and
the one training-reuse helper that `run`, the benchmarks and methods' own trainings share."""

from __future__ import annotations

import pytest
from tests.scripted import scripted_model

from selfguide import layout
from selfguide.backends.resolve import resolve_models
from selfguide.config import load_config
from selfguide.engine import Engine, Folders, Tally, finetune_evaluate
from selfguide.io import write_json
from selfguide.stages.finetune import finetune
from selfguide.tasks.spec import EvalItem, Example, TaskSpec
from selfguide.train import sft
from selfguide.train.config import TrainConfig
from selfguide.train.reuse import train_once, training_fingerprint

TASK = TaskSpec(
    name="t", instruction="Echo.", examples=[Example(input="a", output="a")], type="generation", eval=[EvalItem(input=str(i), references=[str(i)]) for i in range(4)]
)


def engine(tmp_path, tally: Tally | None) -> Engine:
    base, _ = scripted_model(lambda messages, params, j: "x", tmp_path / "cache.sqlite")
    models = resolve_models(load_config(values={"model.name": str(tmp_path)}))
    return Engine(models, lambda config: pytest.fail(f"opened {config.name}"), progress=False, tally=tally, base=base)


def test_a_dry_run_counts_a_training_and_its_eval_unless_the_data_is_empty(tmp_path):
    tally = Tally()
    folders = Folders(tmp_path / "synth", tmp_path / "train", tmp_path / "eval")
    assert finetune_evaluate(engine(tmp_path, tally), TASK, load_config(), None, folders, "x") == (None, None)  # data not made yet
    assert tally.training_runs == 1 and tally.by_stage == {"eval: x": [4, 4]}
    finetune_evaluate(engine(tmp_path, tally), TASK, load_config(), [], folders, "x")  # made, and empty: nothing to train
    assert tally.training_runs == 1 and tally.calls == 4
    # A real run with no pairs trains nothing and loads no model.
    assert finetune_evaluate(engine(tmp_path, None), TASK, load_config(), [], folders, "x") == (None, None)


def test_one_training_fingerprint_for_every_caller(tmp_path, monkeypatch):
    """A training finished by `train_once` (run, the benchmarks) is the one a method's own
    `finetune` finds in the same folder: one fingerprint decides reuse."""
    pairs, config = [("in", "out")], TrainConfig(epochs=2)
    model_dir = tmp_path / "train" / layout.ADAPTER
    model_dir.mkdir(parents=True)
    fingerprint = training_fingerprint(TASK, pairs, str(tmp_path), config)
    write_json(tmp_path / "train" / layout.TRAIN_DONE, {"fingerprint": fingerprint, "model_dir": str(model_dir), "is_adapter": True, "n_train": 1})
    monkeypatch.setattr(sft, "train", lambda *a, **k: pytest.fail("trained again"))
    assert finetune(TASK, pairs, str(tmp_path), tmp_path / "train", config, progress=False) == model_dir
    reused = train_once(TASK, pairs, str(tmp_path), tmp_path / "train", config, progress=False)
    assert reused.reused and reused.is_adapter and reused.model_dir == model_dir
    # Anything that changes the trained weights is another training.
    assert training_fingerprint(TASK, pairs, str(tmp_path), TrainConfig(epochs=3)) != fingerprint
    assert training_fingerprint(TASK, [("in", "other")], str(tmp_path), config) != fingerprint
    assert training_fingerprint(TASK, pairs, str(tmp_path), config.model_copy(update={"report_to": "tensorboard"})) == fingerprint


def test_a_training_with_demo_rows_from_before_leave_one_out_is_not_reused(tmp_path):
    """Demo rows changed their prompt (the other demos only); a training that held one is another
    training now, and every other training keeps its fingerprint, so it is still reused."""
    import hashlib
    import json

    from selfguide.backends.fingerprint import model_fingerprint

    config = TrainConfig(epochs=2)

    def before(pairs):  # the fingerprint as computed before the change
        payload = {
            "pairs": pairs,
            "instruction": TASK.instruction,
            "demos": [(e.input, e.output) for e in TASK.examples],
            "model": str(tmp_path),
            "weights": model_fingerprint(str(tmp_path)),
            "train": config.model_dump(mode="json", exclude={"model", "report_to"}),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    synthetic = [("in", "out")]
    with_demo = synthetic + [(TASK.examples[0].input, TASK.examples[0].output)]
    assert training_fingerprint(TASK, synthetic, str(tmp_path), config) == before(synthetic)
    assert training_fingerprint(TASK, with_demo, str(tmp_path), config) != before(with_demo)


def test_a_method_trains_the_weights_the_run_resolved(tmp_path):
    """A method's own trainings start from the student's weights where it loads them, else from
    the run's resolved weights (a GGUF's converted folder, a served model's train.model)."""
    from selfguide.errors import SelfGuideError
    from selfguide.methods import MethodContext
    from selfguide.stages.finetune import base_weights

    served, _ = scripted_model(lambda messages, params, j: "x", tmp_path / "cache.sqlite")  # not loaded from weights
    assert base_weights(MethodContext(TASK, served, tmp_path, weights="org/weights"), None) == "org/weights"
    assert base_weights(MethodContext(TASK, served, tmp_path, weights="org/weights"), "org/other") == "org/other"
    with pytest.raises(SelfGuideError, match="base_model"):
        base_weights(MethodContext(TASK, served, tmp_path), None)

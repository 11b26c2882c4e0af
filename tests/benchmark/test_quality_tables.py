"""The tables of docs/quality.md come from bench scripts: their arithmetic is checked on made-up folders."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_task(task_dir: Path, prompting: float, self_guide: float, gold: float | None, pairs: int) -> None:
    scores = {"prompting": prompting, "T1-e2/eval": self_guide} | ({"T1-e2/gold/eval": gold} if gold is not None else {})
    for rel, score in scores.items():
        (task_dir / rel).mkdir(parents=True)
        (task_dir / rel / "metrics.json").write_text(json.dumps({"reported": score}))
    (task_dir / "synth-T1").mkdir()
    (task_dir / "synth-T1" / "summary.json").write_text(json.dumps({"pairs": pairs}))


def test_heldout_table_reads_seed_folders_and_one_seed_benches(tmp_path):
    heldout = bench_script("heldout_table")
    for seed, gain in ((0, 1.0), (1, 3.0)):  # --seeds 0,1: seed-N/heldout/TASK
        write_task(tmp_path / "old" / f"seed-{seed}" / "heldout" / "task1622", 70.0, 70.0 + gain, 78.0, 50 + seed)
    (tmp_path / "new").mkdir()  # one seed: heldout/TASK, the seed in config.yaml
    (tmp_path / "new" / "config.yaml").write_text("seed: 2\n")
    write_task(tmp_path / "new" / "heldout" / "task1622", 70.0, 69.0, None, 25)
    found = {label: heldout.collect([tmp_path / label]) for label in ("old", "new")}
    assert set(found["old"]["task1622"]) == {0, 1} and set(found["new"]["task1622"]) == {2}
    row = heldout.table(found).splitlines()[-1]
    # old: gain 2.0 ± 1.41, gold 8.0, share 0.25; new: -1.0 and no gold ceiling
    assert row == "| task1622 | 0, 1, 2 | 70.00 | 50-51 / +2.00 ± 1.41 / +8.00 ± 0.00 / 0.25 | 25-25 / -1.00 / - / - |"


def test_the_diagnostic_is_judged_against_always_guessing_helps():
    ablation = bench_script("quality_ablation")
    rows = [{"label_gain": lg, "gain": g} for lg, g in ((1.0, 2.0), (-1.0, 3.0), (2.0, -1.0), (-2.0, -4.0))]
    assert ablation.prediction(rows) == (
        "Diagnostic: the sign of the label gain matched the sign of the finetuning gain in 2 of 4 runs; "
        "the gain was positive in 2 of 4 (always guessing 'helps' is right 2 times)."
    )
    assert ablation.prediction([{"label_gain": None, "gain": 1.0}]).startswith("No run recorded")


@pytest.mark.parametrize("with_prompting", [True, False])
def test_label_free_regret_against_fixed_choices(with_prompting):
    choice = bench_script("label_free_choice")
    rows = [  # the lowest demo NLL picks "a" on the first task, "b" on the second
        {"nll": {"prompting": 2.0, "a": 1.0, "b": 3.0}, "gains": {"prompting": 0.0, "a": 1.0, "b": 5.0}},
        {"nll": {"prompting": 2.0, "a": 3.0, "b": 1.0}, "gains": {"prompting": 0.0, "a": 4.0, "b": 2.0}},
    ]
    lines = dict(line.split(" | ", 1) for line in choice.regret_table(rows, with_prompting).splitlines()[2:])
    assert lines["| label-free: lowest leave-one-out demo NLL"] == "3.00 | 4.00 |"  # regrets 4 and 2
    assert lines["| always a"] == "2.00 | 4.00 |" and lines["| always b"] == "1.00 | 2.00 |"
    assert ("| always prompting" in lines) is with_prompting


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("*.py")))
def test_every_bench_script_still_imports(script):
    """The bench scripts are run by hand, not by the suite: an API they use that moved fails here.
    Each says in its docstring how to run it."""
    assert bench_script(script).__doc__

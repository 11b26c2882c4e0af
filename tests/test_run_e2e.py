"""`selfguide run` end to end, exactly as the README shows it, then `train` and `eval` on its
run folder; every report file is written and a rerun redoes nothing."""

from __future__ import annotations

import json

from tests.conftest import REPO, SUPERNI
from typer.testing import CliRunner

from selfguide.cli import app

runner = CliRunner()


def test_run_writes_every_report_file(tiny_model_dir, tmp_path):
    env = {"SELFGUIDE_SUPERNI": str(SUPERNI)}
    out = tmp_path / "run"
    args = ["run", "task036", "--model", str(tiny_model_dir), "--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "-q"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    lines = [line.split("\r")[-1] for line in result.output.splitlines()]  # what a terminal shows of each line
    verdict, why = next(line for line in lines if line.startswith("Verdict")), next(line for line in lines if line.startswith("Why"))
    assert lines.index(why) == lines.index(verdict) + 1
    assert verdict.startswith("Verdict") and "rougeL" in verdict and "95% CI" in verdict and "of 10 eval items" in verdict
    assert why.startswith("Why: trained on") and "the funnel lost most at" in why

    for path in ["config.yaml", "timings.json", "environment.json", "train/adapter/README.md", "report.md", "report.html", "synth/dataset.jsonl", "train/adapter/adapter_config.json", "train/train_log.jsonl", "eval/prompting/metrics.json", "eval/finetuned/metrics.json", "eval/finetuned/predictions.jsonl"]:
        assert (out / path).exists(), path
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert len(plots) >= 3 and all((out / "plots" / p).read_bytes().startswith(b"\x89PNG") for p in plots)
    baseline = json.loads((out / "eval/prompting/metrics.json").read_text())
    finetuned = json.loads((out / "eval/finetuned/metrics.json").read_text())
    assert baseline["n"] == finetuned["n"] == 10  # eval.limit in configs/tiny.yaml
    assert set(baseline["superni"]) == {"exact_match", "rougeL"} and set(baseline["paper"]) == {"paper_char_lcs_f1"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "rougeL" in html
    assert html.index('<p class="verdict">Verdict') < html.index("<h2>")  # the answer comes first
    assert "[More Information Needed]" not in (out / "train/adapter/README.md").read_text()  # our card, not PEFT's template
    assert set(json.loads((out / "timings.json").read_text())) == {"synthesize", "eval_prompting", "train", "eval_finetuned"}
    assert json.loads((out / "environment.json").read_text())["run_dtype"] == "float32"  # auto on a CPU
    assert ", dtype float32." in (out / "report.md").read_text()

    assert json.loads((out / "environment.json").read_text())["models"]["model"] == {"name": str(tiny_model_dir), "loads": str(tiny_model_dir)}
    assert (out / "report.md").read_text().startswith("# SELF-GUIDE run report: task036")

    # `selfguide report` rebuilds the same report from the folder alone.
    written = {name: (out / name).read_bytes() for name in ("report.md", "report.html")}
    (out / "report.html").unlink()
    rebuilt = runner.invoke(app, ["report", str(out)], env=env)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert {name: (out / name).read_bytes() for name in written} == written

    # One training fingerprint: the finished training's (done.json) is the one its checkpoints resume by.
    done = json.loads((out / "train" / "done.json").read_text())
    assert json.loads((out / "train" / "checkpoints" / "selfguide_run.json").read_text())["fingerprint"] == done["fingerprint"]

    # A second run reuses every call and the finished training.
    stamp = (out / "train" / "done.json").stat().st_mtime_ns
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    assert (out / "train" / "done.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "synth" / "summary.json").read_text())["model_calls"]["calls"] == 0

    # The pieces on their own: train on the run folder (reused), eval with the adapter.
    trained = runner.invoke(app, ["train", str(out), "--out", str(out / "train")], env=env)
    assert trained.exit_code == 0, trained.output
    assert "reused" in trained.output
    evaluated = runner.invoke(app, ["eval", "task036", "--model", str(tiny_model_dir), "--adapter", str(out / "train" / "adapter"), "--limit", "3", "--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(tmp_path / "e"), "-q"], env=env)
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "e" / "eval" / "finetuned" / "metrics.json").read_text())
    assert metrics["n"] == 3
    predictions = [json.loads(line) for line in (tmp_path / "e" / "eval" / "finetuned" / "predictions.jsonl").read_text().splitlines()]
    full = [json.loads(line) for line in (out / "eval" / "finetuned" / "predictions.jsonl").read_text().splitlines()]
    assert [p["prediction"] for p in predictions] == [p["prediction"] for p in full[:3]]

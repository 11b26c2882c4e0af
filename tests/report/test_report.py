"""The run report renders from hand-written run folders: complete (classification, generation),
trained nothing (synthesis kept no pairs), and empty."""

from __future__ import annotations

import html
import json
from pathlib import Path

from selfguide import layout
from selfguide.config import RunConfig
from selfguide.report.report import write_report
from selfguide.tasks.spec import EvalItem, Example, TaskSpec

SCRIPT = "<script>alert('x')</script>"


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def classification_task() -> TaskSpec:
    return TaskSpec(
        name="sentiment",
        instruction="Is the review positive or negative?",
        examples=[Example(input="Great film.", output="positive"), Example(input="Dull.", output="negative")],
        type="classification",
        labels=["positive", "negative"],
        eval=[EvalItem(input=f"review {i}", references=["positive" if i % 3 else "negative"], id=str(i)) for i in range(6)],
    )


def generation_task() -> TaskSpec:
    return TaskSpec(
        name="titles",
        instruction="Write a title for the paragraph.",
        examples=[Example(input="A long paragraph about rivers.", output="Rivers")],
        type="generation",
        eval=[EvalItem(input="x" * (20 + 7 * i), references=["title " * (1 + i % 3)], id=str(i)) for i in range(6)],
    )


def summary(task: TaskSpec, pairs: int) -> dict:
    stages = [
        {"stage": "input_filter", "unit": "candidate input", "total": 40, "kept": 23, "dropped": {"duplicate": 12, "noise_phrase": 5}},
        {"stage": "output_filter", "unit": "sample", "total": 230, "kept": 200, "dropped": {"empty": 30}},
        {"stage": "vote", "unit": "labelled input", "total": 23, "kept": 17 if pairs else 0, "dropped": {"no_majority": 6 if pairs else 23}},
    ]
    if task.is_classification:
        stages.append({"stage": "class_balance", "unit": "pair", "total": 17 if pairs else 0, "kept": pairs, "dropped": {"class_balance": 17 - pairs} if pairs else {}})
    return {"task": task.name, "type": task.type, "stages": stages, "pairs": pairs}


def metrics(name: str, task: TaskSpec, em: float, rouge: float, paper: float) -> dict:
    paper_key = "paper_accuracy" if task.is_classification else "paper_char_lcs_f1"
    reported = "exact_match" if task.is_classification else "rougeL"
    return {
        "name": name,
        "task": task.name,
        "n": len(task.eval),
        "superni": {"exact_match": em, "rougeL": rouge},
        "paper": {paper_key: paper},
        "reported_metric": reported,
        "reported": em if reported == "exact_match" else rouge,
        "by_category": {},
    }


def predictions(task: TaskSpec, answer: str) -> list[dict]:
    return [
        {"id": item.id, "input": item.input, "references": item.references, "prediction": answer, "exact_match": float(answer == item.references[0]), "rougeL": 0.5}
        for item in task.eval
    ]


def make_run(out: Path, task: TaskSpec, *, trained: bool) -> None:
    """A run folder as `selfguide run` leaves it; untrained: synthesis kept no pairs."""
    write(out / "timings.json", {"synthesize": 12.5, "eval_prompting": 3.25, **({"train": 95.0, "eval_finetuned": 3.0} if trained else {})})
    if task.is_classification:
        dataset = [{"id": f"r0s{i}", "input": f"synthetic review {i}", "output": ["positive", "negative"][i % 2], "provenance": {"votes": 8, "valid_samples": 10}} for i in range(10)]
        dataset[0]["input"] = SCRIPT
    else:
        dataset = [{"id": f"r0s{i}", "input": "y" * (25 + 9 * i), "output": f"title {i} " * (1 + i % 2), "provenance": {"votes": 4, "valid_samples": 9}} for i in range(8)]
    pairs = len(dataset) if trained else 0
    write(out / "synth/summary.json", summary(task, pairs))
    write_rows(out / "synth/dataset.jsonl", dataset if trained else [])
    write_rows(
        out / "synth/drops.jsonl",
        [
            {"kind": "input", "stage": "input_filter", "input_id": "r0s9", "reason": "duplicate", "detail": "", "text": "dup one"},
            {"kind": "input", "stage": "input_filter", "input_id": "r1s0", "reason": "duplicate", "detail": "", "text": "dup two"},
            {"kind": "input", "stage": "input_filter", "input_id": "r1s1", "reason": "noise_phrase", "detail": "As an AI", "text": "As an AI " * 60},
            {"kind": "pair", "stage": "vote", "input_id": "r1s2", "reason": "no_majority", "detail": "2/10", "text": "unsure"},
        ],
    )
    write_rows(out / "eval/prompting/predictions.jsonl", predictions(task, SCRIPT))
    write(out / "eval/prompting/metrics.json", metrics("prompting", task, 40.0, 45.0, 50.0))
    if trained:
        write(out / "train/done.json", {"fingerprint": "abc", "model_dir": "m", "is_adapter": True, "n_train": pairs - 1, "n_dropped_too_long": 1})
        log = [{"step": s, "epoch": s / 10, "loss": 2.0 / s, "learning_rate": 2e-4} for s in range(1, 31)]
        write_rows(out / "train/train_log.jsonl", log + [{"step": 30, "train_loss": 0.4, "train_runtime": 9.0}])
        write_rows(out / "eval/finetuned/predictions.jsonl", predictions(task, "positive"))
        write(out / "eval/finetuned/metrics.json", metrics("finetuned", task, 55.5, 60.25, 48.0))


def render(out: Path, task: TaskSpec) -> tuple[list[Path], str, str]:
    paths = write_report(out, task, RunConfig())
    assert paths[:2] == [out / "report.md", out / "report.html"]
    for path in paths:
        assert path.is_file()
    for png in paths[2:]:
        assert png.parent == out / "plots" and png.read_bytes().startswith(b"\x89PNG")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(paths) - 2
    assert 'src="http' not in page and "<link" not in page
    assert SCRIPT not in page and html.escape(SCRIPT) in page
    return paths, page, (out / "report.md").read_text(encoding="utf-8")


def test_classification_report(tmp_path):
    task = classification_task()
    make_run(tmp_path, task, trained=True)
    paths, page, markdown = render(tmp_path, task)
    assert {p.name for p in paths[2:]} == {"funnel.png", "labels.png", "loss.png"}
    for text in (page, markdown):
        assert all(name in text for name in ("exact_match", "rougeL", "paper_accuracy"))
        assert "+15.50" in text and "+15.25" in text and "-2.00" in text  # finetuned minus prompting
        assert "40.00" in text and "55.50" in text
        assert "duplicate: 12" in text and "Final pairs: 10." in text  # the funnel
        assert "Not trained" not in text
    assert '<tr class="highlight"><td>exact_match (SuperNI) - reported' in page
    assert "![Training loss](plots/loss.png)" in markdown
    assert "noise_phrase" in page and "no_majority" in page and "dup two" not in page  # first drop of each reason
    assert "As an AI " * 20 in page and "As an AI " * 40 not in page  # long text clipped
    assert "Trained on 9 pairs" in page and "1 dropped as longer" in page
    assert "<details><summary>Full resolved config</summary><pre>" in page
    # The answer first: prompting scored 0 everywhere (its answer is SCRIPT), the finetuned model
    # answered "positive", right on the 4 positive items of 6.
    verdict = page.index('<p class="verdict">')
    assert verdict < page.index("<h2>") < page.index("<h2>Settings</h2>")
    assert "Verdict (no clear difference): exact_match 0.00 -&gt; 66.67 (+66.67, 95% CI" in page or "Verdict (helped): exact_match 0.00 -&gt; 66.67 (+66.67, 95% CI" in page
    assert "wins 4, ties 2, loses 0 of 6 eval items" in page
    assert "Why: trained on 9 pairs; the funnel lost most at input_filter: 17 of 40 candidate inputs dropped (mostly duplicate)." in page
    assert "> **Verdict" in markdown
    assert "Answers differ on 6 of 6 items" in page and "<h2>Confusion matrix</h2>" in page
    assert "(other)" in page  # prompting's answer is no label
    assert '<a href="synth/dataset.jsonl">' in page and "[eval/finetuned/metrics.json](eval/finetuned/metrics.json)" in markdown


def test_generation_report(tmp_path):
    task = generation_task()
    make_run(tmp_path, task, trained=True)
    paths, page, _ = render(tmp_path, task)
    assert {p.name for p in paths[2:]} == {"funnel.png", "lengths.png", "loss.png"}
    assert "paper_char_lcs_f1" in page and "+15.25" in page
    assert '<tr class="highlight"><td>rougeL (SuperNI) - reported' in page
    assert "median characters" in page


def test_report_without_training(tmp_path):
    task = classification_task()
    make_run(tmp_path, task, trained=False)
    paths, page, markdown = render(tmp_path, task)
    assert {p.name for p in paths[2:]} == {"funnel.png"}
    assert "Verdict: not compared: prompting exact_match 40.00" in page and "Why: not trained (0 synthetic pairs)" in page
    for text in (page, markdown):
        assert "Not trained: synthesis kept no pairs" in text
        assert "40.00" in text and "Final pairs: 0." in text


def test_report_of_an_empty_folder(tmp_path):
    task = generation_task()
    paths = write_report(tmp_path, task, RunConfig())
    assert paths == [tmp_path / "report.md", tmp_path / "report.html"]
    page = paths[1].read_text(encoding="utf-8")
    for missing in ("synth/summary.json is missing", "eval/prompting/metrics.json", "timings.json and the model-call counts are missing"):
        assert missing in page


def test_unreadable_lines_are_skipped_and_reported(tmp_path):
    task = classification_task()
    make_run(tmp_path, task, trained=True)
    with (tmp_path / "train/train_log.jsonl").open("a") as f:
        f.write('{"step": 31, "lo')  # a crash mid-line
    _, page, _ = render(tmp_path, task)
    assert "train/train_log.jsonl: 1 unreadable line(s) skipped" in page


def test_verdict_of_an_inference_time_method(tmp_path):
    """prompting-with-filters trains nothing: the verdict compares prompting with the method's own evaluation."""
    from selfguide.report.deploy import headline

    task = classification_task()
    make_run(tmp_path, task, trained=False)
    write(tmp_path / "config.yaml", {"synth": {"method": "prompting-with-filters"}})
    assert headline(tmp_path)[0].startswith("Verdict: not compared")
    write_rows(tmp_path / "eval/prompting-with-filters/predictions.jsonl", predictions(task, "positive"))
    verdict = headline(tmp_path)[0]
    assert verdict.startswith("Verdict (") and "exact_match 0.00 -> 66.67" in verdict and "prompting-with-filters wins 4" in verdict


def test_the_why_line_says_when_self_labels_were_at_chance_and_a_label_is_missing(tmp_path):
    from selfguide.io import write_json
    from selfguide.report.verdict import why_line

    accuracy = {"metric": "exact_match", "accuracy": 65.0, "n": 20, "labeler": "score", "source": "gold items outside the eval set"}
    chance = {"majority_label": "C", "majority_accuracy": 65.0, "top_self_label": "C", "top_self_label_share": 100.0}
    summary = {"pairs": 45, "stages": [], "self_label_accuracy": accuracy | chance, "labels": {"missing_from_final": ["N"]}}
    write_json(layout.synth_dir(tmp_path) / layout.SUMMARY, summary)
    write_json(layout.train_dir(tmp_path) / layout.TRAIN_DONE, {"n_train": 45})
    assert why_line(tmp_path) == (
        "Why: trained on 45 pairs; before training, the model's own labels scored 65.0 exact_match on 20 gold items outside the eval set "
        "(score labels), no better than always answering 'C' (65.0); 100% of its labels were 'C'; "
        "the synthetic data had no pair labelled 'N', so finetuning taught fewer answers than the task has."
    )
    write_json(layout.synth_dir(tmp_path) / layout.SUMMARY, summary | {"self_label_accuracy": accuracy | chance | {"accuracy": 80.0}, "labels": {}})
    assert why_line(tmp_path).endswith("(score labels).")  # above the constant answer: nothing to warn about

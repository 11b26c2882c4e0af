"""Which system to deploy (report/deploy.py): the simplest system no other clearly beats."""

import json

from selfguide import layout
from selfguide.io import write_json, write_jsonl
from selfguide.report.deploy import recommendation
from selfguide.report.deploy import headline


def write_eval(run, name, em, scored=None, metric="exact_match"):
    rows = [{"id": f"i{i}", metric: e} | ({} if scored is None else {"label_scored_exact_match": s}) for i, (e, s) in enumerate(zip(em, scored or em))]
    write_jsonl(layout.eval_dir(run, name) / layout.PREDICTIONS, rows)
    write_json(layout.eval_dir(run, name) / layout.METRICS, {"reported_metric": metric, "reported": 100 * sum(em) / len(em), "n": len(em)})


def test_label_scored_prompting_wins_when_finetuning_does_not_help(tmp_path):
    n = 40
    write_eval(tmp_path, layout.PROMPTING, [i % 4 == 0 for i in range(n)], [i % 4 != 3 for i in range(n)])  # 25 vs 75
    write_eval(tmp_path, layout.FINETUNED, [i % 2 == 0 for i in range(n)], [i % 4 != 3 for i in range(n)])  # 50 vs 75
    rec = recommendation(tmp_path)
    assert rec["system"] == "prompting with label scoring" and not rec["finetuned"]
    assert rec["vs_prompting"]["diff"] == 50 and rec["vs_prompting"]["low"] > 0
    assert [s["system"] for s in rec["systems"]] == [
        "prompting",
        "prompting with label scoring",
        "the finetuned model",
        "the finetuned model with label scoring",
    ]
    assert "finetuning did not help this task" in rec["line"] and rec["line"].startswith("Deploy: prompting with label scoring (exact_match 75.00; +50.00")


def test_a_finetuned_model_is_recommended_only_when_it_clearly_wins(tmp_path):
    n = 60
    write_eval(tmp_path, layout.PROMPTING, [0.5] * n, metric="rougeL")
    write_eval(tmp_path, layout.FINETUNED, [0.5 + (0.2 if i % 3 else -0.05) for i in range(n)], metric="rougeL")
    rec = recommendation(tmp_path)
    assert rec["system"] == "the finetuned model" and rec["metric"] == "rougeL"
    assert "it clearly beat every untrained system" in rec["line"]
    # a gain that may be noise: prompting stays the recommendation
    write_eval(tmp_path, layout.FINETUNED, [0.5 + (0.3 if i % 2 else -0.28) for i in range(n)], metric="rougeL")
    rec = recommendation(tmp_path)
    assert rec["system"] == "prompting" and rec["vs_prompting"] is None
    assert rec["line"].startswith("Deploy: prompting (rougeL 50.00); no system clearly beat it; finetuning did not help this task (the finetuned model: +1.00, 95% CI")


def test_prompting_alone_and_no_eval(tmp_path):
    assert recommendation(tmp_path) is None
    write_eval(tmp_path, layout.PROMPTING, [1, 0, 1])
    rec = recommendation(tmp_path)
    assert rec["system"] == "prompting" and rec["line"] == "Deploy: prompting (exact_match 66.67); no finetuned model was evaluated."
    assert headline(tmp_path)[-1] == rec["line"]


def test_the_recommendation_is_in_the_run_summary(tmp_path):
    from selfguide.report.deploy import write_recommendation

    write_json(tmp_path / layout.SUMMARY, {"kept": 1})
    write_eval(tmp_path, layout.PROMPTING, [1, 0, 1])
    write_recommendation(tmp_path)
    summary = json.loads((tmp_path / layout.SUMMARY).read_text())
    assert summary["kept"] == 1 and summary["recommendation"]["system"] == "prompting"


def test_never_a_system_below_prompting(tmp_path):
    """Finetuning clearly beats prompting; label scoring on the finetuned model is not clearly better, so the simpler one wins."""
    n = 60
    write_eval(tmp_path, layout.PROMPTING, [i % 3 == 0 for i in range(n)], [i % 3 == 0 for i in range(n)])  # 33 and 33
    write_eval(tmp_path, layout.FINETUNED, [i % 3 != 2 for i in range(n)], [i % 3 != 2 or i % 10 == 0 for i in range(n)])  # 67 and ~70
    rec = recommendation(tmp_path)
    assert rec["system"] == "the finetuned model" and rec["vs_prompting"]["low"] > 0
    assert rec["score"] > rec["systems"][0]["score"] and rec["systems"][3]["score"] > rec["score"]

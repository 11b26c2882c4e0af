"""The user-oriented eval on a hand-computed case: greedy answers, ROUGE-L against the reference."""

from __future__ import annotations

import json

import pytest

from tests.scripted import scripted_model
from selfguide.eval.user_oriented import UserOrientedConfig, evaluate_user_oriented


def test_user_oriented_rouge_by_hand(tmp_path):
    tasks = [
        {"id": "u0", "motivation_app": "Grammarly", "instruction": "Fix the grammar.", "instances": [{"input": "the cat sit", "output": "the cat sat"}]},
        {"id": "u1", "motivation_app": "Grammarly", "instruction": "Repeat it.", "instances": [{"input": "blue sky", "output": "blue sky"}]},
        {"id": "u2", "motivation_app": "Wolfram", "instruction": "Name a colour.", "instances": [{"input": "", "output": "red"}]},
    ]
    data = tmp_path / "user_oriented_instructions.jsonl"
    data.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    answers = {"the cat sit": "The cat.", "blue sky": "blue sky", "": "green"}

    def script(messages, params, j):
        assert params.temperature == 0
        [turn] = messages  # the general prompt: one user turn, the instruction then the input
        instruction, _, source_input = turn["content"].partition("\n\n")
        assert instruction in {t["instruction"] for t in tasks}
        return answers[source_input]

    model, backend = scripted_model(script, tmp_path / "cache.sqlite")
    metrics = evaluate_user_oriented(model, UserOrientedConfig(path=str(tmp_path)), tmp_path / "eval", name="prompting")
    # u0: tokens [the, cat] vs [the, cat, sat]: LCS 2, P = 1, R = 2/3, F = 0.8; u1: 1.0; u2: 0.0.
    assert metrics["n"] == 3 and metrics["rougeL"] == pytest.approx(100 * 1.8 / 3)
    assert metrics["by_app"] == {"Grammarly": pytest.approx(90.0), "Wolfram": 0.0}
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [r["rougeL"] for r in rows] == [pytest.approx(0.8), 1.0, 0.0]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["rougeL"] == pytest.approx(60.0)
    assert backend.calls == 3 and metrics["model_calls"]["calls"] == 3
    # Limit, and a rerun answered from the cache.
    again = evaluate_user_oriented(model, UserOrientedConfig(path=str(data), limit=2), name="again")
    assert again["n"] == 2 and again["rougeL"] == pytest.approx(90.0) and backend.calls == 3

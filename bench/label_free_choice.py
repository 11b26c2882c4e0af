"""Choosing a setting per task without labels, and its regret (issue 21, lever 6).

For each (task, seed) under <root>/<lever>/<task>-s<seed>/ (the layout of bench/quality_ablation.py),
the candidates are prompting and every lever's finetuned model that did not train on the demos.
The label-free signal is the leave-one-out likelihood of the gold demos: each demo's answer is
scored with the task prompt holding the other demos only (train.sft.build_training_rows prompts a
pair equal to a demo that way), and the candidate with the lowest mean NLL per answer token is
chosen. The demos are the only gold a user has; no eval item is read to choose.

Regret is the best candidate's gain over prompting (by the eval set, which the choice never saw)
minus the chosen one's. The table compares it with the regret of each fixed setting.

    python bench/label_free_choice.py /tmp/abl [--levers base,consensus,rewrite]   # both tables: with and without prompting as a candidate
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from selfguide import layout
from selfguide.report.verdict import comparison, read_json
from selfguide.tasks.load import load_task
from selfguide.train.sft import build_training_rows

PROMPTING = "prompting"


def candidates(root: Path, levers: set[str] | None) -> dict[tuple[str, int], dict[str, dict]]:
    """(task, seed) -> lever -> {gain, adapter}, for finished runs that did not train on the demos."""
    found: dict[tuple[str, int], dict[str, dict]] = defaultdict(dict)
    for folder in sorted(root.glob("*/*-s*")):
        match = re.fullmatch(r"(task\w+)-s(\d+)", folder.name)
        lever = folder.parent.name
        if not match or (levers and lever not in levers):
            continue
        result = comparison(folder, layout.FINETUNED)
        synth = read_json(layout.synth_dir(folder) / layout.SUMMARY) or {}
        adapter = folder / "train" / "adapter"
        if result is None or synth.get("demo_pairs") or not adapter.is_dir():
            continue
        found[(match[1], int(match[2]))][lever] = {"gain": result[1].diff, "adapter": adapter}
    return found


def demo_nll(model, rows: list[dict]) -> float:
    """Mean negative log-likelihood per answer token over the leave-one-out demo rows."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            logits = model(input_ids=ids).logits[0, :-1].float()
            mask = torch.tensor(row["completion_mask"][1:], dtype=torch.bool)
            total += torch.nn.functional.cross_entropy(logits[mask], ids[0, 1:][mask], reduction="sum").item()
            count += int(mask.sum())
    return total / count


def score_candidates(task_name: str, levers: dict[str, dict]) -> dict[str, float]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (first_lever, first), *rest = levers.items()
    base_path = json.loads((first["adapter"] / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    task = load_task(task_name)  # SuperNI by name: its demos are the run's
    rows, _ = build_training_rows(task, [(e.input, e.output) for e in task.examples], tokenizer, max_length=8192)
    # One copy of the base weights: each finetuned model is an adapter on it, prompting the adapters switched off.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(first["adapter"]), adapter_name=first_lever).eval()
    for lever, info in rest:
        model.load_adapter(str(info["adapter"]), adapter_name=lever)
    with model.disable_adapter():
        scores = {PROMPTING: demo_nll(model, rows)}
    for lever in levers:
        model.set_adapter(lever)
        scores[lever] = demo_nll(model, rows)
    return scores


def regret_table(rows: list[dict], with_prompting: bool) -> str:
    """Mean and worst regret of the label-free rule and of each fixed choice, over the (task, seed)
    that have every candidate."""
    def pool(row):
        return {k: v for k, v in row["gains"].items() if with_prompting or k != PROMPTING}

    fixed = sorted({lever for row in rows for lever in pool(row)}, key=lambda name: (name != "base", name))
    complete = [row for row in rows if all(lever in row["gains"] for lever in fixed)]
    lines = [f"| rule ({'prompting is a candidate' if with_prompting else 'finetuned models only'}) | mean regret over {len(complete)} (task, seed) | worst regret |", "|---|---:|---:|"]
    rules = {"label-free: lowest leave-one-out demo NLL": lambda row: min(pool(row), key=row["nll"].get)}
    rules.update({f"always {lever}": (lambda row, lever=lever: lever) for lever in fixed})
    for name, choose in rules.items():
        regrets = [max(pool(row).values()) - row["gains"][choose(row)] for row in complete]
        lines.append(f"| {name} | {statistics.fmean(regrets):.2f} | {max(regrets):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--levers", default="", help="comma-separated levers to choose among (default: every lever not trained on demos)")
    args = parser.parse_args()
    found = candidates(args.root, set(filter(None, args.levers.split(","))) or None)
    rows = []
    for (task, seed), levers in sorted(found.items()):
        nll = score_candidates(task, levers)
        gains = {PROMPTING: 0.0, **{lever: info["gain"] for lever, info in levers.items()}}
        rows.append({"task": task, "seed": seed, "nll": nll, "gains": gains})
        print(f"{task} s{seed}: gain / demo NLL: " + ", ".join(f"{k} {gains[k]:+.2f} / {nll[k]:.3f}" for k in gains), flush=True)
    for with_prompting in (True, False):
        print("\n" + regret_table(rows, with_prompting))


if __name__ == "__main__":
    main()

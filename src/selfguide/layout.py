"""Every file name of a run folder, in one place. Code joins these names; it never spells a path.

    <run>/
      config.yaml         the resolved config (CONFIG)
      cache.sqlite        every model call (CACHE)
      invocations.jsonl   one line per command run on the folder (LEDGER)
      synth/              the method's files (SYNTH): inputs.jsonl, annotations.jsonl, dataset.jsonl,
                          drops.jsonl, summary.json, summary.md
      train/              done.json, train_log.jsonl, adapter/ or model/, merged/, checkpoints/
      eval/<name>/        predictions.jsonl, metrics.json (name: prompting, finetuned, ...)
      timings.json, stacks.json, environment.json, report.md, report.html, plots/
      export/<format>/    `selfguide export`
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
CACHE = "cache.sqlite"
LEDGER = "invocations.jsonl"
TIMINGS = "timings.json"
STACKS = "stacks.json"
ENVIRONMENT = "environment.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS = "plots"
TASK_FILE = "task.yaml"  # a task built in memory, saved into its run folder
TASK_EVAL_FILE = "task_eval.jsonl"
RUN_TASK = "task.json"  # the run's task as it was loaded (without its dev items): what the run was made from

# The method's folder and the files a method writes there.
SYNTH = "synth"
INPUTS = "inputs.jsonl"
ANNOTATIONS = "annotations.jsonl"
INSTRUCTIONS = "instructions.jsonl"  # self-instruct, alpaca: every candidate instruction (task)
CLASSIFICATIONS = "classifications.jsonl"  # self-instruct: each kept instruction's Yes/No answer
INSTANCES = "instances.jsonl"  # self-instruct: every candidate instance
DATASET = "dataset.jsonl"
DROPS = "drops.jsonl"
SUMMARY = "summary.json"
SUMMARY_MD = "summary.md"
SYNTH_CALLS = "calls_by_invocation.jsonl"  # each synthesis invocation's model calls, finished or not

# Training.
TRAIN = "train"
TRAIN_DONE = "done.json"
TRAIN_LOG = "train_log.jsonl"
TRAIN_CONFIG = "train_config.json"
TRAIN_FINGERPRINT = "selfguide_run.json"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"  # LoRA
FULL_MODEL = "model"  # full finetune
MERGED = "merged"
MODEL_CARD = "README.md"

# Evaluation: one folder per evaluated system.
EVAL = "eval"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
PROMPTING = "prompting"
PROMPTING_SERVER = "prompting-server"
FINETUNED = "finetuned"
USER_ORIENTED = "user-oriented"  # eval/user-oriented/<name>/: Self-Instruct's 252 instructions

EXPORT = "export"


def synth_dir(run: Path) -> Path:
    return Path(run) / SYNTH


def dataset_path(run: Path) -> Path:
    return Path(run) / SYNTH / DATASET


def train_dir(run: Path) -> Path:
    return Path(run) / TRAIN


def eval_dir(run: Path, name: str) -> Path:
    return Path(run) / EVAL / name


def user_oriented_dir(run: Path, name: str) -> Path:
    return Path(run) / EVAL / USER_ORIENTED / name

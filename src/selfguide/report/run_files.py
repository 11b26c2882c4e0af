"""The files of a run folder, read for the report: every one optional (None when absent), bad ones
remembered as problems so the report can say so instead of failing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from selfguide import layout
from selfguide.config import RunConfig
from selfguide.methods import Method, get_method
from selfguide.model_source import model_label
from selfguide.report.verdict import compared_system
from selfguide.stages.outcome import Drop
from selfguide.summary import SynthSummary, summary_of
from selfguide.tasks.spec import EvalItem, TaskSpec


class RunFiles:
    """Reads the optional files of a run folder: None when absent; bad files are remembered."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.problems: list[str] = []

    def json(self, rel: str):
        path = self.out_dir / rel
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            self.problems.append(f"{rel}: unreadable ({err})")
            return None

    def jsonl(self, rel: str) -> list[dict] | None:
        path = self.out_dir / rel
        if not path.is_file():
            return None
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            self.problems.append(f"{rel}: unreadable ({err})")
            return None
        rows, bad = [], 0
        for line in filter(str.strip, lines):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1  # e.g. a last line cut short by a crash: keep the rest
        if bad:
            self.problems.append(f"{rel}: {bad} unreadable line(s) skipped")
        return rows

    def summary(self) -> SynthSummary | None:
        rel = f"{layout.SYNTH}/{layout.SUMMARY}"
        data = self.json(rel)
        try:
            return None if data is None else summary_of(data)
        except (ValidationError, TypeError) as err:
            self.problems.append(f"{rel}: not a synthesis summary ({str(err).splitlines()[0]})")
            return None

    def drops(self) -> list[Drop] | None:
        rel = f"{layout.SYNTH}/{layout.DROPS}"
        rows = self.jsonl(rel)
        if rows is None:
            return None
        drops = []
        for row in rows:
            try:
                drops.append(Drop.model_validate(row))
            except ValidationError:
                self.problems.append(f"{rel}: a line that is not a drop record skipped")
        return drops


@dataclass
class Run:
    method: Method
    summary: SynthSummary | None
    dataset: list[dict] | None
    drops: list[Drop] | None
    train_done: dict | None
    train_log: list[dict] | None
    compared: str  # what prompting is compared with: "finetuned", or an inference-time method's eval folder
    metrics: dict[str, dict | None]  # "prompting" / "finetuned" (the compared system's)
    predictions: dict[str, list[dict] | None]
    timings: dict | None
    environment: dict | None
    eval_items: list[EvalItem]  # the items both systems were evaluated on

    @property
    def pairs(self) -> int | None:
        if self.summary is not None:
            return self.summary.pairs
        return len(self.dataset) if self.dataset is not None else None

    @property
    def system(self) -> str:
        """How the tables name the system compared with prompting."""
        name = self.method.display_name
        return f"{name} finetuned" if self.compared == layout.FINETUNED else name

    def known_as(self, name: str) -> str:
        return known_as(self.environment, name)


def known_as(environment: dict | None, name: str) -> str:
    """A model as the user knows it: the name environment.json recorded for the weights that
    loaded, else the hub id, GGUF file or package `name` comes from (`model_label`)."""
    models = (environment or {}).get("models") or {}
    recorded = {folder_key(m.get("loads") or ""): m.get("name") for m in models.values() if isinstance(m, dict)}
    return recorded.get(folder_key(name)) or model_label(name)


def folder_key(name: str) -> str:
    """A local folder by its absolute path (summary.json records it so, config.yaml as given)."""
    path = Path(name).expanduser()
    return str(path.resolve()) if name and path.is_dir() else name


def load_run(files: RunFiles, task: TaskSpec, config: RunConfig) -> Run:
    compared = compared_system(files.out_dir)
    systems = {layout.PROMPTING: layout.PROMPTING, layout.FINETUNED: compared}
    return Run(
        method=get_method(config.synth.method),
        summary=files.summary(),
        dataset=files.jsonl(f"{layout.SYNTH}/{layout.DATASET}"),
        drops=files.drops(),
        train_done=files.json(f"{layout.TRAIN}/{layout.TRAIN_DONE}"),
        train_log=files.jsonl(f"{layout.TRAIN}/{layout.TRAIN_LOG}"),
        compared=compared,
        metrics={key: files.json(f"{layout.EVAL}/{folder}/{layout.METRICS}") for key, folder in systems.items()},
        predictions={key: files.jsonl(f"{layout.EVAL}/{folder}/{layout.PREDICTIONS}") for key, folder in systems.items()},
        timings=files.json(layout.TIMINGS),
        environment=files.json(layout.ENVIRONMENT),
        eval_items=task.eval[: config.eval.limit] if config.eval.limit else task.eval,
    )

"""`selfguide report RUN_DIR`: rebuild a run's report.md, report.html and plots from its folder
alone (config.yaml, the method's files, the evaluations, environment.json), e.g. after an
upgrade changed the report, or after the report was deleted. Nothing is run and nothing else in
the folder changes."""

from __future__ import annotations

from pathlib import Path

from selfguide import layout
from selfguide.config import RunConfig, load_config
from selfguide.errors import BadInputError
from selfguide.report.report import write_report
from selfguide.run_task import load_run_task
from selfguide.tasks.spec import TaskSpec


def rebuild_report(run_dir: str | Path) -> list[Path]:
    """Write the run's report again; return report.md, report.html and the plots' paths."""
    run_dir = Path(run_dir)
    config_path = run_dir / layout.CONFIG
    if not config_path.is_file():
        raise BadInputError(run_dir, "RUN_DIR", "a run folder written by `selfguide run` (it holds config.yaml)", "no config.yaml")
    config = load_config(config_path)
    return write_report(run_dir, run_task(run_dir, config), config)


def run_task(run_dir: Path, config: RunConfig) -> TaskSpec:
    """The run's task as config.yaml names it; a task built in memory was saved in the folder, and
    a relative task path may have been relative to wherever the run was started."""
    saved = run_dir / layout.TASK_FILE
    if config.task and Path(config.task).name == layout.TASK_FILE and saved.is_file():
        return load_run_task(config.model_copy(update={"task": str(saved)}))
    return load_run_task(config)

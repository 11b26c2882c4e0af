"""The SELF-GUIDE benchmark's tasks (docs/paper-protocol.md), its settings grid and the paper's max-min rule ("one setting fits all")."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from selfguide.errors import BadInputError
from selfguide.io import describe

TUNING = {
    "classification": ["task190", "task199", "task200", "task738", "task937", "task1385", "task1386"],
    "generation": ["task036", "task039", "task121", "task1195"],
}
HELD_OUT = {
    "classification": ["task1516", "task1529", "task1612", "task1615", "task284", "task329", "task346"],
    "generation": ["task1345", "task281", "task1562", "task1622"],
}
# The paper's averages over its held-out tasks, Vicuna-7B-v1.5, SELF-GUIDE minus prompting.
PAPER_GAINS = {"classification": ("exact_match", 14.5), "generation": ("rougeL", 17.9)}

GRID_AXES = {
    "temperature": [0.6, 0.7, 0.8, 0.9, 1.0],
    "input_length_filter": [True, False],
    "output_length_filter": [True, False],
    "epochs": [1, 2, 3],
}


@dataclass(frozen=True)
class Setting:
    temperature: float
    input_length_filter: bool
    output_length_filter: bool
    epochs: int

    @property
    def key(self) -> str:
        return f"T{self.temperature:g}-in{int(self.input_length_filter)}-out{int(self.output_length_filter)}-e{self.epochs}"

    @property
    def synth_key(self) -> str:
        """What changes the synthetic dataset (training epochs do not)."""
        return f"T{self.temperature:g}-in{int(self.input_length_filter)}-out{int(self.output_length_filter)}"

    @property
    def calls_key(self) -> str:
        """What changes the model calls of synthesis (the output filter runs after the calls)."""
        return f"T{self.temperature:g}-in{int(self.input_length_filter)}"

    def as_dict(self) -> dict:
        return asdict(self)

    def for_task(self, task_type: str) -> Setting:
        """Classification has no output length filter: its settings collapse onto one."""
        if task_type == "classification":
            return Setting(self.temperature, self.input_length_filter, False, self.epochs)
        return self

    def overrides(self) -> list[str]:
        return [
            f"synth.inputs.temperature={self.temperature}",
            f"synth.input_filters.length_filter={str(self.input_length_filter).lower()}",
            f"synth.outputs.length_filter={str(self.output_length_filter).lower()}",
            f"train.epochs={self.epochs}",
        ]


def parse_grid(specs: list[str] | None) -> list[Setting]:
    """`key=v1,v2` per axis, e.g. ["temperature=0.7,1.0", "epochs=1"]; unnamed axes keep the paper's values."""
    axes = {k: list(v) for k, v in GRID_AXES.items()}
    for spec in specs or []:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or key not in axes or not values.strip():
            raise BadInputError("--grid", describe(spec), f"AXIS=v1,v2 with AXIS one of {', '.join(GRID_AXES)}")
        axes[key] = [parse_value(key, v.strip(), spec, "--grid") for v in values.split(",")]
    return [Setting(*combo) for combo in itertools.product(*axes.values())]


def parse_setting(spec: str) -> Setting:
    """`temperature=0.7,input_length_filter=true,output_length_filter=false,epochs=3` (missing keys: paper's first)."""
    values = {k: v[0] for k, v in GRID_AXES.items()}
    given: set[str] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in GRID_AXES:
            raise BadInputError("--setting", describe(part), f"AXIS=value with AXIS one of {', '.join(GRID_AXES)}")
        if key.strip() in given:
            raise BadInputError("--setting", key.strip(), "each axis once", "given twice")
        given.add(key.strip())
        values[key.strip()] = parse_value(key.strip(), value.strip(), spec, "--setting")
    if not given:
        raise BadInputError("--setting", describe(spec), f"AXIS=value pairs with AXIS one of {', '.join(GRID_AXES)}")
    return Setting(**values)


def parse_value(axis: str, raw: str, spec: str, flag: str) -> float | bool | int:
    try:
        if axis == "temperature":
            value = float(raw)
            if not math.isfinite(value) or value < 0:
                raise ValueError
            return value
        if axis == "epochs":
            value = int(raw)
            if value < 1:
                raise ValueError
            return value
        lowered = raw.lower()
        if lowered not in ("true", "false", "on", "off", "1", "0"):
            raise ValueError
        return lowered in ("true", "on", "1")
    except ValueError:
        expected = {"temperature": "a number >= 0", "epochs": "a whole number >= 1"}.get(axis, "true or false")
        raise BadInputError(flag, f"{axis} in {describe(spec)}", expected, describe(raw)) from None


def select_setting(gains: dict[str, dict[str, float]]) -> tuple[str, float]:
    """The setting whose minimum gain over the tuning tasks is largest: `gains[setting][task]`.

    Ties go to the setting listed first, so the choice never depends on dict order beyond the grid's."""
    best_key, best_min = None, float("-inf")
    for key, per_task in gains.items():
        if not per_task:
            continue
        worst = min(per_task.values())
        if worst > best_min:
            best_key, best_min = key, worst
    if best_key is None:
        raise BadInputError("tuning", "gains", "at least one setting scored on at least one tuning task")
    return best_key, best_min


def parse_seeds(spec: str) -> list[int]:
    """`0,1,2` -> [0, 1, 2]: distinct whole numbers."""
    try:
        seeds = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise BadInputError("--seeds", describe(spec), "comma-separated whole numbers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise BadInputError("--seeds", describe(spec), "at least one seed, each once, e.g. 0,1,2")
    return seeds


def parse_tasks(items: list[str] | None, superni_root: str | Path | None = None, *, tuning: bool = True) -> list[str] | None:
    """`--tasks`: SuperNI task names (repeatable or comma-separated, a repeat counted once), each
    in the data; None when not given. A name is also a folder name under --out, so it is a plain taskNNN:
    no path, no pattern. `tuning=False` (--setting, no tuning phase) refuses tuning tasks."""
    from selfguide.tasks.superni import find_superni_task, superni_root_default

    if items is None:
        return None
    names = list(dict.fromkeys(name.strip() for item in items for name in item.split(",") if name.strip()))  # each once, in order
    if not names:
        raise BadInputError("--tasks", "value", "SuperNI task names such as task190,task036", "none")
    tuning_tasks = {name for group in TUNING.values() for name in group}
    for name in names:
        if not re.fullmatch(r"task\d+", name):
            raise BadInputError("--tasks", describe(name), "a SuperNI task name such as task036 (no path, no pattern)")
        if find_superni_task(name, superni_root) is None:
            raise BadInputError("--tasks", name, f"a task in {superni_root or superni_root_default()}/tasks (set SELFGUIDE_SUPERNI)", "no such task")
        if not tuning and name in tuning_tasks:
            raise BadInputError("--tasks", name, "a held-out task: with --setting nothing is tuned", "a tuning task")
    return names


def extra_held_out(names: list[str] | None) -> dict[str, list[str]]:
    """The held-out groups with the tasks of `names` outside the paper's 22 added as held-out tasks."""
    known = {name for groups in (TUNING, HELD_OUT) for group in groups.values() for name in group}
    extra = [name for name in names or [] if name not in known]
    return {**HELD_OUT, "chosen": extra} if extra else HELD_OUT

"""`load_task`: a task by path or SuperNI name, ours or SuperNI's, told apart by content."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from selfguide.errors import BadInputError
from selfguide.io import describe
from selfguide.tasks.files import own_task, read_structured_file
from selfguide.tasks.spec import EvalSplit, TaskSpec
from selfguide.tasks.superni import find_superni_task, superni_root_default, superni_task


def load_task(path: str | Path, eval_split: EvalSplit | None = None, superni_root: str | Path | None = None) -> TaskSpec:
    """Load a task file, ours or SuperNI's, by path.

    `eval_split` picks the eval set of a SuperNI task: "official" (first 100 instances, the default),
    or the SELF-GUIDE authors' "selfguide-test" / "selfguide-validation" split files.
    """
    if eval_split is not None and eval_split not in get_args(EvalSplit):
        raise BadInputError("--eval-split", "value", f"one of {', '.join(get_args(EvalSplit))}", describe(eval_split))
    path = Path(path)
    if not path.exists() and re.fullmatch(r"task\d+", str(path)):
        found = find_superni_task(str(path), superni_root)
        if found is None:
            root = superni_root or superni_root_default()
            raise BadInputError(path, "task name", f"a task file, or a SuperNI task in {root}/tasks (set SELFGUIDE_SUPERNI)", "no such task")
        path = found
    data = read_structured_file(path)
    if not isinstance(data, dict):
        raise BadInputError(path, "top level", "a mapping with 'instruction' and 'examples'", type(data).__name__)
    if "Definition" in data and "Positive Examples" in data:
        return superni_task(path, data, eval_split or "official", superni_root)
    if eval_split not in (None, "official"):
        raise BadInputError(path, "eval_split", "'official' for a non-SuperNI task (its eval set is its 'eval' file)", eval_split)
    return own_task(path, data)

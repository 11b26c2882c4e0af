"""The CLI fuzzer (tests/fuzz_cli.py) on a longer grid than the test suite's slice.

    python bench/fuzz_cli.py                      # 1,000 cases from seed 1, 10-25 minutes on 2 busy cores
    python bench/fuzz_cli.py --cases 200 --seed 7

Prints each problem as it is found (an exit other than 0 or 2, an exit 2 that is not one
`error:` line, or a file written outside --out), then the cases by command and exit code. Exits 1
if there is any problem.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="selfguide-fuzz-"))
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "SELFGUIDE_CACHE": str(root / "user-cache")}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("SELFGUIDE_SUPERNI", str(SHARED / "superni"))
    os.environ.setdefault("SELFGUIDE_SELF_INSTRUCT", str(SHARED / "self_instruct"))
    sys.path.insert(0, str(TESTS.parent))
    import pytest
    from tests.fuzz_cli import fuzz

    from selfguide import model_source
    from selfguide.tinymodel import build_tiny_model

    model = build_tiny_model(root / "tiny-model")
    patch = pytest.MonkeyPatch()
    patch.setattr(model_source, "installed_default_gguf", lambda: None)  # no installed model stands in for a missing --model
    started = time.monotonic()
    (root / "cases").mkdir()
    outcomes, problems = fuzz(args.seed, args.cases, root / "cases", model, patch, on_problem=lambda problem: print(f"  found: {problem[:500]}", flush=True))
    patch.undo()
    for (command, code), n in sorted(outcomes.items(), key=str):
        print(f"{command:>10} exit {code}: {n}")
    print(f"{args.cases} cases from seed {args.seed} in {time.monotonic() - started:.0f} s: {len(problems)} problems (cases in {root})")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

"""A CLI fuzzer: generated task files, configs, dataset rows and columns, and flags, for every
command, run in-process through `selfguide.cli.main`. Each case must end in exit 0, or exit 2 with
one `error:` line and no traceback, and write nothing outside its --out.

Cases are drawn from a seeded random generator, so a seed and a count name a fixed grid: the
test suite runs a fast slice, `python bench/fuzz_cli.py` a long one. Commands that would load a
model and train or generate (train, eval, run, synthesize without --dry-run) stop where the API
takes over, after the checks and reads the API does first (task, dataset rows)."""

from __future__ import annotations

import json
import os
from collections import Counter
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

TASK = {
    "name": "sentiment",
    "instruction": "Say whether the review is positive or negative.",
    "examples": [{"input": "A joy.", "output": "positive"}, {"input": "A bore.", "output": "negative"}],
    "labels": ["positive", "negative"],
    "eval": "eval.jsonl",
}
EVAL_ROW = {"input": "Loved it.", "output": "positive"}
DATA_ROW = {"id": "r0", "input": "Review.", "output": "positive"}
CONFIG = {"seed": 1, "model": {"max_batch_tokens": 4096}, "synth": {"method": "self-guide", "inputs": {"rounds": 1}}, "train": {"epochs": 1}, "eval": {"limit": 2}}
# Values a field may be given instead of the right one.
VALUES = [None, 0, -1, 5, 1e309, float("nan"), True, "", " ", "x" * 5000, "\ud800", "../../escape", "/etc", "task036", "a\nb", [], {}, [1, "a"],
          {"input": 1}, [[[[[]]]]], "hf:", "*", "-1", "inf", "1e999", "${HOME}", "{{x}}", "\x00"]
SETTINGS = ["seed", "out", "task", "model.name", "model.backend", "model.base_url", "model.max_batch_tokens", "model.dtype", "teacher", "teacher.name",
            "synth.method", "synth.inputs.rounds", "synth.inputs.temperature", "synth.rounds.num_instructions", "synth.outputs.n", "train.epochs",
            "train.method", "train.learning_rate", "eval.limit", "eval.user_oriented.limit", "dataset.type", "dataset.demos", "dataset.where",
            "dataset.input_column", "eval_split", "cache", "nope", "synth.nope", "synth.method.x"]
METHODS = ["self-guide", "self-instruct", "alpaca", "few-shot-finetune", "backtranslation", "rebase", "prompting", "nope", ""]
FLAG_VALUES = {
    "--seed": ["-1", "abc", "99999999999999999999999", "0"],
    "--limit": ["0", "-5", "x", "1"],
    "--out": ["", "out", "../outside", "{file}", "out/deep/er"],
    "--eval-split": ["official", "selfguide-test", "bogus", ""],
    "--method": METHODS,
    "--backend": ["hf", "openai", "vllm", "llamacpp", "tpu", ""],
    "--base-url": ["http://[::1", "ftp://x", "", "http://127.0.0.1:1/v1", "http://h:port/v1", "x" * 300],
    "--teacher": ["./missing-teacher", "{model}", "t"],
    "--teacher-backend": ["openai", "llamacpp", "x"],
    "--teacher-base-url": ["http://[::", "http://127.0.0.1:1/v1"],
    "--model": ["{model}", "./missing", "x.gguf", "", "a/b/c"],
    "--input-column": ["input", "nope", ""],
    "--output-column": ["output", "label", ""],
    "--instruction": ["Do it.", ""],
    "--demos": ["0", "1", "99", "-3"],
}
BENCH_FLAGS = {
    "--tasks": ["task1516", "task020", "task190", "task284", "tsk1", "../tasks/task036", "task03*", ",", "", "task1516,task1516", "task1516,task1622"],
    "--grid": ["epochs=1", "temperature=0.7,1.0", "foo=1", "epochs=0", "temperature=nan", "epochs="],
    "--setting": ["epochs=1", "temperature=inf", "epochs=1,epochs=2", "", ",", "temperature=-1", "input_length_filter=maybe"],
    "--baselines": ["few_shot_finetune", ",", "", "nope", "gold_finetune,gold_finetune"],
    "--seeds": ["0,1", "", "a", "1,1", "-1"],
    "--max-calls": ["-1", "0", "10", "x"],
    "--parallel": ["0", "1", "-2"],
    "--limit": ["0", "1", "-1"],
    "--eval-split": ["selfguide", "official", "x"],
    "--methods": ["alpaca", "nope", ",", "{config}", "prompting", "self-guide,self-guide"],
    "--user-oriented-limit": ["0", "1", "x"],
}
EXPORT_FLAGS = {
    "--format": ["hf", "parquet", "alpaca", "sharegpt", "openai", "csv", ""],
    "--out": ["", "exported", "{file}", "../outside"],
    "--license": ["apache-2.0", "other", "My License", "a\nb", "", "x" * 100],
}


@dataclass
class Case:
    command: str
    args: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # written into the case folder first
    out: str | None = None  # where the command may write (relative to the case folder)
    error: str = ""  # what the command printed on stderr


def mutate(rng: random.Random, data: dict, keys: list[str]) -> dict:
    """`data` with one to three fields set wrong, removed or added."""
    data = json.loads(json.dumps(data))
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        node, *rest = key.split(".")
        target = data
        for part in [node, *rest][:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else {}
        if not isinstance(target, dict):
            continue
        action = rng.random()
        if action < 0.2:
            target.pop(key.split(".")[-1], None)
        else:
            target[key.split(".")[-1]] = rng.choice(VALUES)
    return data


def dump(rng: random.Random, data: object, as_json: bool) -> bytes:
    """YAML or JSON text of `data`, sometimes broken at the byte level."""
    import yaml

    text = json.dumps(data) if as_json else yaml.safe_dump(data, allow_unicode=False)
    raw = text.encode("utf-8", "surrogatepass")
    roll = rng.random()
    if roll < 0.08:
        raw = raw[: rng.randint(0, len(raw))]  # cut short
    elif roll < 0.14:
        at = rng.randint(0, len(raw))
        raw = raw[:at] + bytes([rng.choice([0xFF, 0xC3, 0x00, 0x80])]) + raw[at:]  # not UTF-8, or a NUL
    elif roll < 0.18:
        depth = rng.choice([100, 5000, 50_000])
        raw = (b"[" * depth + b"]" * depth) if as_json or rng.random() < 0.5 else raw + b"\nextra: " + b"[" * depth + b"]" * depth
    elif roll < 0.22 and not as_json:
        bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
        raw = (bomb + f"{rng.choice(['instruction', 'seed', 'examples'])}: *i\n").encode()
    elif roll < 0.26:
        line = raw.split(b"\n")[0]
        raw = raw + b"\n" + line + b"\n"  # a key given twice
    return raw


def task_case(rng: random.Random) -> Case:
    as_json = rng.random() < 0.4
    name = "task.json" if as_json else "task.yaml"
    data = mutate(rng, TASK, ["name", "instruction", "examples", "labels", "type", "eval", "category", "extra", "examples.0", "Definition"]) if rng.random() < 0.85 else dict(TASK)
    if rng.random() < 0.2 and isinstance(data.get("examples"), list) and data["examples"]:
        data["examples"][0] = mutate(rng, data["examples"][0] if isinstance(data["examples"][0], dict) else {}, ["input", "output", "other"])
    files = {name: dump(rng, data, as_json), "eval.jsonl": eval_lines(rng)}
    command = rng.choice(["inspect", "synthesize", "eval", "run"])
    args = [command, name]
    if command != "inspect":
        args += ["-m", "{model}"]
    if command == "synthesize":
        args.append("--dry-run")
    return with_flags(rng, Case(command, args, files), FLAG_VALUES if command != "inspect" else {k: FLAG_VALUES[k] for k in ("--eval-split", "--input-column", "--demos")})


def eval_lines(rng: random.Random) -> bytes:
    rows = [dict(EVAL_ROW) for _ in range(3)]
    if rng.random() < 0.3:
        rows[rng.randrange(3)] = mutate(rng, EVAL_ROW, ["input", "output", "id"])
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if rng.random() < 0.1:
        text += rng.choice(["{oops\n", "[1, 2]\n", "\"x\"\n", "\n\n"])
    return text.encode("utf-8", "surrogatepass")


def config_case(rng: random.Random) -> Case:
    data = mutate(rng, CONFIG, SETTINGS)
    files = {"config.yaml": dump(rng, data, False), "task.yaml": dump(random.Random(0), TASK, False), "eval.jsonl": eval_lines(random.Random(0))}
    command = rng.choice(["config", "synthesize", "inspect"])
    args = {"config": ["config"], "synthesize": ["synthesize", "task.yaml", "-m", "{model}", "--dry-run"], "inspect": ["inspect", "task.yaml"]}[command] + ["--config", "config.yaml"]
    for _ in range(rng.randint(0, 3)):
        args += ["--set", f"{rng.choice(SETTINGS)}={json.dumps(rng.choice(VALUES)) if rng.random() < 0.5 else rng.choice(['1', 'x', '', '[', '{a: 1}', 'null', 'self-instruct'])}"]
    return Case(command, args, files)


def dataset_case(rng: random.Random) -> Case:
    """A parquet dataset task with random column types, through inspect or a dry run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = rng.choice([1, 3, 12])
    kinds = {
        "text": lambda i: f"text {i}",
        "int": lambda i: i,
        "null": lambda i: None if i % 2 else "t",
        "list": lambda i: [f"t{i}"],
        "empty": lambda i: "",
        "float": lambda i: i / 3,
    }
    columns = {"input": rng.choice(list(kinds)), "output": rng.choice(list(kinds)), "label": rng.choice(list(kinds))}
    table = pa.table({name: [kinds[kind](i) for i in range(n)] for name, kind in columns.items()})
    import io

    sink = io.BytesIO()
    pq.write_table(table, sink)
    command = rng.choice(["inspect", "synthesize"])
    args = [command, "data.parquet"] + (["-m", "{model}", "--dry-run"] if command == "synthesize" else [])
    case = Case(command, args + ["--instruction", "Do it."], {"data.parquet": sink.getvalue()})
    return with_flags(rng, case, {k: FLAG_VALUES[k] for k in ("--input-column", "--output-column", "--demos", "--eval-split")})


def bench_case(rng: random.Random) -> Case:
    which = rng.choice(["superni", "methods"])
    args = ["bench", which, "-m", "{model}", "--dry-run", "-o", "bench-out"]
    flags = {k: v for k, v in BENCH_FLAGS.items() if which == "methods" or k not in ("--methods", "--user-oriented-limit")}
    if which == "methods":
        args += ["--methods", rng.choice(BENCH_FLAGS["--methods"])]
        flags = {k: v for k, v in flags.items() if k not in ("--grid", "--setting", "--baselines")}
    elif rng.random() < 0.7:
        args += ["--tasks", "task1516", "--setting", "epochs=1"]  # most cases small, so a valid one plans quickly
    files = {"config.yaml": dump(random.Random(0), {"synth": {"method": "alpaca"}}, False)}
    return with_flags(rng, Case("bench", args, files, out="bench-out"), flags)


def export_case(rng: random.Random) -> Case:
    rows = [dict(DATA_ROW, id=f"r{i}") for i in range(3)]
    if rng.random() < 0.6:
        rows[rng.randrange(3)] = mutate(rng, DATA_ROW, ["input", "output", "instruction", "id"])
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if rng.random() < 0.15:
        text += rng.choice(["{oops\n", "[1]\n", "null\n"])
    case = Case("export", ["export", "{run}"], {"run/synth/dataset.jsonl": text.encode("utf-8", "surrogatepass")}, out="run/export")
    case = with_flags(rng, case, EXPORT_FLAGS)
    if "--out" in case.args:
        case.out = case.args[case.args.index("--out") + 1]
    return case


def with_flags(rng: random.Random, case: Case, pool: dict[str, list[str]]) -> Case:
    for flag in rng.sample(sorted(pool), k=min(len(pool), rng.randint(0, 3))):
        case.args += [flag, rng.choice(pool[flag])]
    if "--out" in case.args and case.command != "export":
        case.out = case.args[case.args.index("--out") + 1]
    return case


def train_case(rng: random.Random) -> Case:
    """A dataset.jsonl (rows possibly wrong) trained on with a task; stops before training."""
    rows = [dict(DATA_ROW, id=f"r{i}") for i in range(3)]
    if rng.random() < 0.6:
        rows[rng.randrange(3)] = mutate(rng, DATA_ROW, ["input", "output", "instruction"])
    text = "".join(json.dumps(r) + "\n" for r in rows) + (rng.choice(["{oops\n", "[1]\n", "7\n"]) if rng.random() < 0.15 else "")
    files = {"data.jsonl": text.encode("utf-8", "surrogatepass"), "task.yaml": dump(random.Random(0), {k: v for k, v in TASK.items() if k != "eval"}, False)}
    pool = {"--epochs": ["0", "-1", "1", "x", "nan"], "--method": ["lora", "full", "qlora"], "--out": FLAG_VALUES["--out"], "--seed": FLAG_VALUES["--seed"], "--task": ["task.yaml", "missing.yaml", "task036", ""]}
    return with_flags(rng, Case("train", ["train", "data.jsonl", "--task", "task.yaml", "-m", "{model}"], files), pool)


GENERATORS = [task_case, config_case, dataset_case, bench_case, export_case, train_case]


def generate(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    return [rng.choice(GENERATORS)(rng) for _ in range(count)]


class Reached(BaseException):
    """A command passed every check and reached the work the fuzzer does not run (a BaseException,
    so that the CLI's handler of unexpected errors lets it through)."""


def stub_heavy_work(monkeypatch) -> None:
    """train / eval / run / synthesize stop after the reads their API function makes first."""
    from selfguide import api
    from selfguide.run_task import load_method_task

    def reads_then_stop(config, dataset_path=None, *args, **kwargs):
        load_method_task(config)
        if dataset_path is not None:
            api.read_pairs(Path(dataset_path))
        raise Reached

    for name in ("train", "evaluate", "run", "synthesize"):
        monkeypatch.setattr(api, name, reads_then_stop)


def snapshot(root: Path) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("user-cache", "tiny-model")]
        found.update(os.path.relpath(os.path.join(folder, name), root) for name in [*dirs, *files])
    return found


def run_case(case: Case, index: int, root: Path, model: Path, base_run: Path) -> tuple[object, str | None]:
    """Run one case in its own folder under `root`: its exit code, and a problem in words or None."""
    import contextlib
    import io
    import shutil

    from selfguide.cli import main

    folder = root / f"case{index}"
    folder.mkdir()
    (folder / "a_file").write_text("x")
    if case.command == "export":
        shutil.copytree(base_run, folder / "run")
    for name, data in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    subs = {"{model}": str(model), "{file}": "a_file", "{run}": "run", "{config}": "config.yaml"}
    args = [subs.get(a, a) for a in case.args]
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(folder)
    err, out = io.StringIO(), io.StringIO()
    sys.argv = ["selfguide", *args]
    code: object = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            main()
    except SystemExit as exit_:
        code = exit_.code
    except Reached:
        code = 0
    except Exception as raised:  # what main let through is the finding
        code = f"raised {type(raised).__name__}"
    finally:
        os.chdir(cwd)
    case.error = err.getvalue()
    lines = [line for line in case.error.splitlines() if line.strip()]
    problem = None
    if code == 2:
        if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in err.getvalue():
            problem = f"exit 2 without one error line: {lines[:3]}"
    elif code != 0:
        problem = f"exit {code}: {lines[:2]}"
    new = snapshot(root) - before
    allowed = [f"case{index}/{case.out}".rstrip("/")] if case.out else []
    outside = sorted(p for p in new if not any(p == a or p.startswith(a + "/") or a.startswith(p + "/") for a in [os.path.normpath(x) for x in allowed]))
    if outside and code != 2:
        problem = problem or f"wrote outside --out: {outside[:3]}"
    elif outside:
        problem = problem or f"refused but wrote: {outside[:3]}"
    return code, problem and f"{problem} <- selfguide {' '.join(repr(a)[:60] for a in args)}"


def make_base_run(root: Path, model: Path) -> Path:
    """A finished-looking run folder (config, task copy, dataset) for the export cases."""
    from selfguide import api, layout
    from selfguide.config import load_config
    from selfguide.run_task import load_method_task

    (root / "task.yaml").write_text(json.dumps({k: v for k, v in TASK.items() if k != "eval"}))
    config = load_config(None, values={"task": str(root / "task.yaml"), "model.name": str(model), "out": str(root / "base-run")})
    with api.open_run(config, load_method_task(config)) as out:
        layout.dataset_path(out).parent.mkdir(parents=True, exist_ok=True)
        layout.dataset_path(out).write_text(json.dumps(DATA_ROW) + "\n")
    return root / "base-run"


def fuzz(seed: int, count: int, root: Path, model: Path, monkeypatch, on_problem=None) -> tuple[Counter, list[str]]:
    """Run `count` cases from `seed` under `root`: (cases by command and exit code, problems found,
    each also passed to `on_problem` as it is found)."""
    stub_heavy_work(monkeypatch)
    base_run = make_base_run(root, model)
    outcomes: Counter = Counter()
    problems = []
    for index, case in enumerate(generate(seed, count)):
        code, problem = run_case(case, index, root, model, base_run)
        outcomes[(case.command, code)] += 1
        if problem:
            problems.append(problem)
            if on_problem:
                on_problem(problem)
    return outcomes, problems

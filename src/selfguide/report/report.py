"""The run report: report.md and a self-contained report.html (plots inlined) built from the files
of a run folder, plus the plots as PNGs under `<out>/plots/`.

Every file of the run is optional: a section whose data is missing says so instead of failing, so
a run that stopped early, or kept no synthetic pairs and so trained nothing, still gets a report.
Sections are built once as a list of blocks and rendered twice, to Markdown and to HTML.
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from selfguide import layout
from selfguide.config import RunConfig, config_yaml
from selfguide.io import write_text
from selfguide.methods.self_guide import SelfGuideConfig
from selfguide.report import plots
from selfguide.report.blocks import Block, Details, FileLinks, Heading, Image, Note, Para, Table, Verdict
from selfguide.report.sections import confusion_section, cost_section, differences_section, environment_section, files_section, fmt_seconds
from selfguide.report.verdict import headline
from selfguide.tasks.spec import EvalItem, TaskSpec

TEXT_LIMIT = 300  # characters of model or task text shown per table cell
N_SHOWN = 5  # examples, drops and predictions shown
METRIC_NAMES = {
    "exact_match": "exact_match (SuperNI)",
    "rougeL": "rougeL (SuperNI)",
    "paper_accuracy": "paper_accuracy (paper variant)",
    "paper_char_lcs_f1": "paper_char_lcs_f1 (paper variant)",
    "label_scored_exact_match": "exact_match of the most likely label (label scoring)",
}


# --- reading the run folder ------------------------------------------------------------------


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


@dataclass
class Run:
    summary: dict | None
    dataset: list[dict] | None
    drops: list[dict] | None
    train_done: dict | None
    train_log: list[dict] | None
    metrics: dict[str, dict | None]  # "prompting" / "finetuned"
    predictions: dict[str, list[dict] | None]
    timings: dict | None
    environment: dict | None
    eval_items: list[EvalItem]  # the items both systems were evaluated on

    @property
    def pairs(self) -> int | None:
        if self.summary is not None:
            return self.summary.get("pairs")
        return len(self.dataset) if self.dataset is not None else None


def load_run(files: RunFiles, task: TaskSpec, config: RunConfig) -> Run:
    systems = (layout.PROMPTING, layout.FINETUNED)
    return Run(
        summary=files.json(f"{layout.SYNTH}/{layout.SUMMARY}"),
        dataset=files.jsonl(f"{layout.SYNTH}/{layout.DATASET}"),
        drops=files.jsonl(f"{layout.SYNTH}/{layout.DROPS}"),
        train_done=files.json(f"{layout.TRAIN}/{layout.TRAIN_DONE}"),
        train_log=files.jsonl(f"{layout.TRAIN}/{layout.TRAIN_LOG}"),
        metrics={s: files.json(f"{layout.EVAL}/{s}/{layout.METRICS}") for s in systems},
        predictions={s: files.jsonl(f"{layout.EVAL}/{s}/{layout.PREDICTIONS}") for s in systems},
        timings=files.json(layout.TIMINGS),
        environment=files.json(layout.ENVIRONMENT),
        eval_items=task.eval[: config.eval.limit] if config.eval.limit else task.eval,
    )


# --- sections --------------------------------------------------------------------------------


def title_section(task: TaskSpec, config: RunConfig, out_dir: Path) -> list[Block]:
    labels = ", ".join(task.labels) if task.labels else "-"
    return [
        Heading(f"SELF-GUIDE run report: {task.name}", 1),
        Verdict(headline(out_dir)),
        Para(f"Task: {task.name} ({task.type}{', ' + task.category if task.category else ''}). Labels: {labels}. "
             f"Model: {config.model.name or '(not set)'} via {config.model.backend}."),
    ]


def settings_section(task: TaskSpec, config: RunConfig) -> list[Block]:
    return [
        Heading("Settings"),
        Table(["setting", "value"], settings_rows(task, config)),
        Details("Full resolved config", config_yaml(config)),
    ]


def settings_rows(task: TaskSpec, config: RunConfig) -> list[list[str]]:
    train = config.train
    rows = [
        ["model", config.model.name or "-"],
        ["backend", config.model.backend],
        ["data written and labelled by", config.teacher.name if config.teacher else "the model itself"],
        ["method", config.synth.method],
        ["seed", str(config.seed)],
    ]
    if isinstance(config.synth, SelfGuideConfig):
        rows += self_guide_rows(task, config.synth)
    return rows + [
        ["train method", train.method],
        ["train epochs", f"{train.epochs:g}"],
        ["learning rate", f"{train.resolved(cuda_bf16=False).learning_rate:g}"],
        ["eval limit", str(config.eval.limit) if config.eval.limit else "all"],
    ]


def self_guide_rows(task: TaskSpec, synth: SelfGuideConfig) -> list[list[str]]:
    inputs, outputs, filters = synth.inputs, synth.outputs, synth.input_filters

    def on(flag: bool) -> str:
        return "on" if flag else "off"

    return [
        ["input rounds x prompts per round", f"{inputs.rounds_for(task)} x {inputs.prompts_per_round}"],
        ["input temperature", f"{inputs.temperature:g}"],
        ["output samples per input (n)", str(outputs.n)],
        ["output temperature", f"{outputs.temperature:g}"],
        ["min vote share", f"{outputs.min_vote_share:g}"],
        [
            "input filters",
            f"length {on(filters.length_filter)}, noise {on(filters.noise.enabled)}, "
            f"demo copies {on(filters.drop_demo_copies)}, eval copies {on(filters.drop_eval_copies)}",
        ],
        ["output filters", f"length {on(outputs.length_filter)} (generation only), noise {on(outputs.noise.enabled)}"],
        ["class balance", on(outputs.balance_classes) if task.is_classification else "n/a (generation)"],
    ]


def headline_section(run: Run) -> list[Block]:
    base, tuned = run.metrics["prompting"], run.metrics["finetuned"]
    blocks: list[Block] = [Heading("Prompting vs SELF-GUIDE finetuning")]
    if base is None and tuned is None:
        return blocks + [Note("No evaluation results: eval/prompting/metrics.json and eval/finetuned/metrics.json are missing.")]
    base_values, tuned_values = metric_values(base), metric_values(tuned)
    reported = (base or tuned).get("reported_metric")
    keys = ["exact_match", "rougeL"] + sorted(k for k in {*base_values, *tuned_values} if k.startswith("paper_"))
    keys += [k for k in ("label_scored_exact_match",) if k in base_values or k in tuned_values]
    rows, highlight = [], set()
    for key in keys:
        b, t = base_values.get(key), tuned_values.get(key)
        if key == reported:
            highlight.add(len(rows))
        name = METRIC_NAMES.get(key, key) + (" - reported" if key == reported else "")
        rows.append([name, fmt_score(b), fmt_score(t), f"{t - b:+.2f}" if b is not None and t is not None else "-"])
    n = (base or tuned).get("n", "?")
    blocks.append(Table(["metric (0-100)", f"prompting (n={n})", "self-guide finetuned", "difference"], rows, highlight))
    if tuned is None:
        blocks.append(Note(finetuned_missing_reason(run)))
    elif base is None:
        blocks.append(Note("No prompting baseline: eval/prompting/metrics.json is missing."))
    elif reported in base_values and reported in tuned_values:
        b, t = base_values[reported], tuned_values[reported]
        blocks.append(Para(f"The reported metric, {reported}, went from {b:.2f} with prompting to {t:.2f} after SELF-GUIDE finetuning ({t - b:+.2f})."))
    return blocks


def stacks_section(files: RunFiles) -> list[Block]:
    """Which serving stack produced each number; with a server, its own prompting score as an extra."""
    stacks = files.json(layout.STACKS)
    if not stacks:
        return []
    blocks: list[Block] = [Para("Produced by: " + "; ".join(f"{name}: {stack}" for name, stack in stacks.items()) + ".")]
    server = files.json(f"{layout.EVAL}/{layout.PROMPTING_SERVER}/{layout.METRICS}")
    if server:
        blocks.append(Para(
            f"Prompting through the server scored {server['reported']:.2f} {server['reported_metric']}. It is not in the table: the "
            "finetuned model runs in-process, so the baseline it is compared with runs in-process too, on the same weights."
        ))
    return blocks


def metric_values(metrics: dict | None) -> dict[str, float]:
    if metrics is None:
        return {}
    scored = {"label_scored_exact_match": metrics["label_scored"]["exact_match"]} if metrics.get("label_scored") else {}
    return {**metrics.get("superni", {}), **metrics.get("paper", {}), **scored}


def finetuned_missing_reason(run: Run) -> str:
    if run.pairs == 0:
        return "Not trained: synthesis kept no pairs, so there is no finetuned model to compare with prompting."
    if run.train_done is None:
        return "Not trained: train/done.json is missing (training did not run or did not finish)."
    return "No finetuned result: eval/finetuned/metrics.json is missing (the finetuned model was not evaluated)."


def funnel_section(run: Run, plot_dir: Path) -> list[Block]:
    blocks: list[Block] = [Heading("Synthetic data funnel")]
    if run.summary is None:
        return blocks + [Note("synth/summary.json is missing: synthesis did not finish.")]
    stages = {row["stage"]: row for row in run.summary.get("stages", [])}
    rows = [
        [row["stage"], row["unit"], str(row["total"]), str(row["kept"]), str(row["total"] - row["kept"]), fmt_reasons(row["dropped"])]
        for row in stages.values()
    ]
    blocks.append(Table(["stage", "unit", "in", "kept", "dropped", "drops by reason"], rows))
    blocks.append(Para(f"Final pairs: {run.pairs}."))
    if calls := run.summary.get("model_calls"):
        blocks.append(Para(f"Model calls: {calls.get('calls')} made, {calls.get('cached')} from cache, {calls.get('completion_tokens')} tokens generated."))
    counts = [
        ("candidate inputs", stages.get("input_filter", {}).get("total", 0)),
        ("kept inputs", stages.get("input_filter", {}).get("kept", 0)),
        ("labelled inputs", stages.get("vote", {}).get("kept", 0)),
        ("final pairs", run.pairs or 0),
    ]
    blocks.append(Image(plots.funnel_plot(counts, plot_dir / "funnel.png"), "Synthetic data funnel"))
    return blocks


def fmt_reasons(dropped: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {count}" for reason, count in dropped.items()) or "-"


def distribution_section(run: Run, task: TaskSpec, plot_dir: Path) -> list[Block]:
    if task.is_classification:
        blocks: list[Block] = [Heading("Labels: synthetic pairs vs eval set")]
    else:
        blocks = [Heading("Lengths: synthetic pairs vs eval set")]
    if not run.dataset:
        reason = "synth/dataset.jsonl is missing" if run.dataset is None else "synthesis kept no pairs"
        return blocks + [Note(f"Nothing to compare: {reason}.")]
    eval_refs = [item.references[0] for item in run.eval_items]
    if task.is_classification:
        synthetic = Counter(row["output"] for row in run.dataset)
        eval_set = Counter(eval_refs)
        labels = list(task.labels or []) + sorted((synthetic.keys() | eval_set.keys()) - set(task.labels or []))
        rows = [[label, fmt_share(synthetic[label], synthetic.total()), fmt_share(eval_set[label], eval_set.total())] for label in labels]
        blocks.append(Table(["label", "synthetic pairs", "eval references"], rows))
        blocks.append(Image(plots.label_distribution_plot(labels, synthetic, eval_set, plot_dir / "labels.png"), "Label distribution"))
        return blocks
    texts = [
        ("synthetic inputs", [row["input"] for row in run.dataset]),
        ("eval inputs", [item.input for item in run.eval_items]),
        ("synthetic outputs", [row["output"] for row in run.dataset]),
        ("eval references", eval_refs),
    ]
    rows = [[name, str(len(group)), f"{statistics.median(map(len, group)):g}" if group else "-"] for name, group in texts]
    blocks.append(Table(["texts", "n", "median characters"], rows))
    path = plots.length_histograms_plot(*(group for _, group in texts), plot_dir / "lengths.png")
    blocks.append(Image(path, "Length histograms"))
    return blocks


def fmt_share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.0f}%)" if total else "0"


def examples_section(run: Run) -> list[Block]:
    blocks: list[Block] = [Heading("Synthetic examples"), Heading("Kept pairs", 3)]
    if run.dataset:
        rows = [[clip(r["input"]), clip(r["output"]), fmt_votes(r.get("provenance", {}))] for r in run.dataset[:N_SHOWN]]
        blocks.append(Table(["input", "output", "votes"], rows))
    else:
        blocks.append(Note("No kept pairs." if run.dataset is not None else "synth/dataset.jsonl is missing."))
    blocks.append(Heading("Dropped (the first of each reason)", 3))
    if run.drops:
        first_by_reason: dict[str, dict] = {}
        for row in run.drops:
            first_by_reason.setdefault(row.get("reason"), row)
        rows = [
            [str(r.get("stage", "")), str(r.get("reason", "")), clip(str(r.get("detail") or "")), clip(str(r.get("text") or ""))]
            for r in list(first_by_reason.values())[:N_SHOWN]
        ]
        blocks.append(Table(["stage", "reason", "detail", "text"], rows))
    else:
        blocks.append(Note("Nothing was dropped." if run.drops is not None else "synth/drops.jsonl is missing."))
    return blocks


def fmt_votes(provenance: dict) -> str:
    if "votes" not in provenance:
        return "-"
    return f"{provenance['votes']}/{provenance.get('valid_samples', '?')}"


def training_section(run: Run, config: RunConfig, plot_dir: Path) -> list[Block]:
    blocks: list[Block] = [Heading("Training")]
    done = run.train_done
    if done is None:
        blocks.append(Note(finetuned_missing_reason(run)))
    else:
        blocks.append(
            Para(
                f"Trained on {done.get('n_train', '?')} pairs ({config.train.method}); "
                f"{done.get('n_dropped_too_long', 0)} dropped as longer than {config.train.max_length} tokens."
            )
        )
    # Trainer's end-of-training summary row carries "train_loss", not "loss": not a curve point.
    rows = [row for row in run.train_log or [] if "step" in row and "loss" in row]
    if rows:
        path = plots.loss_curve_plot([r["step"] for r in rows], [r["loss"] for r in rows], plot_dir / "loss.png", epoch_ends(rows))
        blocks.append(Image(path, "Training loss"))
    elif done is not None or run.train_log is not None:
        blocks.append(Note("No loss curve: train/train_log.jsonl is missing or has no loss rows."))
    return blocks


def epoch_ends(rows: list[dict]) -> list[float]:
    """The step at which each whole epoch ended, from the logged (step, epoch) pairs."""
    ends, passed = [], 1
    for row in rows:
        while "epoch" in row and row["epoch"] >= passed - 1e-6:
            ends.append(row["step"])
            passed += 1
    return ends


def predictions_section(run: Run) -> list[Block]:
    base, tuned = run.predictions["prompting"], run.predictions["finetuned"]
    blocks: list[Block] = [Heading("Predictions on the first eval items")]
    if not base and not tuned:
        return blocks + [Note("No predictions: eval/prompting/predictions.jsonl and eval/finetuned/predictions.jsonl are missing.")]
    rows = []
    # Both systems are scored on the same eval items in the same order, so rows pair up by position.
    for i, row in enumerate((base or tuned)[:N_SHOWN]):
        rows.append(
            [
                clip(row.get("input", "")),
                clip(" | ".join(row.get("references", []))),
                fmt_prediction(base, i),
                fmt_prediction(tuned, i),
            ]
        )
    blocks.append(Table(["input", "reference", "prompting", "self-guide finetuned"], rows))
    if not tuned:
        blocks.append(Note("No finetuned predictions: eval/finetuned/predictions.jsonl is missing."))
    return blocks


def fmt_prediction(rows: list[dict] | None, i: int) -> str:
    if not rows or i >= len(rows):
        return "-"
    row = rows[i]
    mark = " [exact match]" if row.get("exact_match") == 1 else ""
    return clip(row.get("prediction") or "") + mark


def invocations_section(out_dir: Path) -> list[Block]:
    """Every command run on this folder (a resumed run is several) and what they cost together."""
    from selfguide.ledger import read_invocations, totals

    rows_in = read_invocations(out_dir)
    if not rows_in:
        return []
    rows = [
        [row.get("started", "-"), row.get("command", "-"), row.get("status", "-"), fmt_seconds(row.get("seconds", 0.0)),
         str(row.get("model_calls", {}).get("calls", 0)), str(row.get("model_calls", {}).get("cached", 0))]
        for row in rows_in
    ]
    total = totals(rows_in)
    rows.append(["total", f"{total['invocations']} invocation{'s' if total['invocations'] != 1 else ''}", "", fmt_seconds(total["seconds"]), str(total.get("calls", 0)), str(total.get("cached", 0))])
    return [Heading("Invocations"), Table(["started", "command", "status", "wall time", "model calls", "from cache"], rows, {len(rows) - 1})]


def fmt_score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 3] + "..."


# --- rendering -------------------------------------------------------------------------------


def render_markdown(blocks: list[Block], base: Path) -> str:
    """GitHub-flavoured Markdown; text is HTML-escaped because Markdown viewers render raw HTML."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {md_text(block.text)}")
        elif isinstance(block, Para):
            out.append(md_text(block.text))
        elif isinstance(block, Note):
            out.append(f"> **Note:** {md_text(block.text)}")
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(md_cell(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
            for i, row in enumerate(block.rows):
                cells = [md_cell(c) for c in row]
                if i in block.highlight:
                    cells = [f"**{c}**" if c else c for c in cells]
                lines.append("| " + " | ".join(cells) + " |")
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            out.append(f"![{md_text(block.alt)}]({block.path.relative_to(base).as_posix()})")
        elif isinstance(block, Details):
            out.append(f"<details><summary>{md_text(block.summary)}</summary>\n\n```yaml\n{block.text.rstrip()}\n```\n\n</details>")
        elif isinstance(block, Verdict):
            out.append("\n".join(f"> **{md_text(line)}**" if i == 0 else f"> {md_text(line)}" for i, line in enumerate(block.lines)).replace("\n", "\n>\n", 1))
        elif isinstance(block, FileLinks):
            out.append("\n".join(f"- [{md_text(p)}]({p})" for p in block.paths))
    return "\n\n".join(out) + "\n"


def md_text(text: str) -> str:
    return html.escape(text, quote=False)


def md_cell(text: str) -> str:
    return md_text(text).strip().replace("|", "\\|").replace("\n", "<br>")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; text-align: left; white-space: pre-wrap; overflow-wrap: anywhere; }
th { background: #f2f2f2; }
tr.highlight td { background: #fff4c2; font-weight: 600; }
p.note { background: #fdf1e6; border-left: 4px solid #e08a2e; padding: .5em .8em; }
img { max-width: 100%; display: block; margin: .6em 0; }
pre { background: #f6f8fa; padding: .8em; overflow: auto; font-size: .85em; }
summary { cursor: pointer; }
div.answer { background: #eef6ee; border: 2px solid #5a9a5a; border-radius: 6px; padding: .4em 1em; margin: 1em 0; }
p.verdict { font-size: 1.25em; font-weight: 700; margin: .4em 0; }
p.why { margin: .4em 0; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: inline CSS and plots as base64 data URIs, every text escaped."""
    esc = html.escape
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            body.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Note):
            body.append(f'<p class="note">{esc(block.text)}</p>')
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
            rows = "".join(
                ('<tr class="highlight">' if i in block.highlight else "<tr>") + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                for i, row in enumerate(block.rows)
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            body.append(f'<img src="data:image/png;base64,{data}" alt="{esc(block.alt)}">')
        elif isinstance(block, Details):
            body.append(f"<details><summary>{esc(block.summary)}</summary><pre>{esc(block.text)}</pre></details>")
        elif isinstance(block, Verdict):
            lines = "".join(f'<p class="{"verdict" if i == 0 else "why"}">{esc(line)}</p>' for i, line in enumerate(block.lines))
            body.append(f'<div class="answer">{lines}</div>')
        elif isinstance(block, FileLinks):
            body.append("<ul>" + "".join(f'<li><a href="{esc(p)}">{esc(p)}</a></li>' for p in block.paths) + "</ul>")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


# --- entry point -----------------------------------------------------------------------------


def write_report(out_dir: Path, task: TaskSpec, config: RunConfig) -> list[Path]:
    """Write `<out>/report.md`, `<out>/report.html` and the plots under `<out>/plots/`; return their paths."""
    out_dir = Path(out_dir)
    plot_dir = out_dir / layout.PLOTS
    files = RunFiles(out_dir)
    run = load_run(files, task, config)
    metric = (run.metrics["prompting"] or run.metrics["finetuned"] or {}).get("reported_metric")
    stage_calls = {
        "synthesize": (run.summary or {}).get("model_calls"),
        "eval_prompting": (run.metrics["prompting"] or {}).get("model_calls"),
        "eval_finetuned": (run.metrics["finetuned"] or {}).get("model_calls"),
    }
    blocks = [
        *title_section(task, config, out_dir),
        *headline_section(run),
        *(differences_section(run.predictions["prompting"], run.predictions["finetuned"], metric) if run.predictions["finetuned"] else predictions_section(run)),
        *(confusion_section(task.labels, run.predictions) if task.is_classification else []),
        *stacks_section(files),
        *funnel_section(run, plot_dir),
        *distribution_section(run, task, plot_dir),
        *examples_section(run),
        *training_section(run, config, plot_dir),
        *cost_section(stage_calls, run.timings, run.environment),
        *environment_section(run.environment),
        *files_section(out_dir),
        *invocations_section(out_dir),
        *settings_section(task, config),
    ]
    if files.problems:
        blocks += [Heading("Unreadable files"), *(Note(problem) for problem in files.problems)]
    md_path, html_path = out_dir / layout.REPORT_MD, out_dir / layout.REPORT_HTML
    write_text(md_path, render_markdown(blocks, out_dir))
    write_text(html_path, render_html(blocks, f"SELF-GUIDE report: {task.name}"))
    return [md_path, html_path, *(block.path for block in blocks if isinstance(block, Image))]

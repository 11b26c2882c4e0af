"""The run report: report.md and a self-contained report.html (plots inlined) built from the files
of a run folder, plus the plots as PNGs under `<out>/plots/`.

Every file of the run is optional: a section whose data is missing says so instead of failing, so
a run that stopped early, or kept no synthetic pairs and so trained nothing, still gets a report.
Sections are built once as a list of blocks and rendered twice, to Markdown and to HTML.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from selfguide import layout
from selfguide.config import RunConfig, config_yaml
from selfguide.io import write_text
from selfguide.methods import get_method
from selfguide.methods.self_guide import SelfGuideConfig
from selfguide.report import plots
from selfguide.report.deploy import headline
from selfguide.report.blocks import Block, Details, Heading, Image, Note, Para, Table, Verdict
from selfguide.report.render import render_html, render_markdown
from selfguide.report.run_files import Run, RunFiles, load_run
from selfguide.report.sections import confusion_section, cost_section, differences_section, environment_section, files_section, fmt_seconds
from selfguide.stages.funnel import fmt_reasons
from selfguide.tasks.spec import TaskSpec

TEXT_LIMIT = 300  # characters of model or task text shown per table cell
N_SHOWN = 5  # examples, drops and predictions shown
N_SETTINGS = 24  # a method's own settings shown in the table (the full config is below it)
METRIC_NAMES = {
    "exact_match": "exact_match (SuperNI)",
    "rougeL": "rougeL (SuperNI)",
    "paper_accuracy": "paper_accuracy (paper variant)",
    "paper_char_lcs_f1": "paper_char_lcs_f1 (paper variant)",
    "label_scored_exact_match": "exact_match of the most likely label (label scoring)",
}


# --- sections --------------------------------------------------------------------------------


def title_section(run: Run, task: TaskSpec, config: RunConfig, out_dir: Path) -> list[Block]:
    labels = ", ".join(task.labels) if task.labels else "-"
    return [
        Heading(f"{run.method.display_name} run report: {task.name}", 1),
        Verdict(headline(out_dir)),
        Para(f"Task: {task.name} ({task.type}{', ' + task.category if task.category else ''}). Labels: {labels}. "
             f"Model: {run.known_as(config.model.name)} via {config.model.backend}. Data made by {run.method.display_name}."),
    ]


def settings_section(run: Run, task: TaskSpec, config: RunConfig) -> list[Block]:
    return [
        Heading("Settings"),
        Table(["setting", "value"], settings_rows(task, config, run.known_as)),
        Details("Full resolved config", config_yaml(config)),
    ]


def settings_rows(task: TaskSpec, config: RunConfig, known_as: Callable[[str], str]) -> list[list[str]]:
    """The run's main settings; the method's own come from its config (SELF-GUIDE's, curated)."""
    train = config.train
    method = get_method(config.synth.method)
    rows = [
        ["model", known_as(config.model.name) if config.model.name else "-"],
        ["backend", config.model.backend],
        ["data written and labelled by", known_as(config.teacher.name) if config.teacher else "the model itself"],
        ["method", f"{method.display_name} ({method.name})"],
        ["seed", str(config.seed)],
    ]
    if isinstance(config.synth, SelfGuideConfig):
        rows += self_guide_rows(task, config.synth)
    else:
        rows += method_rows(config.synth.model_dump(mode="json", exclude={"method"}))
    return rows + [
        ["train method", train.method],
        ["train epochs", f"{train.epochs:g}"],
        ["learning rate", f"{train.resolved(cuda_bf16=False).learning_rate:g}"],
        ["eval limit", str(config.eval.limit) if config.eval.limit else "all"],
    ]


def method_rows(settings: dict, prefix: str = "") -> list[list[str]]:
    """A method's settings as rows, nested ones by their dotted path, lists and long values left
    to the full config; at most N_SETTINGS."""
    rows = []
    for key, value in settings.items():
        if isinstance(value, dict):
            rows += method_rows(value, f"{prefix}{key}.")
        elif not isinstance(value, list) and len(str(value)) <= 60:
            rows.append([f"{prefix}{key}", "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)])
    return rows[:N_SETTINGS]


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
    blocks: list[Block] = [Heading(f"Prompting vs {run.system}")]
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
    blocks.append(Table(["metric (0-100)", f"prompting (n={n})", run.system, "difference"], rows, highlight))
    if tuned is None:
        blocks.append(Note(finetuned_missing_reason(run)))
    elif base is None:
        blocks.append(Note("No prompting baseline: eval/prompting/metrics.json is missing."))
    elif reported in base_values and reported in tuned_values:
        b, t = base_values[reported], tuned_values[reported]
        blocks.append(Para(f"The reported metric, {reported}, went from {b:.2f} with prompting to {t:.2f} with {run.system} ({t - b:+.2f})."))
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


def user_oriented_section(files: RunFiles) -> list[Block]:
    """Self-Instruct's 252 user-oriented instructions, when the run was scored on them (general-purpose data)."""
    scores = {name: files.json(f"{layout.EVAL}/{layout.USER_ORIENTED}/{name}/{layout.METRICS}") for name in (layout.PROMPTING, layout.FINETUNED)}
    rows = [[name, str(metrics["n"]), f"{metrics['rougeL']:.2f}"] for name, metrics in scores.items() if metrics]
    if not rows:
        return []
    return [
        Heading("User-oriented instructions"),
        Para("Self-Instruct's user-oriented instructions, answered greedily and scored by ROUGE-L (stemmed) against the reference answer."),
        Table(["model", "instructions", "rougeL"], rows),
    ]


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
    """The stages the method recorded, in its order: what entered each, what it kept and why it dropped the rest."""
    blocks: list[Block] = [Heading("Synthetic data funnel")]
    summary = run.summary
    if summary is None:
        return blocks + [Note("synth/summary.json is missing: synthesis did not finish.")]
    rows = [[s.stage, s.unit, str(s.total), str(s.kept), str(s.n_dropped), fmt_reasons(s)] for s in summary.stages]
    if rows:
        blocks.append(Table(["stage", "unit", "in", "kept", "dropped", "drops by reason"], rows))
    else:
        blocks.append(Note(f"{run.method.display_name} records no funnel stages: its pairs are not filtered from candidates."))
    blocks.append(Para(f"Final pairs: {run.pairs}."))
    if (models := summary.models) is not None:
        source = f"Inputs from {models.wrote}" if models.from_file else f"Data written by {run.known_as(models.wrote)}"
        blocks.append(Para(f"{source}, labelled by {run.known_as(models.labelled)}; trained: {run.known_as(models.trained)}."))
    if (calls := summary.model_calls) is not None:
        blocks.append(Para(f"Model calls: {calls.calls} made, {calls.cached} from cache, {calls.completion_tokens} tokens generated."))
    if summary.stages:
        counts = [(f"{s.stage} ({s.unit})" if s.unit else s.stage, s.total, s.kept) for s in summary.stages]
        blocks.append(Image(plots.funnel_plot(counts, summary.pairs, plot_dir / "funnel.png"), "Synthetic data funnel"))
    return blocks


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
        first_by_reason = {}
        for drop in run.drops:
            first_by_reason.setdefault(drop.reason, drop)
        rows = [[d.stage or "", d.reason or "", clip(str(d.detail or "")), clip(str(d.text or ""))] for d in list(first_by_reason.values())[:N_SHOWN]]
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
    blocks.append(Table(["input", "reference", "prompting", run.system], rows))
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


# --- entry point -----------------------------------------------------------------------------


def write_report(out_dir: Path, task: TaskSpec, config: RunConfig) -> list[Path]:
    """Write `<out>/report.md`, `<out>/report.html` and the plots under `<out>/plots/`; return their paths."""
    out_dir = Path(out_dir)
    plot_dir = out_dir / layout.PLOTS
    files = RunFiles(out_dir)
    run = load_run(files, task, config)
    metric = (run.metrics["prompting"] or run.metrics["finetuned"] or {}).get("reported_metric")
    synth_calls = run.summary.model_calls if run.summary is not None else None
    stage_calls = {
        "synthesize": synth_calls.model_dump() if synth_calls is not None else None,
        "eval_prompting": (run.metrics["prompting"] or {}).get("model_calls"),
        f"eval_{run.compared}": (run.metrics["finetuned"] or {}).get("model_calls"),
    }
    blocks = [
        *title_section(run, task, config, out_dir),
        *headline_section(run),
        *(differences_section(run.predictions["prompting"], run.predictions["finetuned"], metric) if run.predictions["finetuned"] else predictions_section(run)),
        *(confusion_section(task.labels, run.predictions) if task.is_classification else []),
        *stacks_section(files),
        *user_oriented_section(files),
        *funnel_section(run, plot_dir),
        *distribution_section(run, task, plot_dir),
        *examples_section(run),
        *training_section(run, config, plot_dir),
        *cost_section(stage_calls, run.timings, run.environment),
        *environment_section(run.environment),
        *files_section(out_dir),
        *invocations_section(out_dir),
        *settings_section(run, task, config),
    ]
    if files.problems:
        blocks += [Heading("Unreadable files"), *(Note(problem) for problem in files.problems)]
    md_path, html_path = out_dir / layout.REPORT_MD, out_dir / layout.REPORT_HTML
    write_text(md_path, render_markdown(blocks, out_dir))
    write_text(html_path, render_html(blocks, f"{run.method.display_name} report: {task.name}"))
    return [md_path, html_path, *(block.path for block in blocks if isinstance(block, Image))]

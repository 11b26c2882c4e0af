"""The report's plots: one function per plot, each writing a small PNG and returning its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy

matplotlib.use("Agg")  # reports are written on headless machines; must come before pyplot
import matplotlib.pyplot as plt  # noqa: E402

FIGSIZE = (7, 4)  # inches; at DPI 110 a plot is 770 x 440 px, full width in the report's column
DPI = 110
plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11})
SYNTH_COLOR = "tab:orange"
EVAL_COLOR = "tab:blue"
IN_COLOR = "tab:gray"


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)  # figures stay in pyplot's registry (and memory) until closed
    return path


def funnel_plot(stages: list[tuple[str, int, int]], pairs: int, path: Path) -> Path:
    """Per stage (first on top), what entered it and what it kept, then the final pairs; each bar
    labelled with its count. Stages count different units, so each stage gets its own pair of bars."""
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(FIGSIZE[1], 0.6 * len(stages) + 1.5)), dpi=DPI, layout="constrained")
    height = 0.4
    rows = range(len(stages))
    entered = ax.barh([i - height / 2 for i in rows], [total for _, total, _ in stages], height, color=IN_COLOR, label="in")
    kept = ax.barh([i + height / 2 for i in rows], [k for _, _, k in stages], height, color=SYNTH_COLOR, label="kept")
    final = ax.barh([len(stages)], [pairs], height, color=SYNTH_COLOR)
    for bars in (entered, kept, final):
        ax.bar_label(bars, padding=3)
    ax.set_yticks([*rows, len(stages)], [name for name, _, _ in stages] + ["final pairs"])
    ax.invert_yaxis()
    ax.set_xlim(0, max([pairs, 1, *(total for _, total, _ in stages)]) * 1.15)  # room for the count labels
    ax.set_xlabel("count")
    ax.set_title("Synthetic data funnel")
    ax.legend(loc="lower right")
    return save(fig, path)


def label_distribution_plot(labels: list[str], synthetic: dict[str, int], eval_set: dict[str, int], path: Path) -> Path:
    """Grouped bars of each label's share among the synthetic pairs and the eval references."""
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    width = 0.4
    positions = range(len(labels))
    for offset, counts, name, color in ((-width / 2, synthetic, "synthetic pairs", SYNTH_COLOR), (width / 2, eval_set, "eval references", EVAL_COLOR)):
        total = sum(counts.values()) or 1
        ax.bar([p + offset for p in positions], [counts.get(label, 0) / total for label in labels], width, label=name, color=color)
    ax.set_xticks(list(positions), labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_ylabel("share")
    ax.set_title("Label distribution")
    ax.legend()
    return save(fig, path)


def length_histograms_plot(
    synth_inputs: list[str], eval_inputs: list[str], synth_outputs: list[str], eval_references: list[str], path: Path
) -> Path:
    """Two panels of character-length histograms (inputs, outputs), synthetic vs eval, as shares so
    that sets of different sizes compare."""
    fig, axes = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI, layout="constrained")
    panels = ((axes[0], "inputs", synth_inputs, eval_inputs), (axes[1], "outputs / references", synth_outputs, eval_references))
    for ax, title, synth, evals in panels:
        groups = [[len(t) for t in synth], [len(t) for t in evals]]
        bins = histogram_bins(groups[0] + groups[1])  # shared, so the bars line up
        for lengths, name, color in zip(groups, ("synthetic", "eval"), (SYNTH_COLOR, EVAL_COLOR)):
            if lengths:
                ax.hist(lengths, bins=bins, weights=[1 / len(lengths)] * len(lengths), alpha=0.55, label=name, color=color)
        ax.set_title(title)
        ax.set_xlabel("characters")
    axes[0].set_ylabel("share")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=2, frameon=False)
    return save(fig, path)


def histogram_bins(values: list[int]) -> numpy.ndarray:
    """About sqrt(n) bins, 5 to 30: six pairs get a few wide bars, not twenty empty ones."""
    n_bins = min(30, max(5, round(len(values) ** 0.5)))
    return numpy.histogram_bin_edges(values or [0], bins=n_bins)


def loss_curve_plot(steps: list[float], losses: list[float], path: Path, epoch_ends: list[float] = ()) -> Path:
    """The loss per logged step, with a dashed line where each epoch ended."""
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax.plot(steps, losses, marker="." if len(steps) < 50 else None, color=SYNTH_COLOR)
    for i, step in enumerate(epoch_ends, start=1):
        ax.axvline(step, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"epoch {i}", (step, 1), xycoords=("data", "axes fraction"), xytext=(-3, -3), textcoords="offset points", ha="right", va="top", fontsize=9, color="grey")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    return save(fig, path)

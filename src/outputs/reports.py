"""Reports: how a run did, as pictures and a summary to paste into a PR, next to metrics.json.

The test split's picture, which is the task's (confusion_matrix.png for single_label,
per_label.png for multi_label, scatter.png of predicted against true values for regression),
learning_curve.png (training loss per logging step, eval metrics per epoch) and report.md,
which ties them to the run's key settings and the classification report. Plots use
matplotlib's object API on the Agg canvas: no pyplot global state, no display needed, and only
runs that get this far pay for the import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from src.config.rundir import (
    CONFIG_FILE,
    CONFUSION_PNG,
    CURVE_PNG,
    PER_LABEL_PNG,
    REPORT_FILE,
    REPORT_MD,
    SCATTER_PNG,
    write_atomic,
)
from src.outputs.render import (
    BOOTSTRAP,
    interval,
    number,
    save_png,
    selection,
    settings_table,
)
from src.tasks.metrics import TASK_METRICS, task_of

TEST_PLOT = {"single_label": CONFUSION_PNG, "multi_label": PER_LABEL_PNG, "regression": SCATTER_PNG}
PLOT_TITLE = {
    "single_label": "confusion matrix",
    "multi_label": "per-label scores",
    "regression": "predicted against true",
}


def write(
    run_dir: Path,
    cfg: DictConfig,
    metrics: Mapping,
    truth: np.ndarray,
    preds: np.ndarray,
    classification_report: str,
) -> list[Path]:
    """The test plot, the learning curve and report.md, from the run's resolved config and its
    metrics.json record; returns the run's report files (what a logger such as MLflow keeps as
    artifacts)."""
    plot = test_plot(run_dir, task_of(metrics), truth, preds, metrics["label_names"])
    learning_curve_png(
        run_dir / CURVE_PNG, metrics["train_log"], metrics["history"], metrics["eval_split"]
    )
    write_atomic(run_dir / REPORT_MD, markdown(cfg, metrics, classification_report))
    names = (REPORT_MD, CONFIG_FILE, REPORT_FILE, plot.name, CURVE_PNG)
    return [run_dir / name for name in names]


def test_plot(
    folder: Path, task: str, truth: np.ndarray, preds: np.ndarray, label_names: Sequence[str]
) -> Path:
    """The task's picture of the test split, into `folder`; returns its path."""
    path = folder / TEST_PLOT[task]
    if task == "regression":
        scatter_png(path, truth, preds, label_names[0])
    elif task == "multi_label":
        per_label_png(path, truth, preds, label_names)
    else:
        confusion_matrix_png(path, truth, preds, label_names)
    return path


def scatter_png(path: Path, truth: np.ndarray, preds: np.ndarray, name: str) -> None:
    """Predicted against true values, with the diagonal a perfect model would sit on."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(truth, preds, s=10, alpha=0.5)
    low, high = float(min(truth.min(), preds.min())), float(max(truth.max(), preds.max()))
    ax.plot([low, high], [low, high], "k--", lw=1, label="predicted = true")
    ax.set(
        xlabel=f"true {name}", ylabel=f"predicted {name}", title=f"Test set ({len(truth)} examples)"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    save_png(fig, path)


def per_label_png(
    path: Path, truth: np.ndarray, preds: np.ndarray, label_names: Sequence[str]
) -> None:
    """Each label's precision, recall and F1 on the test split, its support in the tick."""
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_fscore_support

    scores = precision_recall_fscore_support(truth, preds, zero_division=0)
    n = len(label_names)
    fig = Figure(figsize=(max(6.0, 0.7 * n + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    x, width = np.arange(n), 0.27
    for i, (what, values) in enumerate(zip(("precision", "recall", "F1"), scores[:3], strict=True)):
        ax.bar(x + (i - 1) * width, values, width, label=what)
    ticks = [f"{name}\n({support})" for name, support in zip(label_names, scores[3], strict=True)]
    ax.set_xticks(x, ticks, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set(
        ylim=(0, 1.05),
        ylabel="score",
        title=f"Test set ({len(truth)} examples; support in brackets)",
    )
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    save_png(fig, path)


def confusion_matrix_png(
    path: Path, labels: np.ndarray, preds: np.ndarray, label_names: Sequence[str]
) -> None:
    """Counts of each true label (rows) against each predicted one (columns), shaded by count.
    The margins come from the tick labels' own extents (the user's label names), measured once:
    a layout engine measures every artist and draws twice (0.26 s against 0.09 s a plot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    n = len(label_names)
    counts = confusion_matrix(labels, preds, labels=list(range(n)))
    fig = Figure()
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues", vmin=0, aspect="auto")
    for (i, j), count in np.ndenumerate(counts):
        dark = count > counts.max() / 2
        ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
    ax.set_yticks(range(n), label_names)
    ax.set_xticks(range(n), label_names)
    ax.set(xlabel="predicted", ylabel="true", title=f"Test set ({len(labels)} examples)")

    def inches(texts, size: str) -> float:
        return max(getattr(t.get_window_extent(renderer), size) for t in texts) / fig.dpi

    side = max(2.5, 0.6 * n + 1.5)  # the matrix, in inches
    overhang = 0.0  # how far the first rotated label reaches left of the matrix
    if n > 4 or inches(ax.get_xticklabels(), "width") > 0.95 * side / n:  # too wide to sit level
        ax.set_xticks(range(n), label_names, rotation=45, ha="right", rotation_mode="anchor")
        overhang = inches(ax.get_xticklabels()[:1], "width") - side / n / 2
    left = max(inches(ax.get_yticklabels(), "width") + 0.55, overhang + 0.1)
    bottom, top, right = inches(ax.get_xticklabels(), "height") + 0.55, 0.45, 0.2
    width, height = left + side + right, bottom + side + top
    fig.set_size_inches(width, height)
    fig.subplots_adjust(left / width, bottom / height, 1 - right / width, 1 - top / height)
    save_png(fig, path)


def learning_curve_png(
    path: Path, train_log: list[dict], history: list[dict], eval_split: str
) -> None:
    """Left: the training loss every logging step (and each epoch's mean, at its last step).
    Right: the eval metrics per epoch."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # Margins fixed for these two panels (their labels are ours, their ticks numbers): a layout
    # engine measures every text first and so doubles the draw (0.52 s against 0.27 s a plot)
    fig = Figure(figsize=(11, 4))
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.125, top=0.92, wspace=0.2)
    loss_ax, eval_ax = fig.subplots(1, 2)
    if train_log:
        steps = [r["step"] for r in train_log]
        loss_ax.plot(steps, [r["loss"] for r in train_log], marker=".", label="per logging step")
    epochs = [r for r in history if r.get("train_loss") is not None]
    if epochs:
        steps, means = [r["step"] for r in epochs], [r["train_loss"] for r in epochs]
        loss_ax.plot(steps, means, "o--", label="epoch mean")
    loss_ax.set(xlabel="optimizer step", ylabel="loss", title="Training loss")

    epoch_numbers = [r["epoch"] for r in history]
    known = [m for metrics in TASK_METRICS.values() for m in metrics]
    shown = [m for m in known if history and m in history[0]]
    for name in shown:
        eval_ax.plot(epoch_numbers, [r[name] for r in history], "o-", label=name)
    eval_ax.set(xlabel="epoch", ylabel="value", title=f"Eval metrics ({eval_split} split)")
    eval_ax.set(xlim=(0.5, max(epoch_numbers, default=1) + 0.5))
    if all(-1e-9 <= r[m] <= 1 + 1e-9 for r in history for m in shown):  # scores, not errors
        eval_ax.set(ylim=(-0.02, 1.02), ylabel="score")
    eval_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, eval_ax):
        ax.legend()
        ax.grid(alpha=0.3)
    save_png(fig, path)


def markdown(cfg: Mapping, metrics: Mapping, classification_report: str) -> str:
    """report.md: settings, test metrics, per-epoch history, both plots, the report."""
    test, n_test = metrics["test"], metrics["n_test"]
    title = f"# {cfg['model']['_target_'].rsplit('.', 1)[-1]} on {cfg['backbone']['name']}"
    wall = ", ".join(f"{k} {v:.1f} s" for k, v in metrics["seconds"].items() if k != "total")
    warned = [f"> **Warning:** {w}" for w in metrics.get("warnings") or []]
    lines = [
        f"{title} ({metrics['trainer']})",
        "",
        *(warned + [""] if warned else []),
        *settings_table(cfg, metrics),
        "",
        f"## Test metrics ({n_test} examples)",
        "",
        "| " + " | ".join(test) + " |",
        "|" + "---|" * len(test),
        "| " + " | ".join(f"{v:.4f}" for v in test.values()) + " |",
        "| " + " | ".join(interval(metrics["test_ci95"].get(k)) for k in test) + " |",
        "",
        f"Second row: 95% intervals, {BOOTSTRAP}.",
        "",
        selection(cfg, metrics),
        f"Trained on {metrics['n_train']} examples in {metrics['train_seconds']:.2f} s "
        f"({metrics['train_samples_per_second']:.3f} samples/s) on {metrics['device']}, "
        f"{metrics['precision']}" + (", stopped early." if metrics["stopped_early"] else "."),
        f"Wall time: {wall} (the training steps alone {metrics['train_seconds']:.1f} s).",
        "",
        "## Per epoch",
        "",
        *_history_table(metrics["history"]),
        "",
        f"![{PLOT_TITLE[task_of(metrics)]}]({TEST_PLOT[task_of(metrics)]})",
        "",
        f"![learning curve]({CURVE_PNG})",
        "",
        f"## {'Regression' if task_of(metrics) == 'regression' else 'Classification'} report "
        f"(test, from {REPORT_FILE})",
        "",
        "```text",
        classification_report.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _history_table(history: list[dict]) -> list[str]:
    scores = [k for k in (history[0] if history else {}) if k not in ("epoch", "step")]
    columns = ["epoch", *scores]
    rows = ["| " + " | ".join(number(r.get(c)) for c in columns) + " |" for r in history]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *rows]


def show_config(cfg: DictConfig) -> None:
    """The resolved config as a tree, one branch per group, then the top-level knobs."""

    def yaml(text: str) -> Syntax:
        return Syntax(text.rstrip(), "yaml", background_color="default")

    tree = Tree("config", guide_style="dim")
    knobs = OmegaConf.to_container(cfg, resolve=True)
    for name, node in cfg.items():
        if isinstance(node, DictConfig):
            knobs.pop(name)
            tree.add(f"[bold]{name}").add(yaml(OmegaConf.to_yaml(node, resolve=True)))
    tree.add("[bold]knobs").add(yaml(OmegaConf.to_yaml(knobs)))
    Console(width=100).print(tree)

"""Reports: how a run did, as pictures and a summary to paste into a PR, next to metrics.json.

confusion_matrix.png (test set), learning_curve.png (training loss per logging step, eval
metrics per epoch) and report.md, which ties them to the run's key settings and the
classification report. Plots use matplotlib's object API on the Agg canvas: no pyplot global
state, no display needed, and only runs that get this far pay for the import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.metrics import CORE
from src.outputs import REPORT_FILE, write_atomic

CONFUSION_PNG = "confusion_matrix.png"
CURVE_PNG = "learning_curve.png"
REPORT_MD = "report.md"


def write(
    run_dir: Path,
    cfg: DictConfig,
    summary: dict,
    labels: np.ndarray,
    preds: np.ndarray,
    classification_report: str,
) -> None:
    """Both PNGs and report.md; `summary` is the content of metrics.json."""
    confusion_matrix_png(run_dir / CONFUSION_PNG, labels, preds, summary["label_names"])
    learning_curve_png(
        run_dir / CURVE_PNG, summary["train_log"], summary["history"], summary["eval_split"]
    )
    write_atomic(run_dir / REPORT_MD, markdown(settings(cfg), summary, classification_report))


def settings(cfg: DictConfig) -> dict:
    """The settings a reviewer asks about first, read where the run read them."""
    return {
        "backbone": cfg.backbone.name,
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "trainer": cfg.trainer._target_.rsplit(".", 1)[-1],
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1],
        "lr": cfg.optimizer.lr,
        "scheduler": f"{cfg.scheduler.name}, warmup {cfg.scheduler.warmup_ratio}",
        "epochs": cfg.trainer.epochs,
        "batch_size": cfg.trainer.batch_size,
        "max_length": cfg.max_length,
        "truncation": cfg.truncation,
        "dropout": cfg.model.dropout,
        "seed": cfg.seed,
    }


def confusion_matrix_png(
    path: Path, labels: np.ndarray, preds: np.ndarray, label_names: Sequence[str]
) -> None:
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    n = len(label_names)
    counts = confusion_matrix(labels, preds, labels=list(range(n)))
    side = max(4.0, 0.6 * n + 2.5)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), labels=label_names, rotation=45 if n > 4 else 0)
    ax.set_yticks(range(n), labels=label_names)
    ax.set(xlabel="predicted", ylabel="true", title=f"Test set ({counts.sum()} examples)")
    threshold = counts.max() / 2
    for (i, j), count in np.ndenumerate(counts):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)
    fig.savefig(path, dpi=120)


def learning_curve_png(
    path: Path, train_log: list[dict], history: list[dict], eval_split: str
) -> None:
    """Left: the training loss every logging step (and each epoch's mean, at its last step).
    Right: the eval metrics per epoch."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, eval_ax = fig.subplots(1, 2)
    if train_log:
        steps = [r["step"] for r in train_log]
        loss_ax.plot(steps, [r["loss"] for r in train_log], marker=".", label="per logging step")
    epochs = [r for r in history if r.get("train_loss") is not None]
    if epochs:
        loss_ax.plot(
            [r["step"] for r in epochs],
            [r["train_loss"] for r in epochs],
            "o--",
            label="epoch mean",
        )
    loss_ax.set(xlabel="optimizer step", ylabel="loss", title="Training loss")
    loss_ax.legend()
    loss_ax.grid(alpha=0.3)

    epoch_numbers = [r["epoch"] for r in history]
    for name in (m for m in CORE if history and m in history[0]):
        eval_ax.plot(epoch_numbers, [r[name] for r in history], "o-", label=name)
    eval_ax.set(xlabel="epoch", ylabel="score", ylim=(-0.02, 1.02))
    eval_ax.set_title(f"Eval metrics ({eval_split} split)")
    eval_ax.set_xlim(0.5, max(epoch_numbers, default=1) + 0.5)
    eval_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    eval_ax.legend()
    eval_ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


def markdown(settings: dict, summary: dict, classification_report: str) -> str:
    """report.md: settings, test metrics, per-epoch history, both plots, the report."""
    best_key = next(k for k in summary if k.startswith("best_eval_"))
    test = summary["test"]
    lines = [
        f"# {settings['model']} on {settings['backbone']} ({settings['trainer']})",
        "",
        "| setting | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in settings.items()),
        "",
        f"## Test metrics ({summary['n_test']} examples)",
        "",
        "| " + " | ".join(test) + " |",
        "|" + "---|" * len(test),
        "| " + " | ".join(f"{v:.4f}" for v in test.values()) + " |",
        "",
        f"Best epoch {summary['best_epoch']} by {best_key[len('best_eval_') :]} on the "
        f"{summary['eval_split']} split ({summary[best_key]:.4f})"
        + (
            "; the test split chose the epoch, so the test metrics are optimistic."
            if summary["eval_split"] == "test"
            else "."
        ),
        f"Trained on {summary['n_train']} examples in {summary['train_seconds']} s "
        f"({summary['train_samples_per_second']} samples/s) on {summary['device']}, "
        f"{summary['precision']}" + (", stopped early." if summary["stopped_early"] else "."),
        "",
        "## Per epoch",
        "",
        *_history_table(summary["history"]),
        "",
        f"![confusion matrix]({CONFUSION_PNG})",
        "",
        f"![learning curve]({CURVE_PNG})",
        "",
        f"## Classification report (test, from {REPORT_FILE})",
        "",
        "```text",
        classification_report.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _history_table(history: list[dict]) -> list[str]:
    columns = ["epoch", "train_loss", *(m for m in CORE if history and m in history[0])]
    rows = ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in history]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *rows]


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def show_config(cfg: DictConfig) -> None:
    """The resolved config as a tree, one branch per group, then the top-level knobs."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.tree import Tree

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

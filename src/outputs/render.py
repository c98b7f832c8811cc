"""What report.md, the model card, the run comparison and the sweep summary show alike, rendered
once: a test metric's interval, the settings table, how the epoch was chosen.

Everything here reads a resolved config and a metrics.json (src.config.rundir's schema), so any
finished run can be rendered again from its folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from src.config.rundir import best_key
from src.models import CUSTOM_HEAD_ARCH
from src.tasks.metrics import BOOTSTRAP_RESAMPLES, task_of

BOOTSTRAP = f"a percentile bootstrap over the test texts ({BOOTSTRAP_RESAMPLES} resamples, seeded)"


def save_png(fig: Any, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure as every plot of ours writes it: PNG at zlib level 1, the same pixels
    as matplotlib's default level 6 in about 0.1 s less a plot on one EPYC core, for a file
    about a fifth larger."""
    fig.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 1})


def interval(bounds: Sequence[float] | None, digits: int = 4) -> str:
    """A 95% interval as every table writes it: `[low, high]`, or `-` without one."""
    return f"[{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]" if bounds else "-"


def number(value: Any) -> str:
    """A metric or setting as every table writes it: 4 decimals (a tiny one in %g, so it does
    not read as 0), `-` for none, anything else as it prints."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:g}"
    return "-" if value is None else str(value)


def cell(value: Any) -> str:
    """`number(value)` as a Markdown table cell: a `|` in it (label_separator's default) and
    a line break would end the cell and shift the row."""
    return number(value).replace("|", "\\|").replace("\n", " ")


def head_of(metrics: Mapping) -> str:
    """The model option: the project's own head is the one the Auto classes cannot load."""
    return "custom_head" if metrics["model"] == CUSTOM_HEAD_ARCH else "hf_head"


def settings(cfg: Mapping, metrics: Mapping) -> dict[str, Any]:
    """The settings a reviewer and a user of the model ask about, read where the run read them."""
    trainer, model, optimizer = cfg["trainer"], cfg["model"], cfg["optimizer"]
    accum = trainer["grad_accum_steps"]
    out = {
        "backbone": f"{cfg['backbone']['name']} (`{cfg['backbone']['path']}`)",
        "head": head_of(metrics) + (f", {model['pooling']} pooling" if "pooling" in model else ""),
        "trainer": metrics["trainer"],
        "optimizer": f"{optimizer['_target_'].rsplit('.', 1)[-1]}, lr {optimizer['lr']}",
        "scheduler": f"{cfg['scheduler']['name']}, warmup {cfg['scheduler']['warmup_ratio']}",
        "epochs": trainer["epochs"],
        "batch_size": f"{trainer['batch_size']}" + (f" x {accum} accumulated" if accum > 1 else ""),
        "max_length": cfg["max_length"],
        "truncation": cfg["truncation"],
    }
    if cfg["truncation"] == "chunks":
        out.update(stride=cfg["stride"], chunk_pooling=cfg["chunk_pooling"])
    sizes = f"{metrics['n_train']} train / {metrics['n_eval']} {metrics['eval_split']}"
    return {
        **({"task": task_line(metrics)} if task_of(metrics) != "single_label" else {}),
        **out,
        "dropout": model["dropout"],
        **({"parameters": parameters_line(cfg, metrics)} if metrics.get("parameters") else {}),
        **({"class_weights": cfg["class_weights"]} if cfg.get("class_weights") else {}),
        "seed": cfg["seed"],
        "splits": f"{sizes} / {metrics['n_test']} test",
        "epoch chosen on": f"{metrics['eval_split']} split, by {trainer['metric_for_best_model']}",
        "precision": f"{metrics['precision']} on {metrics['device']}",
    }


def parameters_line(cfg: Mapping, metrics: Mapping) -> str:
    """How many parameters the model has, how many trained, and LoRA's adapters' size."""
    counts, lora = metrics["parameters"], cfg["model"].get("lora") or {}
    line = f"{counts['total'] / 1e6:.1f}M, {counts['trainable'] / 1e6:.2f}M trained"
    if "adapter_bytes" in counts:
        line += (
            f"; LoRA r={lora.get('r')}: adapters {counts['adapter_bytes'] / 1e6:.2f} MB in "
            "best_model/adapter/"
        )
    return line


def task_line(metrics: Mapping) -> str:
    """The task and what it decided with: a threshold (tuned or set), the targets' scale."""
    task = metrics.get("task") or {}
    line = task_of(metrics)
    if "threshold" in task:
        line += f", threshold {task['threshold']}" + (
            " (tuned on validation)" if task.get("threshold_tuned") else ""
        )
    if task.get("standardize"):
        line += (
            f", targets standardized (mean {task['target_mean']:.4g}, std {task['target_std']:.4g})"
        )
    return line


def settings_table(cfg: Mapping, metrics: Mapping) -> list[str]:
    rows = settings(cfg, metrics).items()
    return ["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def selection(cfg: Mapping, metrics: Mapping) -> str:
    """Which epoch's weights these are and what chose them; a test-split choice is flagged."""
    metric, split = cfg["trainer"]["metric_for_best_model"], metrics["eval_split"]
    best = metrics.get(best_key(metric))
    line = (
        f"The weights are epoch {metrics['best_epoch']}'s, the best {metric} on the {split} "
        f"split ({best:.4f})."
    )
    if split == "test":
        line += (
            " The test split chose the epoch (the notebook's way, `dataset.val_size=0`), "
            "so the test metrics above are optimistic."
        )
    return line

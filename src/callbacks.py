"""Hydra callbacks (registered under hydra.callbacks in conf/config.yaml)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` cannot be created and written, or None if it can."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


class CheckOutputDir(Callback):
    """Refuse an output folder that cannot be written before Hydra tries to create it, with one
    line instead of a stack trace."""

    def _check(self, folder: str, key: str) -> None:
        if reason := unwritable_reason(Path(folder)):
            print(f"error: {key}={folder}: {reason}; choose a writable folder", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

"""Hydra callbacks (registered under hydra.callbacks in conf/config.yaml)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from src.config.errors import USER_ERROR_EXIT_CODE, UserError, one_line, reported
from src.config.rundir import MULTIRUN_FILE, claim, unwritable_reason
from src.outputs.trained import check_output_folder
from src.trainers.distributed import is_main


class CheckConfig(Callback):
    """A single run's own checks (`check`: src.sweeps.job.check, src.evaluate.check) before Hydra
    writes anything into its folder: a mistake is one line, exit 2, and leaves no folder (and
    a finished run's folder as it was). A sweep's jobs are checked as each starts, in its
    folder, so that the summary says why one failed."""

    def __init__(self, check: str) -> None:
        self.check = check

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:

        with reported():
            get_method(self.check)(config)


CHDIR = (
    "hydra.job.chdir=true: this project's commands stay in the folder they are started from, so "
    "that a relative path (dataset files, resume, tokenize_cache, a logger's or a study's URI) "
    "means what was typed; every run writes into its own folder (hydra.run.dir, a sweep's job "
    "folders) either way: drop hydra.job.chdir"
)


NO_RECORD = (
    "hydra.output_subdir=null: a run's .hydra/ is what the commands after it read (the "
    "overrides a summary and src.compare show, whether a folder is a sweep's job); drop it"
)


class CheckOutputDir(Callback):
    """Before Hydra writes anything into the run (or sweep) folder: refuse one that cannot be
    written, and one that a live run is writing, with one line instead of a stack trace. The
    folder is then held for this process (src.config.rundir.claim), so a second run into it is
    refused while this one lives; under torchrun rank 0 holds it for all. Hydra's
    `hydra.job.chdir=true`, which would make the folder the working directory, and
    `hydra.output_subdir=null`, which would leave no record of the job, are refused too (CHDIR
    and NO_RECORD say why)."""

    def _check(self, config: DictConfig, folder: str, key: str, shared: bool = False) -> None:
        """`shared`: an Optuna study's folder, which every worker of the study writes into
        (each job still holds its own folder while it runs)."""

        try:
            if OmegaConf.select(config, "hydra.job.chdir"):
                raise UserError(CHDIR)
            if OmegaConf.select(config, "hydra.output_subdir") is None and is_main():
                raise UserError(NO_RECORD)  # (torchrun's other ranks write none: rank 0's)
            if reason := unwritable_reason(Path(folder)):
                raise UserError(f"{key}={folder}: {reason}; choose a writable folder")
            if is_main() and not shared:
                try:
                    claim(Path(folder))
                except UserError as e:
                    raise UserError(f"{key}={e}") from None
        except UserError as e:
            print(one_line(e), file=sys.stderr)
            sys.exit(USER_ERROR_EXIT_CODE)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        study = "src_sweepers" in str(OmegaConf.select(config, "hydra.sweeper._target_"))
        self._check(config, config.hydra.sweep.dir, "hydra.sweep.dir", shared=study)
        with reported():  # a run's, an evaluation's or a model's folder is no sweep's
            check_output_folder(Path(config.hydra.sweep.dir), "sweep", "hydra.sweep.dir")
            if not study:  # a study's folder is its study's, named by what makes it one
                same_sweep(Path(config.hydra.sweep.dir), list(config.hydra.overrides.task))


def same_sweep(folder: Path, overrides: list[str]) -> None:
    """A sweep folder takes the sweep it was made by again (resume=auto skips its finished
    jobs; a swept key may list other values), not another: another's jobs would sit beside
    its own, its summary ranking both and calling the earlier ones skipped. Another is other
    keys, or another value of a key every job shares: one line naming the sweep there."""
    recorded = folder / MULTIRUN_FILE
    if not recorded.is_file():
        return
    before = list(OmegaConf.load(recorded).hydra.overrides.get("task") or [])
    if _shape(before) != _shape(overrides):
        raise UserError(
            f"hydra.sweep.dir={folder}: holds another sweep ({' '.join(before) or 'no overrides'}"
            "); name a new folder, or run that sweep again (resume=auto skips its finished jobs)"
        )


def _shape(overrides: list[str]) -> tuple[frozenset, dict]:
    """A sweep's keys, and the values its jobs share (a swept key's list may change)."""
    pairs = [o.split("=", 1) for o in overrides if "=" in o]
    pairs = [(k.lstrip("+~"), v) for k, v in pairs if k.lstrip("+~") != "resume"]
    shared = {k: v for k, v in pairs if "," not in v and "(" not in v}
    return frozenset(k for k, _ in pairs), shared

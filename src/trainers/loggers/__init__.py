"""Loggers: where training scalars go while a run trains (`logger=none|tensorboard|csv|mlflow`).

Both trainers log the same tags, named as transformers' TensorBoard integration names them:
`train/loss` and `train/learning_rate` every `logging_steps` optimizer steps, `eval/<metric>`
every epoch, each at its optimizer step. metrics.json keeps the same numbers whatever the
logger; a logger is for watching a run while it trains and comparing runs side by side.
`logger=mlflow` is src/trainers/loggers/mlflow.py. A logger is handed what it records; it reads no
report and imports no trainer.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from src.config.errors import UserError
from src.config.rundir import SCALARS_FILE, TENSORBOARD_DIR


class ScalarLogger(Protocol):
    def log(self, scalars: Mapping[str, float], step: int) -> None: ...

    def finish(self, metrics: Mapping[str, Any], artifacts: Sequence[Path] = ()) -> None:
        """The run finished: `metrics` is metrics.json; `artifacts` the files it wrote."""

    def close(self) -> None:
        """Always called last (src.trainers.build.opened_logger), after `finish` or an exception."""


class NullLogger:
    """`logger=none`: drops everything."""

    def __init__(self, run_dir: Path | None = None) -> None:
        pass

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        pass

    def finish(self, metrics: Mapping[str, Any], artifacts: Sequence[Path] = ()) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """`logger=tensorboard`: event files in `<run dir>/tensorboard`.

    `trainer=hf` hands `writer` to transformers' own TensorBoardCallback; the manual loop calls
    `log`. The writer opens on first use, so a run that logs nothing leaves no empty file.
    """

    def __init__(self, run_dir: Path) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise UserError(
                "logger=tensorboard needs the tensorboard package: pip install tensorboard"
            )
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self._writer = None

    @property
    def writer(self):
        """A torch.utils.tensorboard SummaryWriter on `log_dir`."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def finish(self, metrics: Mapping[str, Any], artifacts: Sequence[Path] = ()) -> None:
        pass

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class CSVLogger:
    """`logger=csv`: `<run dir>/scalars.csv`, one `step,tag,value` row per scalar.

    Long format, so train rows (every logging step) and eval rows (every epoch) share a file;
    `pandas.read_csv(...).pivot_table(index="step", columns="tag")` widens it.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SCALARS_FILE
        self._file = None
        self._writer = None

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file, lineterminator="\n")
            self._writer.writerow(["step", "tag", "value"])
        self._writer.writerows([step, tag, value] for tag, value in scalars.items())
        self._file.flush()

    def finish(self, metrics: Mapping[str, Any], artifacts: Sequence[Path] = ()) -> None:
        pass

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

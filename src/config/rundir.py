"""The run folder: its file names, how they are written, who may write them, and what they say.

A run folder holds config_resolved.yaml, status.json (how the latest attempt stands), the
reports, best_model/ and metrics.json, written last: a folder with metrics.json and a
`finished` status is a finished run. This module is the one writer of status.json and the one
reader of metrics.json (`read_metrics`), whose schema `RunSummary` writes; compare, summarize,
the model card, the reports, predict, resume and the MLflow logger all go through it. It sits
at the bottom of src/: the standard library, PyYAML and `src.config.errors`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

try:
    import fcntl  # file locks (claim, locked); Windows has none
except ImportError:
    fcntl = None

from src.config.errors import Interrupted, Preempted, UserError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
STATUS_FILE = "status.json"
CONFIG_FILE = "config_resolved.yaml"
REPORT_FILE = "classification_report.txt"
REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"  # the test split's picture: single_label's
PER_LABEL_PNG = "per_label.png"  # multi_label's
SCATTER_PNG = "scatter.png"  # regression's
CURVE_PNG = "learning_curve.png"
PREDICTIONS_FILE = "test_predictions.csv"
BEST_MODEL_DIR = "best_model"
PREPROCESSING_FILE = "preprocessing.json"  # in best_model/: how texts were cut for this model
CHECKPOINTS_DIR = "checkpoints"  # both loops' resume checkpoints
CHECKPOINT_NAMES = ("step-", "checkpoint-")  # the manual loop's and transformers' Trainer's
TENSORBOARD_DIR = "tensorboard"
SCALARS_FILE = "scalars.csv"
ERROR_FILE = "error.txt"  # a failed job of a sweep: its traceback (src.sweeps.summary.SweepSummary)
LOCK_FILE = ".lock"  # held by the process writing the folder (`claim`)
MULTIRUN_FILE = "multirun.yaml"  # a sweep's folder: the config it was started with
HYDRA_DIR = ".hydra"  # Hydra's own record of a job: config, hydra.yaml, overrides.yaml
BEST = "best_eval_"  # metrics.json: best_eval_<metric>, the value that chose the epoch

STATUSES = ("running", "finished", "pruned", "failed", "preempted", "interrupted")
DONE = ("finished", "pruned")  # a complete run folder: pruned stopped early at a study's word
# How a run's latest attempt began: new; over an unfinished earlier attempt (failed, killed)
# without a checkpoint; from its newest checkpoint; or not at all, as it had finished
# (`resume=auto` on a finished run, e.g. a sweep run again: its recorded metric is returned).
STARTS = ("fresh", "rerun", "resumed", "skipped")


# --- writing: whole files or none ---------------------------------------------------------


def _file_mode() -> int:
    """The mode `open()` gives a new file under this process's umask (0644 under 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # a teammate, or a UI running as another user, reads a run's files


@contextlib.contextmanager
def atomic(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file to write that appears at `path` only once complete: a temporary file beside it,
    renamed into place, so readers and parallel writers never see half a file. It gets the
    mode a plain `open()` would (mkstemp's own is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    with atomic(path) as f:
        f.write(text)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on the file `path` (made if absent): the parallel
    jobs of a sweep take turns at a shared file. No lock where fcntl is missing (Windows)."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` cannot be created and written (trying it), or None if it can."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    try:  # what os.access cannot tell: root on a read-only or virtual file system, a long name
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"{folder} cannot be created ({e.strerror or type(e).__name__})"
    try:  # a folder that exists, where no file can be made (root in /sys, a read-only mount)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"no file can be written in {folder} ({e.strerror or type(e).__name__})"
    return None


_claimed: dict[Path, IO] = {}


def claim(folder: Path) -> bool:
    """Hold `folder` for this process (a lock on its .lock file); True if newly held.

    A second process that claims it while this one lives gets a UserError naming the holder.
    The kernel drops the lock when its process ends, however it ends, so the lock file of a
    run that died never blocks the next one."""
    folder = Path(folder).resolve()
    if folder in _claimed:
        return False
    if fcntl is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 (held open while the run lives)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"{folder}: in use by a run that is still alive ({holder}); wait for it to end or "
            "choose another folder"
        ) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    _claimed[folder] = handle
    return True


def release(folder: Path) -> None:
    handle = _claimed.pop(Path(folder).resolve(), None)
    if handle is not None:
        handle.close()


@contextlib.contextmanager
def claimed(folder: Path) -> Iterator[None]:
    """`claim` for the block; released after it unless it was held before."""
    fresh = claim(folder)
    try:
        yield
    finally:
        if fresh:
            release(folder)


# --- status.json: how the latest attempt stands -------------------------------------------


def write_status(run_dir: Path, status: str, detail: str | None = None, start: str = "") -> None:
    """`running` until the end; a folder whose status is not `finished` is not a finished run.
    `start` says how this attempt began (STARTS)."""
    assert status in STATUSES and start in ("", *STARTS), (status, start)
    record = {"status": status, **({"start": start} if start else {})}
    write_json(run_dir / STATUS_FILE, {**record, **({"detail": detail} if detail else {})})


def read_status(run_dir: Path) -> dict:
    """status.json of a run folder ({} for a folder no run has started in)."""
    path = run_dir / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def start_of(previous: dict, resumed_from: str | None) -> str:
    """How an attempt began: from a checkpoint, over an earlier unfinished attempt, or new."""
    if resumed_from:
        return "resumed"
    return "rerun" if previous else "fresh"


class Attempt:
    """One attempt at a run folder, as status.json records it: `running` on entry; on exit
    `finished`, or `failed` / `preempted` / `interrupted` by the exception that ended it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.previous = run_dir, read_status(run_dir)
        self.resumed_from: str | None = None  # set by the caller once training has begun
        self.pruned = False  # set by the caller: a study's pruner stopped the run

    @property
    def finished(self) -> bool:
        return self.previous.get("status") in DONE and (self.run_dir / METRICS_FILE).is_file()

    def skip(self, metric: str, write: bool = True) -> float | None:
        """`resume=auto` on a finished run (a sweep run again): nothing is retrained or
        rewritten but status.json; the recorded metric goes back to the sweeper."""
        best = read_metrics(self.run_dir).get(best_key(metric))
        log.info(f"{self.run_dir}: finished already (resume=auto): skipped, best eval {best}")
        if write:
            write_status(self.run_dir, self.previous["status"], start="skipped")
        return best

    def __enter__(self) -> Attempt:
        (self.run_dir / ERROR_FILE).unlink(missing_ok=True)  # an earlier attempt's, in a sweep
        write_status(self.run_dir, "running", start=start_of(self.previous, None))
        return self

    def __exit__(self, kind, error, tb) -> None:
        start = start_of(self.previous, self.resumed_from)
        if error is None:
            write_status(self.run_dir, "pruned" if self.pruned else "finished", start=start)
        elif isinstance(error, Interrupted | KeyboardInterrupt):
            write_status(self.run_dir, "interrupted", str(error) or None, start=start)
        elif isinstance(error, Preempted):
            write_status(self.run_dir, "preempted", str(error), start=start)
        else:
            detail = str(error) if isinstance(error, UserError) else repr(error)
            write_status(self.run_dir, "failed", detail, start=start)


# --- metrics.json: reading what a finished run reports (src.outputs.results writes it) -----


def best_key(metric: str) -> str:
    """The metrics.json key of the best eval value of `metric`."""
    return f"{BEST}{metric}"


def best_eval(metrics: dict) -> tuple[str, float | None] | None:
    """(metric, value) of the best eval value a metrics.json records, None if it has none."""
    return next(((k[len(BEST) :], v) for k, v in metrics.items() if k.startswith(BEST)), None)


def read_metrics(folder: Path) -> dict:
    """metrics.json of a finished run; a UserError naming the folder for any other folder."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; give run folders (outputs/runs/<time>)")
    path = folder / METRICS_FILE
    if not path.is_file():
        raise not_finished(folder, METRICS_FILE)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}); rerun the run") from None


def not_finished(folder: Path, missing: str) -> UserError:
    return UserError(
        f"{folder.as_posix()}: not a finished run (no {missing}); give a folder that "
        "`python -m src.run` completed (outputs/runs/<time> or a sweep's job folder)"
    )


# --- the configs a run folder records ------------------------------------------------------


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value; lists and empty mappings are values."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return out


def read_config(folder: Path) -> dict[str, Any]:
    """config_resolved.yaml as dotted keys ({} if the run never got that far)."""

    path = folder / CONFIG_FILE
    return flatten(yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


# what a finished run may change and still be trained further with resume=auto
GROWS = ("epochs", "trainer.epochs", "trainer.min_steps", "trainer.max_epochs")
_NOT_THE_RUN = ("resume",)  # how to start, not what the run is


def config_changes(folder: Path, config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (recorded, now) where `config` (resolved) differs from the run's
    config_resolved.yaml. A key on one side only is left out: the code that wrote the record
    had other keys (a run from before an upgrade is not a changed run)."""
    old, new = read_config(folder), flatten(config)
    return {
        k: (old[k], new[k])
        for k in sorted(old.keys() & new.keys())
        if k not in _NOT_THE_RUN and old[k] != new[k]
    }


def further(run_dir: Path, config: dict[str, Any]) -> bool:
    """resume=auto on a finished run: False when `config` (resolved) is the recorded one (skip
    it); True when only what may grow grew (epochs, min_steps: train it further from its kept
    checkpoint); a shrink, any other change, or no checkpoint to go on from is one line."""
    changed = config_changes(run_dir, config)
    if not changed:
        return False
    shown = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
    if other := [k for k in changed if k not in GROWS]:
        raise UserError(
            f"resume=auto: {run_dir} finished with another config ({shown}); give it a new "
            f"run folder, or drop resume=auto to retrain it from scratch (keys: "
            f"{', '.join(other)})"
        )
    if shrunk := [k for k, (old, new) in changed.items() if not _grew(old, new)]:
        key, (old, new) = shrunk[0], changed[shrunk[0]]
        raise UserError(
            f"resume=auto: {run_dir} finished with {key}={old}; {key}={new} would train nothing "
            f"and only relabel its results; give {key} > {old} to train it further, or a new "
            "run folder"
        )
    checkpoints = run_dir / CHECKPOINTS_DIR
    if not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        raise UserError(
            f"resume=auto: {run_dir} finished and kept no checkpoint to train further from "
            f"({shown}); a run to be continued needs trainer.keep_checkpoints=true from its start"
        )
    return True


def further_line(run_dir: Path, config: dict[str, Any]) -> str:
    """What the log says of a run trained further (once: the check before Hydra plans too)."""
    shown = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in config_changes(run_dir, config).items())
    return f"resume=auto: {run_dir} finished; training further ({shown})"


def _grew(old: Any, new: Any) -> bool:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
    return numbers and new > old


def plan(run_dir: Path, config: dict[str, Any]) -> str:
    """What a run does with its folder, by its resolved `config`: `skip` a finished run of the
    same config (resume=auto), train it `further`, or `train` (new, resumed from a checkpoint,
    or retrained from scratch)."""
    if config.get("resume") != "auto":
        return "train"
    if not Attempt(run_dir).finished:
        if holds_checkpoint(run_dir):
            same_as_stopped(run_dir, config)
        return "train"
    return "further" if further(run_dir, config) else "skip"


_RESUMED_MAY_CHANGE = ("device",)  # where the rest of a stopped run trains, not what it is


def same_as_stopped(run_dir: Path, config: dict[str, Any]) -> None:
    """resume=auto on a stopped run (interrupted, preempted, killed) goes on from its checkpoint
    with the optimizer, schedule and data order it had: a changed config would train on as the
    old one while its record and reports said the new (lr, seed, batch_size, the data). One
    line naming what changed."""
    changed = config_changes(run_dir, config)
    changed = {k: v for k, v in changed.items() if k not in _RESUMED_MAY_CHANGE}
    if changed:
        shown = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
        raise UserError(
            f"resume=auto: {run_dir} stopped at a checkpoint of another config ({shown}); resume "
            "it with the overrides it started with (its .hydra/overrides.yaml), or drop "
            "resume=auto to train it from scratch"
        )


def holds_checkpoint(folder: Path) -> bool:
    """Whether `folder` is a resume checkpoint of either loop, or a run folder (itself or its
    checkpoints/) with one: a resume path's check before anything loads (the trainer's own
    finder, src.trainers.common.find_checkpoint, then picks the newest complete one)."""

    def named(p: Path) -> bool:
        return p.name.startswith(CHECKPOINT_NAMES) and p.name.split("-")[-1].isdigit()

    if named(folder):
        return True
    return any(
        named(p) and p.is_dir()
        for where in (folder / CHECKPOINTS_DIR, folder)
        if where.is_dir()
        for p in where.iterdir()
    )


def unused(folder: Path) -> bool:
    """A run (or evaluation) folder that holds only what Hydra wrote before the job began:
    its .hydra/, an empty <command>.log, the lock the output-folder check took."""
    found = list(folder.iterdir()) if folder.is_dir() else []
    logs = [p for p in found if p.suffix == ".log" and p.is_file()]
    names = {p.name for p in found} - {p.name for p in logs}
    return names <= {HYDRA_DIR, LOCK_FILE} and not any(p.stat().st_size for p in logs)


def read_cwd(folder: Path) -> Path | None:
    """The folder the command that wrote `folder` ran in, where the relative paths it was
    given point from: its metrics.json's `started_in`, else (runs from before it) Hydra's
    hydra.runtime.cwd, which a later attempt in the folder rewrites; None without either."""

    metrics = folder / METRICS_FILE
    started_in = json.loads(metrics.read_text()).get("started_in") if metrics.is_file() else None
    if started_in:
        return Path(started_in)
    path = folder / HYDRA_DIR / "hydra.yaml"
    if not path.is_file():
        return None
    cwd = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("runtime", {})
    return Path(cwd["cwd"]) if cwd.get("cwd") else None


def hydra_record(folder: Path) -> dict[str, bytes]:
    """Hydra's record of the job in `folder` (.hydra/'s files), to put back with
    `restore_hydra_record` where an attempt that never began training rewrote it."""
    where = folder / HYDRA_DIR
    files = where.iterdir() if where.is_dir() else ()
    return {p.name: p.read_bytes() for p in files if p.is_file()}


def restore_hydra_record(folder: Path, record: dict[str, bytes]) -> None:
    """.hydra/ as `record` holds it: its files written back, any other removed."""
    for path in hydra_record(folder).keys() - record.keys():
        (folder / HYDRA_DIR / path).unlink()
    for name, data in record.items():
        with atomic(folder / HYDRA_DIR / name, "wb") as f:
            f.write(data)
    if not record and (folder / HYDRA_DIR).is_dir():
        with contextlib.suppress(OSError):  # it had none: none again
            (folder / HYDRA_DIR).rmdir()


def read_overrides(folder: Path) -> list[str]:
    """The overrides Hydra recorded for the job in this folder ([] without a record)."""

    path = folder / HYDRA_DIR / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text()) or []] if path.is_file() else []

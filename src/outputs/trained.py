"""One way to open what training left behind, for every command that comes after it.

    found = open_folder("outputs/runs/<run>")   # or <run>/best_model, <run>/export-onnx, a
                                                # sweep's or study's job, an evaluation, a sweep
    found.kind, found.run, found.config, found.label_names, found.dataset
    found.test_split(task)                      # the run's own test split, read as it read it
    found.predictor("cpu")                      # its model: torch, or onnxruntime for an export

As transformers' `from_pretrained` opens any folder `save_pretrained` wrote, `open_folder`
opens any folder this project's commands write and tells what it is: which run made it, that
run's resolved config, task, labels, dataset and test split, and the model to load. src.evaluate,
src.predict, src.export, src.compare, src.sweeps.summary, src.review --runs and resume=auto all go
through it; none of them reads a run's config, labels, data or model folder on its own. A folder
that is not what a command takes is one line naming what it is and what to give instead.

Opening reads JSON and YAML only (through src.config.rundir); torch loads when the predictor is
asked for. Above src.config, src.tasks, src.data, src.models and src.trainers; below the commands.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import OmegaConf

from src import data
from src.config import rundir
from src.config.devices import resolve_device
from src.config.errors import UserError
from src.models import load_trained
from src.models.exported import EXPORT_FILE, ONNX_FILE
from src.tasks import inference
from src.tasks.metrics import HEADLINE, REGISTRY, higher_is_better, task_of
from src.tasks.task import of_model
from src.trainers.build import make
from src.trainers.forward import forward

if TYPE_CHECKING:
    import numpy as np
    import torch

    from src.data import Split
    from src.tasks import Task

EVALUATED = "evaluated"  # an evaluation's metrics.json: which run, model folder and dataset
DATA_PATHS = ("train_file", "test_file", "path", "data_files")  # a dataset's files or folder
# what a folder is, as `Opened.kind` says it
KINDS = {
    "run": "a training run",
    "job": "a job of a sweep or study",
    "model": "a saved model folder",
    "export": "an ONNX export",
    "evaluation": "an evaluation (python -m src.evaluate)",
    "sweep": "a sweep or study folder",
}


@dataclass
class Opened:
    """A folder some command wrote, and the training run behind it."""

    path: Path  # the folder as given
    kind: str  # a key of KINDS
    run: Path | None = None  # the training run folder behind it (None: unknown, moved away)
    model: Path | None = None  # the folder its model loads from: best_model/, or the export
    metrics: dict = field(default_factory=dict)  # this folder's own metrics.json ({}: none)
    status: dict = field(default_factory=dict)  # the run's status.json
    config: dict = field(default_factory=dict)  # the run's resolved config ({}: unknown)
    scored: Opened | None = None  # an evaluation: the folder it scored, opened

    # --- what it is ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """A folder whose test metrics are final: a run (or job) that finished or was pruned
        (a run from before status.json counts by its metrics.json), or an evaluation."""
        if self.kind == "evaluation":
            return True
        state = self.status.get("status", "finished" if self.metrics else None)
        return bool(self.metrics) and state in rundir.DONE

    @property
    def what(self) -> str:
        """How a report names it: `a training run`, `an ONNX export of <run>`, ..."""
        of = f" of `{self.run.as_posix()}`" if self.run and self.kind in ("model", "export") else ""
        if self.kind == "evaluation" and self.scored is not None:
            return f"an evaluation of `{self.scored.path.as_posix()}` (its settings shown)"
        return KINDS[self.kind].split(" (")[0] + of

    @property
    def overrides(self) -> list[str]:
        """The overrides Hydra recorded for the run (its preset and what was typed)."""
        return rundir.read_overrides(self.run) if self.run else []

    @property
    def preprocessing(self) -> dict:
        """How training cut texts, what the task decides with, a pair model's columns."""
        return _json(self.model / rundir.PREPROCESSING_FILE) if self.model else {}

    @property
    def run_id(self) -> str | None:
        """Which training made its model (best_model/preprocessing.json; None: from before)."""
        return self.preprocessing.get("run_id")

    @property
    def model_config(self) -> dict:
        """The saved model's config.json (labels, problem_type)."""
        return _json(self.model / "config.json") if self.model else {}

    @property
    def label_names(self) -> list[str]:
        """The labels the model outputs, in output order."""
        if self.metrics.get("label_names"):
            return list(self.metrics["label_names"])
        id2label = self.model_config.get("id2label") or {}
        return [id2label[str(i)] for i in range(len(id2label))]

    @property
    def pairs(self) -> dict | None:
        """A sentence-pair model's text and pair columns (None: one text per example)."""
        return self.preprocessing.get("pairs")

    def task(self) -> Task:
        """The task the model was trained for (its problem_type, multi_label's threshold)."""

        config = SimpleNamespace(problem_type=self.model_config.get("problem_type"))
        return of_model(config, self.preprocessing.get("task") or {})

    @property
    def dataset(self) -> dict | None:
        """The dataset config its test metrics come from: an evaluation's, else the run's."""
        if self.kind == "evaluation":
            return (self.metrics.get(EVALUATED) or {}).get("dataset")
        return self.config.get("dataset")

    def data_to_read(self) -> dict | None:
        """`dataset`, its relative file paths made absolute against the folder the command
        that recorded them ran in (Hydra's hydra.runtime.cwd), so that the same data is read
        from wherever this command runs. A path not found there stays as it was written."""
        recorded = self.path if self.kind == "evaluation" else self.run
        cwd = rundir.read_cwd(recorded) if self.dataset and recorded else None
        if cwd is None:
            return self.dataset
        return {k: _from(cwd, v) if k in DATA_PATHS else v for k, v in self.dataset.items()}

    @property
    def settings(self) -> dict[str, Any]:
        """Dotted keys of the resolved config that made its results: an evaluation is the run
        it scored (that run's settings) on the dataset it was scored on."""
        flat = rundir.flatten(self.config) if self.config else {}
        if self.kind != "evaluation":
            return flat
        trained = {k: v for k, v in flat.items() if not k.startswith("dataset.")}
        return {**trained, **rundir.flatten({"dataset": self.dataset or {}})}

    # --- what it holds ---------------------------------------------------------------------

    def test_split(self, task: Task) -> Split:
        """The test split its metrics are on, read as the run read it (its dataset config),
        labels as `task` holds them."""

        if not self.dataset:
            raise UserError(
                f"{self.path}: {self.what}, with no run folder beside it, so which data it was "
                "tested on is unknown; give the run folder, or name the data (dataset=<option>)"
            )

        return make(OmegaConf.create(self.data_to_read())).load(task).test

    def predictor(self, device: str = "auto") -> Predictor:
        """Its model ready to predict: tokenizer, how texts were cut, the task."""
        if self.model is None:
            raise UserError(f"{self.path}: {self.what} holds no model")
        return Predictor.load_folder(self.model, device)


def _from(cwd: Path, value: Any) -> Any:
    """A path (or a list or mapping of paths, as HF data_files) read from `cwd` where it is
    relative and there."""
    if isinstance(value, list):
        return [_from(cwd, v) for v in value]
    if isinstance(value, dict):
        return {k: _from(cwd, v) for k, v in value.items()}
    if isinstance(value, str) and not Path(value).is_absolute() and (cwd / value).exists():
        return str(cwd / value)
    return value


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}); the folder is damaged") from None


def _yaml(path: Path) -> dict:

    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


# --- opening --------------------------------------------------------------------------------


def kind_of(path: Path) -> str | None:
    """What `path` holds, a key of KINDS, by its own files alone (None: nothing a command of
    this project wrote). An evaluation that has not written its metrics.json yet is one by
    Hydra's record of the command that made it."""
    if (path / ONNX_FILE).is_file() or (path / EXPORT_FILE).is_file():
        return "export"
    if (path / rundir.PREPROCESSING_FILE).is_file() and (path / "config.json").is_file():
        return "model"
    if EVALUATED in _json(path / rundir.METRICS_FILE) or _command(path) == "evaluate":
        return "evaluation"
    if _is_run(path):
        return "job" if _in_sweep(path) else "run"
    jobs = (p.parent.parent for p in path.glob(f"*/{rundir.HYDRA_DIR}/overrides.yaml"))
    if (path / rundir.MULTIRUN_FILE).is_file() or any(_mode(job) != "RUN" for job in jobs):
        return "sweep"
    return None


def open_folder(path: str | Path) -> Opened:
    """What `path` is and the run behind it; one line when it is nothing a command wrote."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{path}: a file; give the folder a command wrote")
    if not path.is_dir():
        raise UserError(f"{path}: no such folder")
    kind = kind_of(path)
    if kind == "export":
        return _opened_model(path, "export", _export_run(path))
    if kind == "model":
        parent = path.parent
        run = parent if parent.joinpath(rundir.BEST_MODEL_DIR) == path and _is_run(parent) else None
        return _opened_model(path, "model", run)
    if kind == "evaluation":
        return _evaluation(path, _json(path / rundir.METRICS_FILE))
    if kind in ("run", "job"):
        best = path / rundir.BEST_MODEL_DIR
        return Opened(
            path,
            kind,
            path,
            best if best.is_dir() else None,
            _json(path / rundir.METRICS_FILE),
            rundir.read_status(path),
            _yaml(path / rundir.CONFIG_FILE),
        )
    if kind == "sweep":
        return Opened(path, "sweep")
    raise UserError(
        f"{path}: not a folder any command of this project wrote (no {rundir.CONFIG_FILE}, "
        f"{rundir.METRICS_FILE}, config.json or {EXPORT_FILE}); give a run folder "
        "(outputs/runs/<time>), a sweep's job, a best_model/ or export folder, or an evaluation"
    )


def check_output_folder(folder: Path, command: str, key: str = "hydra.run.dir") -> None:
    """Before `command` (run, evaluate, or a sweep of either) writes into `folder`: it holds
    nothing a command wrote, or what this command wrote (a run: resumed, skipped or retrained
    as `resume` says; an evaluation: replaced; a sweep: run again). A folder of another kind
    would be overwritten into something that looks whole and is not (a run's metrics an
    evaluation's, a sweep hidden behind a run): one line naming what it holds."""
    ours = {"run": ("run", "job"), "evaluate": ("evaluation",), "sweep": ("sweep",)}[command]
    if not folder.is_dir() or rundir.unused(folder):
        return
    kind = kind_of(folder)
    if kind is None or kind in ours:
        return
    default = {"run": "runs", "evaluate": "evaluations", "sweep": "multirun"}[command]
    writer = "a sweep" if command == "sweep" else f"python -m src.{command}"
    raise UserError(
        f"{key}={folder}: holds {KINDS[kind].split(' (')[0]}, which {writer} would overwrite; "
        f"name a new folder, or leave {key} out (outputs/{default}/<time>)"
    )


# what a run's training leaves beside its status, config, checkpoints and log (src.outputs.save)
RUN_OUTPUTS = (
    rundir.METRICS_FILE,
    rundir.PREDICTIONS_FILE,
    rundir.REPORT_FILE,
    rundir.REPORT_MD,
    rundir.CONFUSION_PNG,
    rundir.PER_LABEL_PNG,
    rundir.SCATTER_PNG,
    rundir.CURVE_PNG,
    rundir.BEST_MODEL_DIR,
    rundir.TENSORBOARD_DIR,
    rundir.SCALARS_FILE,
    rundir.ERROR_FILE,
)


def clear_earlier_run(run_dir: Path) -> list[str]:
    """Before a run folder is trained again from scratch: the earlier training's results and
    the exports of it inside the folder, removed (returned: their names), so that none is
    left to stand for the new model: another task's plot, a logger's file this run does not
    write, an export of the old weights. Checkpoints stay (resume=auto's to use)."""
    removed, here = [], run_dir.resolve()
    exports = [p for p in run_dir.iterdir() if p.is_dir() and kind_of(p) == "export"]
    # its own exports only: one of another run, put here by hand, stays
    exports = [p for p in exports if (_export_run(p) or run_dir).resolve() == here]
    for path in [*(run_dir / name for name in RUN_OUTPUTS), *exports]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
        else:
            continue
        removed.append(path.name)
    return removed


def _is_run(path: Path) -> bool:
    """A folder src.run wrote into: its config, status or metrics."""
    names = (rundir.CONFIG_FILE, rundir.STATUS_FILE, rundir.METRICS_FILE)
    return any((path / name).is_file() for name in names)


def _mode(path: Path) -> str | None:
    """How Hydra ran the job in `path`: RUN or MULTIRUN (None: no record of it)."""

    hydra_yaml = path / rundir.HYDRA_DIR / "hydra.yaml"
    text = hydra_yaml.read_text() if hydra_yaml.is_file() else ""
    found = re.search(r"^\s*mode: (\w+)", text, re.M)
    return found.group(1) if found else None


def _command(path: Path) -> str | None:
    """The command that wrote `path`, as Hydra recorded its job's name (run, evaluate)."""
    hydra_yaml = path / rundir.HYDRA_DIR / "hydra.yaml"
    text = hydra_yaml.read_text() if hydra_yaml.is_file() else ""
    found = re.search(r"^  job:\n(?:    .*\n)*?    name: (\S+)", text, re.M)
    return found.group(1) if found else None


def _in_sweep(path: Path) -> bool:
    """A job of a multirun (a sweep's or a study's), as Hydra recorded its mode."""
    return _mode(path) == "MULTIRUN"


def _opened_model(path: Path, kind: str, run: Path | None) -> Opened:
    if run is None:
        return Opened(path, kind, None, path)
    opened = open_folder(run)
    found = Opened(path, kind, run, path, {}, opened.status, opened.config)
    _same_training(path, found.run_id, run, opened.metrics.get("run_id"), "export it")
    return found


def _same_training(path: Path, made_from: str | None, run: Path, now: str | None, again: str):
    """A folder made from a run's model (an export, an evaluation) names the training it came
    from (run_id); the run folder trained again since holds another model, whose settings,
    data and metrics are not this folder's: one line (folders from before run_id: no check)."""
    if made_from and now and made_from != now:
        raise UserError(
            f"{path}: made from an earlier training in {run} (run_id {made_from[:8]}), which "
            f"was trained again since (now {now[:8]}); {again} again from that run"
        )


def _export_run(path: Path) -> Path | None:
    """The run an export came from: the folder it sits in where that run's training made it
    (run_id: a run copied with its exports is their run), else the one export.json names, else
    the folder it sits in."""
    made_from = _json(path / rundir.PREPROCESSING_FILE).get("run_id")
    parent_id = _json(path.parent / rundir.METRICS_FILE).get("run_id")
    if made_from and made_from == parent_id:
        return path.parent
    record = _json(path / EXPORT_FILE)
    for candidate in (record.get("run_path"), record.get("run_dir")):
        if candidate and _is_run(Path(candidate)):
            return Path(candidate)
    source = record.get("source")  # exports from before run_path: the best_model folder
    if source and Path(source).name == rundir.BEST_MODEL_DIR and _is_run(Path(source).parent):
        return Path(source).parent
    return path.parent if _is_run(path.parent) else None


def _evaluation(path: Path, metrics: dict) -> Opened:
    """An evaluation, opened with the folder it scored (recorded absolute, and as typed)."""
    if EVALUATED not in metrics:
        raise UserError(
            f"{path}: an evaluation that did not finish (no {rundir.METRICS_FILE}); evaluate again"
        )
    evaluated = metrics[EVALUATED]
    scored = None
    for candidate in (evaluated.get("run_path"), evaluated.get("run_dir")):
        if candidate and Path(candidate).resolve() == path.resolve():
            raise UserError(
                f"{path}: an evaluation written over the folder it scored, so its model and "
                "data are gone; train or evaluate again into a new folder"
            )
        if candidate and Path(candidate).is_dir():
            scored = open_folder(candidate)
            break
    if scored is None:
        raise UserError(
            f"{path}: an evaluation of {evaluated.get('run_dir')}, which is no longer there; "
            "its settings and model come from that folder: put it back, or evaluate again"
        )
    _same_training(path, evaluated.get("run_id"), scored.path, scored.run_id, "evaluate it")
    return Opened(
        path, "evaluation", scored.run, scored.model, metrics, scored.status, scored.config, scored
    )


# --- what each command takes ----------------------------------------------------------------


def open_model(path: str | Path, key: str = "run_dir") -> Opened:
    """A folder with a trained model to load: a finished run or job, best_model/, an export,
    or an evaluation (the model it scored). Anything else is one line naming `key`."""
    found = _open(path, key)
    if found.kind == "sweep":
        raise UserError(f"{key}={path}: {sweep_hint(found.path)}")
    if found.kind in ("run", "job") and not found.finished:
        raise UserError(f"{key}={path}: {unfinished(found)}")
    if found.model is None or not (found.model / rundir.PREPROCESSING_FILE).is_file():
        raise UserError(
            f"{key}={path}: {found.what} with no {rundir.BEST_MODEL_DIR}/"
            f"{rundir.PREPROCESSING_FILE} (a run made before predict existed); retrain it"
        )
    return found


def open_scored(path: str | Path, what: str = "compare") -> Opened:
    """A folder with final test metrics: a finished run or job (or its best_model/), or an
    evaluation. An export or a sweep is one line saying how to get such a folder from it."""
    found = _open(path, None)
    if found.kind == "model" and found.run is not None:
        found = open_folder(found.run)
    if found.kind == "sweep":
        raise UserError(f"{path}: {sweep_hint(found.path)} to {what} runs")
    if found.kind in ("export", "model"):
        raise UserError(
            f"{path}: {found.what}, which has no test metrics of its own; score it with "
            f"`python -m src.evaluate run_dir={path}` and {what} that folder"
        )
    if not found.finished:
        raise UserError(f"{path}: {unfinished(found)}")
    if not found.config and found.kind == "evaluation":
        raise UserError(
            f"{path}: {found.what.split(' (')[0]}, a model folder with no run beside it, so the "
            f"settings that made it are unknown; to {what} it, evaluate the run folder it came "
            "from (or the model in its place, <run>/best_model)"
        )
    if not found.config:
        raise rundir.not_finished(found.path, rundir.CONFIG_FILE)
    return found


def _open(path: str | Path, key: str | None) -> Opened:
    try:
        return open_folder(path)
    except UserError as e:
        raise UserError(f"{key}={e}" if key else str(e)) from None


def unfinished(found: Opened) -> str:
    """Why a run folder has no final results: its status, or the file it lacks."""
    state = found.status.get("status")
    if found.metrics and state in ("running",):
        return f"{found.what} that is running again (status.json: running); wait for it to end"
    if state and state not in rundir.DONE:
        detail = found.status.get("detail", "")
        why = f"status.json: {state}" + (f", {detail}" if detail else "")
        return (
            f"not a finished run ({why}); rerun it (resume=auto continues from its newest "
            "checkpoint)"
        )
    missing = [
        n for n in (rundir.METRICS_FILE, rundir.BEST_MODEL_DIR) if not (found.path / n).exists()
    ]
    return (
        f"not a finished run (no {' or '.join(missing) or rundir.METRICS_FILE}); give a folder "
        "that `python -m src.run` completed (outputs/runs/<time> or a sweep's job folder)"
    )


def sweep_hint(folder: Path) -> str:
    """A sweep given where one run belongs: name its best finished job, if it has one."""
    jobs = sweep_jobs(folder)
    done = [j for j in jobs if j.status == "finished" and best_value(j) is not None]
    hint = ""
    if done:
        metric = next(k for k in done[0].metrics if k.startswith(rundir.BEST))
        sign = 1 if higher_is_better(metric[len(rundir.BEST) :]) else -1
        best = min(done, key=lambda j: (-sign * best_value(j), natural(j.name)))  # summary's
        hint = f" (its best by {metric}: {folder / best.name})"
    return f"a sweep or study folder of {len(jobs)} jobs; give one of its job folders{hint}"


def natural(name: str) -> list:
    """A job's name with its numbers as numbers: '10_lr=...' after '9_lr=...'."""

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# --- a sweep: its jobs, as their folders describe them ----------------------------------------


@dataclass
class Job:
    """One job folder of a sweep or study, as its files describe it."""

    name: str  # the folder, relative to the sweep dir
    overrides: dict[str, str]
    status: str  # finished, pruned, failed or incomplete
    metrics: dict[str, float] = field(default_factory=dict)  # flat: best_eval_<m>, test_<m>
    error: str = ""
    ci: dict[str, list[float]] = field(default_factory=dict)  # test_<metric> -> [low, high]
    start: str = ""  # how its latest attempt began: fresh, rerun, resumed, skipped (STARTS)


def best_value(job: Job) -> float | None:
    return next((v for k, v in job.metrics.items() if k.startswith(rundir.BEST)), None)


def read_job(folder: Path, sweep_dir: Path) -> Job:
    """A job whatever became of it: `finished` (or `pruned`) with its metrics, `failed` with
    the last line of its error, or `incomplete` (running, preempted, killed)."""
    overrides = dict(o.split("=", 1) for o in rundir.read_overrides(folder) if "=" in o)
    name = folder.relative_to(sweep_dir).as_posix()
    status = rundir.read_status(folder)  # src.run's own record: running, failed, preempted, ...
    start = status.get("start", "")
    if (folder / rundir.METRICS_FILE).is_file():
        metrics = rundir.read_metrics(folder)
        ci = {f"test_{k}": v for k, v in metrics.get("test_ci95", {}).items()}
        warned = "; ".join(f"warning: {w}" for w in metrics.get("warnings") or [])
        done = "pruned" if status.get("status") == "pruned" else "finished"
        return Job(name, overrides, done, flat_metrics(metrics), warned, ci, start)
    error_file = folder / rundir.ERROR_FILE
    if error_file.is_file():
        lines = error_file.read_text().strip().splitlines()
        return Job(name, overrides, "failed", error=lines[-1] if lines else "", start=start)
    state = "failed" if status.get("status") == "failed" else "incomplete"
    return Job(name, overrides, state, error=status.get("detail", ""), start=start)


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The numbers a sweep compares: best eval value of the chosen metric, the task's two
    headline test metrics (accuracy and f1; f1_micro and subset_accuracy; mse and pearson),
    and any extra test metric (metrics.extra)."""

    chosen, flat = rundir.best_eval(metrics), {}
    if chosen and chosen[1] is not None:
        flat[rundir.best_key(chosen[0])] = float(chosen[1])
    test = metrics.get("test", {})
    for name in (*HEADLINE[task_of(metrics)], *(k for k in test if k not in REGISTRY)):
        if name in test:
            flat[f"test_{name}"] = float(test[name])
    return flat


def sweep_jobs(sweep_dir: Path) -> list[Job]:
    """Every folder under `sweep_dir` that Hydra made for a job of a multirun (it holds
    .hydra/overrides.yaml, and Hydra's record says MULTIRUN): a single run or an evaluation
    written into the sweep's folder is none of its jobs."""
    folders = {p.parent.parent for p in sweep_dir.rglob(f"{rundir.HYDRA_DIR}/overrides.yaml")}
    return [read_job(f, sweep_dir) for f in folders - {sweep_dir} if _mode(f) != "RUN"]


def open_sweep(path: str | Path, key: str = "") -> list[Job]:
    """The jobs of a sweep or study folder; any other folder is one line saying what it is."""
    where = f"{key}={path}" if key else str(path)
    if not Path(path).is_dir():
        raise UserError(f"{where}: no such folder; give a sweep folder (outputs/multirun/<time>)")
    try:
        found = open_folder(path)
    except UserError:
        found = Opened(Path(path), "sweep")  # nothing of a run's: its jobs, if any, tell
    if found.kind != "sweep":
        raise UserError(
            f"{where}: {found.what}, not a sweep (its results: metrics.json, report.md); give "
            "the folder of a `python -m src.run -m` sweep or study, outputs/multirun/<time>"
        )
    jobs = sweep_jobs(found.path)
    if not jobs:
        raise UserError(
            f"{where}: no sweep jobs in it (no <job>/{rundir.HYDRA_DIR}/overrides.yaml); give "
            "the folder of a `python -m src.run -m` sweep, outputs/multirun/<time>"
        )
    return jobs


# --- the model, ready to predict --------------------------------------------------------------


@dataclass
class Predictor:
    """A trained model (torch, or onnxruntime behind the same call), its tokenizer, how
    training cut the texts and the task it learnt."""

    model: Any  # a torch module, or src.models.exported.OnnxModel
    tokenizer: Any  # a transformers tokenizer
    max_length: int
    truncation: str
    device: torch.device
    stride: int = 0  # truncation=chunks: windows, pooled per text
    chunk_pooling: str = "logits"
    task: Any = None  # src.tasks: what the outputs are (the model's problem_type)
    pairs: dict | None = None  # a sentence-pair model: the run's text and pair columns

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Predictor:
        """The model of any folder `open_model` takes."""
        return open_model(path).predictor(device)

    @classmethod
    def load_folder(cls, folder: Path, device: str = "auto") -> Predictor:
        from transformers import AutoTokenizer

        opened = Opened(folder, "model", model=folder)
        settings = opened.preprocessing
        torch_device = resolve_device(device)
        model = load_trained(folder).to(torch_device).eval()
        return cls(
            model=model,
            tokenizer=AutoTokenizer.from_pretrained(folder),
            max_length=int(settings["max_length"]),
            truncation=str(settings["truncation"]),
            device=torch_device,
            stride=int(settings.get("stride", 0)),
            chunk_pooling=str(settings.get("chunk_pooling", "logits")),
            task=opened.task(),
            pairs=settings.get("pairs"),
        )

    @property
    def label_names(self) -> list[str]:
        id2label = self.model.config.id2label
        return [id2label[i] for i in range(len(id2label))]

    def probabilities(
        self, texts: Sequence[str], batch_size: int = 32, pairs: Sequence[str] | None = None
    ) -> np.ndarray:
        """What the task outputs, one row per text (or pair), in input order: class
        probabilities (softmax), each label's probability (sigmoid, multi_label), the value
        (regression). A text cut into windows gets its windows' pooled prediction, as in
        training's evaluation."""
        return self.task.outputs(self.logits(texts, batch_size, pairs))

    def logits(
        self, texts: Sequence[str], batch_size: int = 32, pairs: Sequence[str] | None = None
    ) -> np.ndarray:
        """The model's logits, one row per text (or pair), in input order: the texts cut as in
        training, then src.tasks.inference (batches of similar length; windows pooled)."""

        cut = (self.max_length, self.truncation, self.stride)
        features = data.encode_texts(self.tokenizer, texts, *cut, pairs=pairs)
        collate = data.collator(self.tokenizer)

        def backend(examples: Any) -> np.ndarray:
            return forward(self.model, examples, collate, batch_size, self.device)

        return inference.documents(features, backend, self.chunk_pooling)

"""One job of `python -m src.run`: a single run, or one of a sweep's or a study's.

What happens around the training itself, once for every job: the config checked before Hydra
writes anything (`check`, Hydra's on_run_start through src.outputs.callbacks.CheckConfig), what
resume=auto does with the folder (src.config.rundir.plan), the backbone reachable, the folder
held and status.json kept, a preemption's checkpoint and exit code, and a mistake said in one
line: a single run's leaves no folder it made, a sweep's job fails alone (its folder says why;
the sweep goes on and its summary shows it).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.config import declared, errors, rundir, validation
from src.outputs.trained import check_output_folder, clear_earlier_run
from src.sweeps import objectives, study
from src.sweeps.study import JobTrial
from src.trainers import distributed
from src.trainers.build import load_corpus, make

log = logging.getLogger("src.run")
Train = Callable[..., Any]  # src.run.train: (cfg, run_dir, trial, corpus) -> summary


def check(cfg: DictConfig) -> None:
    """A single run's checks before Hydra writes anything into its folder: the config, and
    resume=auto against a finished run there, so that a run that cannot start leaves nothing
    and a finished run's folder stays as it was."""
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    declared.check_current()
    validation.validate(task)
    run_dir = Path(cfg.hydra.run.dir)
    check_output_folder(run_dir, "run")  # not an evaluation's, an export's or a sweep's
    rundir.plan(run_dir, OmegaConf.to_container(task, resolve=True))
    if run_dir.is_dir() and not rundir.unused(run_dir):  # Hydra rewrites .hydra/ next
        KEPT_RECORDS[run_dir.resolve()] = rundir.hydra_record(run_dir)


# An earlier run's .hydra/ as it was before this process's attempt at its folder (Hydra rewrites
# it before the job starts): put back where the attempt fails before training begins, so the
# run keeps its own overrides, mode and working directory.
KEPT_RECORDS: dict[Path, dict[str, bytes]] = {}


def run(cfg: DictConfig, train: Train) -> Any:
    """The job Hydra runs: its best eval value, what a sweeper optimises (None: skipped with
    nothing recorded)."""

    distributed.from_submitit()  # a SLURM job of several tasks: one DDP run (no-op elsewhere)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.launcher.get("n_jobs"):  # hydra/launcher=joblib
        distributed.share_machine(hydra_cfg.launcher.n_jobs, hydra_cfg.job.num, cfg.device)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        with errors.reported():
            return _job(cfg, run_dir, hydra_cfg.sweeper, train, sweep=False)
    try:
        best = _job(cfg, run_dir, hydra_cfg.sweeper, train, sweep=True)
        return returned(hydra_cfg.sweeper, cfg, run_dir, best)
    except Exception as e:  # Hydra records the failed job and runs the others; the summary
        mistake = errors.user_error(e)  # shows the last line of its error.txt
        text = (
            errors.one_line(mistake) + "\n"
            if mistake
            else "".join(traceback.format_exception(type(e), e, e.__traceback__))
        )
        if distributed.is_main():
            rundir.write_atomic(run_dir / rundir.ERROR_FILE, text)
        if mistake is None:
            raise
        raise failed(mistake) from None


def returned(sweeper: Any, cfg: DictConfig, run_dir: Path, best: float | None) -> Any:
    """What the job gives its sweeper: its best eval value, or a study's objectives (the
    metric with what the run cost, from its metrics.json: src.sweeps.objectives)."""
    settings = study.settings_of(sweeper)
    metric = cfg.trainer.metric_for_best_model
    if settings is None or settings.objectives is None or not distributed.is_main():
        return best
    names = objectives.names_of(settings.objectives, metric)
    if names == [metric]:
        return best
    return objectives.values_of(rundir.read_metrics(run_dir), names, metric)


def stopped_line(e: BaseException, trial: JobTrial | None) -> str:
    """What a stopped job prints: what it saved, and the command that continues it (a study's
    trial: the study's own command, which resumes the trial in its folder)."""
    if trial is None:
        return str(e) if isinstance(e, errors.Preempted) else errors.INTERRUPTED
    stopped = e.stopped if isinstance(e, errors.Preempted) else "interrupted (Ctrl-C)"
    return f"{stopped}; the same command resumes trial {trial.number}: {study_command()}"


def study_command() -> str:
    """The command that started this job's study, from the sweep's multirun.yaml."""
    sweep = Path(HydraConfig.get().sweep.dir) / rundir.MULTIRUN_FILE
    overrides = OmegaConf.load(sweep).hydra.overrides if sweep.is_file() else {}
    words = [*overrides.get("task", []), *overrides.get("hydra", [])]
    return " ".join(["python -m src.run", *map(shlex.quote, words)])


def failed(mistake: errors.UserError) -> Exception:
    """A sweep job's mistake, printed as it happens and then by Hydra as one line (its compact
    exception), not a traceback through Hydra's code."""

    line = errors.one_line(mistake)
    print(line, file=sys.stderr)
    return CompactHydraException(line)


def _job(cfg: DictConfig, run_dir: Path, sweeper: Any, train: Train, sweep: bool) -> float | None:
    """Validate, then skip, train further or train into `run_dir`."""

    attempt, new = rundir.Attempt(run_dir), rundir.unused(run_dir)
    try:
        declared.check_current()
        validation.validate(cfg)  # before anything is written: a config that never runs
        # leaves nothing
        check_output_folder(run_dir, "run", "hydra.sweep.dir" if sweep else "hydra.run.dir")
        todo = rundir.plan(run_dir, OmegaConf.to_container(cfg, resolve=True))
        if todo == "further":
            log.info(rundir.further_line(run_dir, OmegaConf.to_container(cfg, resolve=True)))
        corpus = None
        if todo != "skip":  # each mistake below is one line, no folder, before torch loads
            make(cfg.backbone).reach()  # its config.json (a hub id offline: not in the cache)
            validation.check_callables(cfg)  # the targets, imported: nothing is built yet
            corpus = load_corpus(cfg)  # a bad data file or a missing corpus
    except Exception as e:
        if (mistake := errors.user_error(e)) is not None and distributed.is_main():
            if sweep:
                start = rundir.start_of(attempt.previous, None)
                rundir.write_status(run_dir, "failed", str(mistake), start=start)
            elif new:  # what this attempt made (its log may hold lines by now)
                shutil.rmtree(run_dir, ignore_errors=True)
            elif run_dir.resolve() in KEPT_RECORDS:
                rundir.restore_hydra_record(run_dir, KEPT_RECORDS[run_dir.resolve()])
        raise
    if todo == "skip":  # a finished run as it was: its .hydra/ record too (a single run's)
        if not sweep and run_dir.resolve() in KEPT_RECORDS:
            rundir.restore_hydra_record(run_dir, KEPT_RECORDS[run_dir.resolve()])
        return attempt.skip(cfg.trainer.metric_for_best_model, write=distributed.is_main())
    if attempt.finished and cfg.resume in (None, ""):
        log.warning(
            f"{run_dir} holds a finished run: retraining it from scratch over it "
            "(resume=auto skips a finished run, or trains it further)"
        )
    fresh = cfg.resume in (None, "") and not new and distributed.is_main()
    if fresh and (removed := clear_earlier_run(run_dir)):  # none left to stand for the new one
        log.info(f"removed the earlier training's {', '.join(removed)} from {run_dir}")
    trial = JobTrial.of(sweeper)  # a study's job: it reports to its trial
    if not distributed.is_main():  # one run folder, written by rank 0 alone
        best = train(cfg, run_dir, trial, corpus).best_metric
        distributed.shutdown()
        return best
    try:
        with rundir.claimed(run_dir), attempt:  # status.json: running, then how it ended
            summary = train(cfg, run_dir, trial, corpus)
            attempt.resumed_from, attempt.pruned = summary.resumed_from, summary.result.pruned
    except (errors.Preempted, KeyboardInterrupt) as e:  # a checkpoint to resume from, if any
        print(stopped_line(e, trial), file=sys.stderr)
        interrupted = isinstance(e, errors.Interrupted | KeyboardInterrupt)
        sys.exit(errors.INTERRUPTED_EXIT_CODE if interrupted else errors.REQUEUE_EXIT_CODE)
    except Exception as e:  # a mistake found while building (a data file's rows): as above
        checkpoint = (run_dir / rundir.CHECKPOINTS_DIR).exists()
        if errors.user_error(e) is not None and new and not sweep and not checkpoint:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    distributed.shutdown()  # under torchrun: the other ranks wait for this one's files
    return summary.best_metric

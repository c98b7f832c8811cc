"""Entry point: compose -> validate -> build -> fit -> score the test split -> save.

    python -m src.run [group=option ...] [knob=value ...]
    python -m src.run -m dropout=0.1,0.3          # a sweep (summary: src/sweeps/summary.py)
    torchrun --nproc_per_node=2 -m src.run ...    # DDP (src/trainers/distributed.py)

Only Hydra and OmegaConf load at import, so `--help` and `--cfg job` stay fast; torch and
transformers load when a run starts. The run folder's bookkeeping is src/config/rundir.py's.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from src.config import compose as _resolvers  # noqa: F401  (study_name, job_dir: in every job process)
from src.config import errors, rundir
from src.config import validation as spec
from src.outputs.results import RunSummary
from src.trainers.build import Built, build, make

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("src.run")


@contextlib.contextmanager
def scalar_logger(cfg: DictConfig, run_dir: Path) -> Iterator[Any]:
    """The run's logger, open from build to save and closed once, however the run ends (MLflow
    then marks its run FINISHED, FAILED or KILLED). Under torchrun, rank 0's alone logs."""
    from src.trainers.distributed import is_main
    from src.trainers.loggers import NullLogger

    logger = make(cfg.logger, run_dir=run_dir) if is_main() else NullLogger()
    try:
        yield logger
    finally:
        logger.close()


def fit(built: Built, run_dir: Path, resume_from: Path | None = None):
    """Train (or resume from a checkpoint); the model ends on its best weights."""
    b = built
    return b.trainer.fit(b.model, b.encoded["train"], b.encoded["eval"], b.collator,
                         b.optimizer, b.scheduler, b.scorer, run_dir, resume_from)  # fmt: skip


def doc_logits(built: Built, split: str) -> np.ndarray:
    """The model's logits on an encoded split, one row per text (windows pooled): through the
    trainer's backend and src.tasks.inference, as its evaluation."""
    backend = built.trainer.backend(built.model, built.collator)
    return built.scorer.logits(built.encoded[split], backend)


def score_test(built: Built) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """The test split, scored once: its true labels as the metrics take them (ids, multi-hot
    rows, values), the logits (one row per text), the metrics and their 95% intervals. First,
    a task that decides by a threshold tuned on validation (task.tune_threshold) tunes it."""
    from src.tasks.metrics import bootstrap_ci

    task, corpus, k = built.task, built.corpus, len(built.corpus.label_names)
    if getattr(task, "tune_threshold", False):
        task.tune(doc_logits(built, "eval"), task.truth(corpus.eval.labels, k), k)
        log.info(f"threshold tuned on the {corpus.eval_split} split: {task.threshold}")
    truth, logits = task.truth(corpus.test.labels, k), doc_logits(built, "test")
    scores = built.scorer.score(logits, truth)
    if line := built.scorer.degenerate(logits, truth):  # metrics.json and report.md keep it
        log.warning(f"test: {line}")
        built.warnings.append(f"test: {line}")
    ci = bootstrap_ci(truth, task.decide(logits), k, task=task.NAME)
    log.info("test: " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return truth, logits, scores, ci


def train(cfg: DictConfig, run_dir: Path, trial: Any = None) -> RunSummary:
    """Run one experiment into `run_dir`: build, fit, test, save. Returns its RunSummary.
    `trial`: the study's trial this run reports its epochs to (src.sweeps.study.JobTrial)."""
    import numpy as np

    from src.outputs import reports
    from src.outputs import save as outputs
    from src.trainers import distributed
    from src.trainers.common import find_checkpoint

    if distributed.is_main():
        reports.show_config(cfg)
        rundir.write_atomic(run_dir / rundir.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    marks = [time.perf_counter()]  # where a run's wall time goes: metrics.json `seconds`
    with scalar_logger(cfg, run_dir) as logger:
        built = build(cfg, logger)
        built.trainer.trial = trial
        resume_from = find_checkpoint(cfg.resume, run_dir, built.trainer.latest_checkpoint)
        marks.append(time.perf_counter())
        result = fit(built, run_dir, resume_from)
        marks.append(time.perf_counter())
        labels, logits, scores, ci = score_test(built)
        marks.append(time.perf_counter())
        seconds = dict(zip(("build", "fit", "test"), np.diff(marks).tolist(), strict=True))
        resumed, processes = str(resume_from) if resume_from else None, distributed.world_size()
        summary = RunSummary.of(built, result, scores, ci, seconds, resumed, processes)
        summary.warnings = list(built.warnings)
        if distributed.is_main():  # under torchrun, rank 0 alone writes the run's results
            artifacts = outputs.save_run(built, cfg, run_dir, summary, labels, logits)
            logger.finish(summary.to_json(), artifacts)  # test metrics, reports (mlflow)
            built.trainer.cleanup(run_dir)  # a finished run: no resume checkpoints left behind
    return summary


def job_failed(mistake: errors.UserError) -> Exception:
    """A sweep job's mistake, printed as it happens and then by Hydra as one line (its compact
    exception), not a traceback through Hydra's code."""
    from hydra.errors import CompactHydraException

    line = errors.one_line(mistake)
    print(line, file=sys.stderr)
    return CompactHydraException(line)


def further(cfg: DictConfig, run_dir: Path) -> bool:
    """resume=auto on a finished run: False when its config is the recorded one (skip it);
    True when only what may grow grew (epochs, min_steps: train it further from its kept
    checkpoint); a shrink, any other change, or no checkpoint to go on from is one line."""
    changed = rundir.config_changes(run_dir, OmegaConf.to_container(cfg, resolve=True))
    if not changed:
        return False
    shown = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
    if other := [k for k in changed if k not in rundir.GROWS]:
        raise errors.UserError(
            f"resume=auto: {run_dir} finished with another config ({shown}); give it a new "
            f"run folder, or drop resume=auto to retrain it from scratch (keys: "
            f"{', '.join(other)})"
        )
    if shrunk := [k for k, (old, new) in changed.items() if not _grew(old, new)]:
        key, (old, new) = shrunk[0], changed[shrunk[0]]
        raise errors.UserError(
            f"resume=auto: {run_dir} finished with {key}={old}; {key}={new} would train nothing "
            f"and only relabel its results; give {key} > {old} to train it further, or a new "
            "run folder"
        )
    checkpoints = run_dir / rundir.CHECKPOINTS_DIR
    if not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        raise errors.UserError(
            f"resume=auto: {run_dir} finished and kept no checkpoint to train further from "
            f"({shown}); a run to be continued needs trainer.keep_checkpoints=true from its start"
        )
    log.info(f"resume=auto: {run_dir} finished; training further ({shown})")
    return True


def _grew(old: Any, new: Any) -> bool:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
    return numbers and new > old


def plan(cfg: DictConfig, run_dir: Path) -> str:
    """What this run does with its folder: `skip` a finished run of the same config
    (resume=auto), train it `further`, or `train` (new, resumed, or retrained from scratch)."""
    if cfg.resume != "auto" or not rundir.Attempt(run_dir).finished:
        return "train"
    return "further" if further(cfg, run_dir) else "skip"


def check(cfg: DictConfig) -> None:
    """A single run's checks before Hydra writes anything into its folder (Hydra's on_run_start,
    through src.outputs.callbacks.CheckConfig): the config, and resume=auto against a finished run
    there, so that a run that cannot start leaves nothing and a finished run's folder stays as
    it was."""
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    spec.validate(task)
    plan(task, Path(cfg.hydra.run.dir))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One job: a single run (a mistake is one line, exit 2), or a job of a sweep or study (a
    mistake fails this job, recorded in its folder, and the sweep goes on)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from src.trainers import distributed

    distributed.from_submitit()  # a SLURM job of several tasks: one DDP run (no-op elsewhere)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.launcher.get("n_jobs"):  # hydra/launcher=joblib
        distributed.share_machine(hydra_cfg.launcher.n_jobs, hydra_cfg.job.num, cfg.device)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        with errors.reported():
            return job(cfg, run_dir, hydra_cfg.sweeper, sweep=False)
    try:
        return job(cfg, run_dir, hydra_cfg.sweeper, sweep=True)
    except Exception as e:
        if (mistake := errors.user_error(e)) is None:
            raise
        raise job_failed(mistake) from None  # Hydra records the failed job, runs the others


def job(cfg: DictConfig, run_dir: Path, sweeper: Any, sweep: bool) -> float | None:
    """Validate, then skip, train further or train into `run_dir`; the best eval value (what a
    sweeper optimises). `sweeper`: Hydra's sweeper node (a study's job reports to its trial).
    A mistake before training leaves nothing of a single run, and a sweep's job folder that
    says why it failed (the summary shows it)."""
    from src.sweeps.study import JobTrial
    from src.trainers import distributed

    attempt, new = rundir.Attempt(run_dir), rundir.unused(run_dir)
    try:
        spec.validate(cfg)  # before anything is written: a config that never runs leaves nothing
        todo = plan(cfg, run_dir)
        if todo != "skip":
            make(cfg.backbone).config()  # reachable (a hub id offline: one line, no folder)
    except Exception as e:
        if (mistake := errors.user_error(e)) is not None and distributed.is_main():
            if sweep:
                start = rundir.start_of(attempt.previous, None)
                rundir.write_status(run_dir, "failed", str(mistake), start=start)
            elif rundir.unused(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if todo == "skip":
        return attempt.skip(cfg.trainer.metric_for_best_model, write=distributed.is_main())
    if attempt.finished and cfg.resume in (None, ""):
        log.warning(f"{run_dir} holds a finished run: retraining it from scratch over it "
                    "(resume=auto skips a finished run, or trains it further)")  # fmt: skip
    trial = JobTrial.of(sweeper)  # a study's job: it reports to its trial
    if not distributed.is_main():  # one run folder, written by rank 0 alone
        best = train(cfg, run_dir, trial).best_metric
        distributed.shutdown()
        return best
    try:
        with rundir.claimed(run_dir), attempt:  # status.json: running, then how it ended
            summary = train(cfg, run_dir, trial)
            attempt.resumed_from, attempt.pruned = summary.resumed_from, summary.result.pruned
    except (errors.Preempted, KeyboardInterrupt) as e:  # a checkpoint to resume from, if any
        print(e if isinstance(e, errors.Preempted) else errors.INTERRUPTED, file=sys.stderr)
        interrupted = isinstance(e, errors.Interrupted | KeyboardInterrupt)
        sys.exit(errors.INTERRUPTED_EXIT_CODE if interrupted else errors.REQUEUE_EXIT_CODE)
    except Exception as e:  # a mistake found while building (a data file's rows): as above
        checkpoint = (run_dir / rundir.CHECKPOINTS_DIR).exists()
        if errors.user_error(e) is not None and new and not sweep and not checkpoint:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    distributed.shutdown()  # under torchrun: the other ranks wait for this one's files
    return summary.best_metric


def cli(argv: list[str]) -> None:
    """`python -m src.run ARGS`: Hydra's flags read apart from the overrides; the overrides
    checked (typos, a study's settings) before Hydra starts; `--dry-run` shows the jobs."""
    from src.config import cli as command_line
    from src.config import preflight
    from src.sweeps import preview
    from src.trainers.distributed import hydra_overrides

    argv = command_line.quote_paths(argv, ("resume",))  # a sweep job's folder, as shown
    with errors.reported():
        flags, overrides = command_line.hydra_command_line(argv)
        preflight.check(overrides, other_configs=command_line.other_configs(flags))
        if "--dry-run" in argv:  # the jobs a sweep would launch, checked, nothing run
            sys.exit(preview.main([*overrides, *(["-m"] if flags.multirun else [])]))
        if command_line.runs_a_job(flags):
            preview.study_preflight(overrides)  # a study's sampler, pruner, space and storage
    if flags.hydra_help:  # Hydra's own help composes Hydra's config: the app's groups go
        argv = ["--hydra-help", *(o for o in overrides if o.lstrip("+~").startswith("hydra"))]
    sys.argv = [sys.argv[0], *argv, *hydra_overrides(argv)]
    main()


if __name__ == "__main__":
    cli(sys.argv[1:])

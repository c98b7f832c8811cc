"""Entry point: compose -> validate -> build -> fit -> score the test split -> save.

    python -m src.run [group=option ...] [knob=value ...]
    python -m src.run -m dropout=0.1,0.3          # a sweep (summary: src/sweeps/summary.py)
    torchrun --nproc_per_node=2 -m src.run ...    # DDP (src/trainers/distributed.py)

Hydra composes the config (conf/config.yaml); src.sweeps.job validates it before Hydra writes
the run's folder, decides what resume=auto does with it, keeps status.json and says a mistake
in one line; `train` below is the run itself. Only Hydra and OmegaConf load at import, so
`--help` and `--cfg job` stay fast; torch and transformers load when a run starts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.config import devices, rundir
from src.outputs import reports, save
from src.outputs.results import RunSummary
from src.sweeps import job, preview
from src.trainers import distributed
from src.trainers.build import build, opened_logger
from src.trainers.common import find_checkpoint


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One job, alone or in a sweep: its best eval value, what a sweeper optimises."""
    return job.run(cfg, train)


def train(cfg: DictConfig, run_dir: Path, trial: Any = None, corpus: Any = None) -> RunSummary:
    """Run one experiment into `run_dir`: build, fit, score the test split, save. `trial`: the
    study's trial this run reports its epochs to (src.sweeps.study.JobTrial); `corpus`: the
    data, if the job read it already (src.trainers.build.load_corpus)."""

    if distributed.is_main():
        reports.show_config(cfg)
        rundir.write_atomic(run_dir / rundir.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    marks = [time.perf_counter()]  # where a run's wall time goes: metrics.json `seconds`
    counted = devices.reset_peak_memory()  # metrics.json `peak_memory_mb`, build to test
    with opened_logger(cfg.logger, run_dir) as logger:
        built = build(cfg, logger, corpus)  # data, tokenizer, model, trainer, optimizer, schedule
        built.trainer.trial = trial
        resume_from = find_checkpoint(cfg.resume, run_dir, built.trainer.latest_checkpoint)
        marks.append(time.perf_counter())
        result = built.fit(run_dir, resume_from)
        marks.append(time.perf_counter())
        test = built.score_test()
        marks.append(time.perf_counter())
        seconds = dict(zip(("build", "fit", "test"), map(float, np.diff(marks)), strict=True))
        summary = RunSummary.of(built, result, test, seconds, resume_from)
        summary.peak_memory_mb = devices.peak_memory_mb(built.trainer.device, counted)
        if distributed.is_main():  # under torchrun, rank 0 alone writes the run's results
            artifacts = save.save_run(built, cfg, run_dir, summary, test.truth, test.logits)
            logger.finish(summary.to_json(), artifacts)  # test metrics, reports (mlflow)
            built.trainer.cleanup(run_dir)  # a finished run: no resume checkpoints left behind
    return summary


if __name__ == "__main__":
    sys.argv[1:] = preview.before_hydra(sys.argv[1:])
    main()

"""Entry point: compose -> build -> train -> evaluate -> save.

    python -m src.run [group=option ...] [knob=value ...]
    python -m src.run -m dropout=0.1,0.3          # a sweep (summary: src/summarize.py)

Only Hydra and OmegaConf load at import, so `--help` and `--cfg job` stay fast; torch and
transformers load when a run starts.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.errors import UserError

log = logging.getLogger("src.run")


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Run one experiment into `run_dir`; return the best eval value of the chosen metric."""
    import numpy as np
    from hydra.utils import instantiate
    from transformers import set_seed

    from src import data, metrics, outputs
    from src.optim import build_optimizer

    set_seed(cfg.seed)
    corpus = instantiate(cfg.dataset)
    log.info(
        "dataset: %s train / %s %s / %s test, labels %s",
        len(corpus.train),
        len(corpus.eval),
        corpus.eval_split,
        len(corpus.test),
        corpus.id2label,
    )

    backbone = instantiate(cfg.backbone)
    tokenizer = backbone.tokenizer()
    encoded = {
        name: data.encode(tokenizer, split, cfg.max_length, cfg.truncation)
        for name, split in (("train", corpus.train), ("eval", corpus.eval), ("test", corpus.test))
    }
    collator = data.collator(tokenizer)
    log.info(
        "tokenizer: %s, max_length %d, truncation %s", backbone.name, cfg.max_length, cfg.truncation
    )

    model = instantiate(cfg.model, _partial_=True)(backbone=backbone, id2label=corpus.id2label)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model: %s on %s (%.1fM parameters)", type(model).__name__, backbone.name, n_params / 1e6
    )

    trainer = instantiate(cfg.trainer)
    total_steps = trainer.num_training_steps(len(encoded["train"]))
    optimizer = build_optimizer(instantiate(cfg.optimizer), model)
    scheduler = instantiate(cfg.scheduler)(optimizer, num_training_steps=total_steps)
    log.info(
        "trainer: %s on %s (%s), %d optimizer steps",
        type(trainer).__name__,
        trainer.device,
        trainer.precision,
        total_steps,
    )

    num_labels = len(corpus.label_names)

    def score(logits: np.ndarray, labels: np.ndarray) -> dict:
        return metrics.compute(labels, logits.argmax(-1), num_labels)

    result = trainer.fit(
        model, encoded["train"], encoded["eval"], collator, optimizer, scheduler, score, run_dir
    )

    test_labels = np.asarray(corpus.test.labels)
    test_logits = trainer.predict(model, encoded["test"], collator)
    test_preds = test_logits.argmax(-1)
    test_metrics = metrics.compute(test_labels, test_preds, num_labels)
    log.info("test: %s", " ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()))

    outputs.save_model(run_dir / outputs.BEST_MODEL_DIR, model, tokenizer)
    report = metrics.report(test_labels, test_preds, corpus.label_names)
    outputs.write_atomic(run_dir / outputs.REPORT_FILE, report)
    outputs.write_predictions(
        run_dir / outputs.PREDICTIONS_FILE, test_labels, test_logits, corpus.label_names
    )
    outputs.write_json(
        run_dir / outputs.METRICS_FILE,
        {
            "test": test_metrics,
            "history": result.history,
            "train_log": result.train_log,
            "best_epoch": result.best_epoch,
            f"best_eval_{trainer.metric}": result.best_metric,
            "eval_split": corpus.eval_split,
            "stopped_early": result.stopped_early,
            "train_seconds": round(result.train_seconds, 2),
            "train_samples_per_second": round(result.samples_per_second, 3),
            "device": str(trainer.device),
            "precision": trainer.precision,
            "backbone": backbone.name,
            "model": cfg.model._target_.rsplit(".", 1)[-1],
            "trainer": cfg.trainer._target_.rsplit(".", 1)[-1],
            "n_train": len(corpus.train),
            "n_eval": len(corpus.eval),
            "n_test": len(corpus.test),
            "label_names": corpus.label_names,
        },
    )
    log.info("wrote %s", run_dir)
    return float(result.best_metric)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.launcher.get("n_jobs"):  # hydra/launcher=joblib
        share_machine(hydra_cfg.launcher.n_jobs, hydra_cfg.job.num, cfg.device)
    try:
        return train(cfg, Path(hydra_cfg.runtime.output_dir))
    except Exception as e:
        mistake = user_error(e)
        if mistake is None or hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # in a sweep Hydra records the failed job and runs the others
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(2)


def share_machine(n_jobs: int, job_num: int, device: str) -> None:
    """Jobs run side by side by hydra/launcher=joblib share the cores and spread over the GPUs.

    Without this each job's torch takes every core (n_jobs x oversubscribed), and the HF
    Trainer takes every visible GPU (DataParallel). A joblib worker serves several jobs and
    keeps the GPU it started CUDA on, so only a worker's first job chooses one.
    """
    import joblib
    import torch

    cores = joblib.cpu_count()  # honours affinity masks and cgroup CPU quotas
    parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib's -1 = all cores
    torch.set_num_threads(max(1, cores // parallel))
    log.info("job %d of a parallel sweep: %d torch threads", job_num, torch.get_num_threads())
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = gpus.split(",") if gpus else [str(i) for i in range(torch.cuda.device_count())]
    if len(visible) > 1 and not torch.cuda.is_initialized() and device in ("auto", "cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[job_num % len(visible)]
        log.info("job %d: CUDA_VISIBLE_DEVICES=%s", job_num, os.environ["CUDA_VISIBLE_DEVICES"])


def user_error(error: BaseException) -> UserError | None:
    """The UserError behind `error`, also when hydra.utils.instantiate wrapped it."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__cause__
    return None


if __name__ == "__main__":
    main()

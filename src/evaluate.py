"""Score a finished run on a labelled dataset, without training.

    python -m src.evaluate run_dir=outputs/runs/<run>      # its own dataset's test split again
    python -m src.evaluate run_dir=<run> dataset=files dataset.test_file=new.csv
    python -m src.evaluate run_dir=<run> dataset=hf dataset.path=<hub id or folder>

A Hydra app like src.run (conf/evaluate.yaml). It scores the dataset's test split (with
dataset=files and only a test_file, all of that file), cut as the run cut texts in training
(best_model/preprocessing.json, through src.predict's Predictor). Its folder (`hydra.run.dir`,
by default under outputs/evaluations/) gets test_predictions.csv, classification_report.txt,
confusion_matrix.png, report.md and, last, metrics.json: the test metrics with their 95%
intervals and what was evaluated (the run, the dataset, the texts' fingerprint), so that
`python -m src.compare` pairs two evaluations of the same texts. Labels the run never saw are
one line that names them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, replace
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from src import rundir
from src.devices import DEVICE
from src.errors import USER_ERROR_EXIT_CODE, UserError, one_line, user_error
from src.schema import Spec, check_keys, fields, param

CONFIG_NAME = "evaluate"


@dataclass
class Evaluation(Spec):
    """python -m src.evaluate: which run, and how to feed it."""

    run_dir: str = param(MISSING, "a finished run folder (or its best_model/ folder)")
    batch_size: int = param(32, "texts per forward pass", ge=1)
    device: str = param("auto", "auto = cuda, else mps, else cpu", **DEVICE)


def validate(cfg: DictConfig | Mapping) -> Evaluation:
    """The whole evaluation config checked before anything loads, as src.spec checks a run's."""
    from src import spec

    plain = spec.resolved(cfg)
    check_keys("", plain, (*fields(Evaluation), "dataset"), "a top-level key of src.evaluate")
    node = plain["dataset"]
    spec.check_target("dataset", node.get("_target_"))
    spec.spec_class(node["_target_"]).parse(node, "dataset.")
    if plain.get("run_dir") is None:
        raise UserError("run_dir=null: required; give a finished run: run_dir=outputs/runs/<run>")
    return Evaluation.parse({k: v for k, v in plain.items() if k != "dataset"})


def labelled(dataset: Any, names: list[str], run: str, task: Any):
    """The split to score, its labels as the run's task holds them (by name: ids, id sets;
    numbers)."""
    from src.data import Files

    if isinstance(dataset, Files) and dataset.test_file and not dataset.train_file:
        where, split = dataset.test_file, dataset.read(Path(dataset.test_file), task)
        split = split.head(dataset.max_eval_samples)
    else:
        corpus = dataset.load(task)
        where = f"the test split of {type(dataset).__name__}"
        ids = corpus.test.labels if task.NAME == "regression" else [  # back to names
            [corpus.label_names[i] for i in y] if isinstance(y, list) else corpus.label_names[y]
            for y in corpus.test.labels
        ]  # fmt: skip
        split = replace(corpus.test, labels=ids)
    if unseen := task.unseen(split.labels, names, dataset):
        raise UserError(
            f"{where}: labels {unseen} were never seen by the run {run} (its labels: "
            f"{', '.join(names)}); score data labelled with those"
        )
    return replace(split, labels=task.encode(split.labels, names, str(where), dataset))


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    """Score the run on the dataset into `out_dir`; returns what metrics.json holds."""
    from src import metrics, progress, render
    from src.build import make
    from src.outputs import predictions_csv
    from src.predict import Predictor, model_folder
    from src.reports import PLOT_TITLE, test_plot

    settings = validate(cfg)
    folder = model_folder(Path(settings.run_dir))  # a wrong folder fails before torch loads
    progress.quiet_libraries()
    predictor = Predictor.load(folder, settings.device)
    names, task, k = predictor.label_names, predictor.task, len(predictor.label_names)
    split = labelled(make(cfg.dataset), names, settings.run_dir, task)
    logits = predictor.logits(split.texts, settings.batch_size, split.pairs)
    truth, preds = task.truth(split.labels, k), task.decide(logits)
    scores = task.score(truth, preds, k)
    record = {
        "test": scores,
        "test_ci95": metrics.bootstrap_ci(truth, preds, k, task=task.NAME),
        "n_test": len(split),
        "label_names": names,
        "task": task.state(),
        "test_sha256": rundir.texts_sha256(split.texts),
        "model": type(predictor.model).__name__,
        "evaluated": {
            "run_dir": settings.run_dir,
            "model_folder": str(folder),
            "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        },  # fmt: skip
    }
    rows = [{"index": i, "label": task.label_cell(y, names)} for i, y in enumerate(split.labels)]
    table = predictions_csv(rows, task.outputs(logits), names, task)
    rundir.write_atomic(out_dir / rundir.PREDICTIONS_FILE, table)
    report = metrics.report(truth, preds, names, task.NAME)
    rundir.write_atomic(out_dir / rundir.REPORT_FILE, report)
    plot = test_plot(out_dir, task.NAME, truth, preds, names)
    rundir.write_atomic(out_dir / rundir.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    table = [f"| {m} | {v:.4f} | {render.interval(record['test_ci95'].get(m))} |"
             for m, v in scores.items()]  # fmt: skip
    rundir.write_atomic(out_dir / rundir.REPORT_MD, "\n".join([
        f"# {settings.run_dir} on {record['evaluated']['dataset']['_target_']}", "",
        f"{len(split)} texts, cut as the run cut them in training; labels {', '.join(names)}.",
        "", "| metric | value | 95% interval |", "|---|---|---|", *table, "",
        f"Intervals: {render.BOOTSTRAP}.", "", f"![{PLOT_TITLE[task.NAME]}]({plot.name})",
        "", "```text", report.rstrip(), "```", "",
    ]))  # fmt: skip
    rundir.write_json(out_dir / rundir.METRICS_FILE, record)  # last: a finished evaluation
    return record


def with_run_dataset(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Without `dataset=<option>` on the command line, the run's own dataset (its
    config_resolved.yaml), with any `dataset.<key>=` given applied on top: `run_dir=R` alone
    scores R's own test split again, whatever data R trained on."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "dataset" in keys or cfg.get("run_dir") is None:
        return cfg
    run = Path(cfg.run_dir)
    run = run.parent if run.name == rundir.BEST_MODEL_DIR else run
    saved = run / rundir.CONFIG_FILE
    if not saved.is_file():
        return cfg  # a best_model folder alone: the composed default (src.predict's checks)
    own = OmegaConf.load(saved).get("dataset")
    if own is None:
        return cfg
    for key in (k for k in keys if k.startswith("dataset.")):
        OmegaConf.update(own, key[len("dataset."):], OmegaConf.select(cfg, key), merge=False)
    out = cfg.copy()
    out.dataset = own
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        cfg = with_run_dataset(cfg, list(HydraConfig.get().overrides.task))
        record = evaluate(cfg, out_dir)
    except Exception as e:
        if (mistake := user_error(e)) is None:
            raise
        print(one_line(mistake), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    scores = " ".join(f"{k}={v:.4f}" for k, v in record["test"].items())
    print(f"{record['n_test']} texts: {scores}; wrote {out_dir}")


if __name__ == "__main__":
    from src import preflight

    try:
        preflight.check(sys.argv[1:], config_name=CONFIG_NAME)
    except UserError as e:
        print(one_line(e), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    main()

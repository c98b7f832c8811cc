"""Score a finished run on a labelled dataset, without training.

    python -m src.evaluate run_dir=outputs/runs/<run>      # its own dataset's test split again
    python -m src.evaluate run_dir=<run>/export-onnx       # an export, on the run's test split
    python -m src.evaluate run_dir=<run> dataset=files dataset.test_file=new.csv
    python -m src.evaluate run_dir=<run> dataset=hf dataset.path=<hub id or folder>

`run_dir` is any folder training left (src.outputs.trained.open_model): a finished run or a sweep's
job, its best_model/, an export, or an evaluation (the model it scored, on the data it scored).
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

import shutil
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.config import declared, rundir, schema
from src.config import validation as spec
from src.config.devices import check_device
from src.config.errors import UserError, reported, user_error
from src.config.knobs import Evaluation
from src.config.schema import check_keys, fields
from src.data import Files
from src.outputs import render, results
from src.outputs.reports import PLOT_TITLE, test_plot
from src.outputs.save import predictions_csv
from src.outputs.trained import Opened, check_output_folder, open_folder, open_model
from src.tasks import metrics
from src.trainers import progress
from src.trainers.build import make

CONFIG_NAME = "evaluate"


def validate(cfg: DictConfig | Mapping) -> Evaluation:
    """The whole evaluation config checked before anything loads, as a run's is checked."""

    plain = spec.resolved(cfg)
    check_keys("", plain, (*fields(Evaluation), "dataset"), "a top-level key of src.evaluate")
    node = plain.get("dataset")
    if not isinstance(node, Mapping) or "_target_" not in node:  # `~dataset`, dataset=null
        raise UserError(
            f"dataset={schema.show(node)}: an option of conf/dataset/ (a node with _target_); "
            "without dataset= the run's own data is scored"
        )
    spec.check_target("dataset", node.get("_target_"))
    spec.spec_class(node["_target_"]).parse(node, "dataset.")
    if plain.get("run_dir") is None:
        raise UserError("run_dir=null: required; give a finished run: run_dir=outputs/runs/<run>")
    return Evaluation.parse({k: v for k, v in plain.items() if k != "dataset"})


def labelled(dataset: Any, names: list[str], run: str, task: Any):
    """The split to score, its labels as the run's task holds them (by name: ids, id sets;
    numbers)."""

    if isinstance(dataset, Files) and dataset.test_file and not dataset.train_file:
        where, split = dataset.test_file, dataset.read(Path(dataset.test_file), task)
        split = split.head(dataset.max_eval_samples)
    else:
        corpus = dataset.load(task)
        where = f"the test split of {type(dataset).__name__}"
        ids = (
            corpus.test.labels
            if task.NAME == "regression"
            else [  # back to names
                [corpus.label_names[i] for i in y] if isinstance(y, list) else corpus.label_names[y]
                for y in corpus.test.labels
            ]
        )
        split = replace(corpus.test, labels=ids)
    if unseen := task.unseen(split.labels, names, dataset):
        raise UserError(
            f"{where}: labels {unseen} were never seen by the run {run} (its labels: "
            f"{', '.join(names)}); score data labelled with those"
        )
    return replace(split, labels=task.encode(split.labels, names, str(where), dataset))


def evaluate(cfg: DictConfig, out_dir: Path, found: Opened | None = None) -> dict:
    """Score the model of `found` (else of cfg.run_dir) on cfg.dataset into `out_dir`;
    returns what metrics.json holds."""

    settings = validate(cfg)
    found = found or open_model(settings.run_dir)  # a wrong folder fails before torch loads
    progress.quiet_libraries()
    predictor = found.predictor(settings.device)
    names, task, k = predictor.label_names, predictor.task, len(predictor.label_names)
    split = labelled(make(cfg.dataset), names, settings.run_dir, task)
    logits = predictor.logits(split.texts, settings.batch_size, split.pairs)
    truth, preds = task.truth(split.labels, k), task.decide(logits)
    scores = task.score(truth, preds, k)
    scored = found.scored or found  # an evaluation given: what it scored
    record = {
        "test": scores,
        "test_ci95": metrics.bootstrap_ci(truth, preds, k, task=task.NAME),
        "n_test": len(split),
        "label_names": names,
        "task": task.state(),
        "test_sha256": results.texts_sha256(split.texts),
        "model": type(predictor.model).__name__,
        "started_in": str(Path.cwd()),  # where the relative paths of its dataset point from
        "evaluated": {
            "run_dir": scored.path.as_posix(),  # as given
            "run_path": str(scored.path.resolve()),  # found from any working directory
            "model_folder": str(found.model),
            "run_id": scored.run_id,  # the training it scored: an evaluation of it, not a later
            "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        },
    }
    rows = [{"index": i, "label": task.label_cell(y, names)} for i, y in enumerate(split.labels)]
    table = predictions_csv(rows, task.outputs(logits), names, task)
    rundir.write_atomic(out_dir / rundir.PREDICTIONS_FILE, table)
    report = metrics.report(truth, preds, names, task.NAME)
    rundir.write_atomic(out_dir / rundir.REPORT_FILE, report)
    plot = test_plot(out_dir, task.NAME, truth, preds, names)
    rundir.write_atomic(out_dir / rundir.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    table = [
        f"| {m} | {v:.4f} | {render.interval(record['test_ci95'].get(m))} |"
        for m, v in scores.items()
    ]
    rundir.write_atomic(
        out_dir / rundir.REPORT_MD,
        "\n".join(
            [
                f"# {settings.run_dir} on {record['evaluated']['dataset']['_target_']}",
                "",
                f"{len(split)} texts, cut as the run cut them in training; labels "
                f"{', '.join(names)}.",
                "",
                "| metric | value | 95% interval |",
                "|---|---|---|",
                *table,
                "",
                f"Intervals: {render.BOOTSTRAP}.",
                "",
                f"![{PLOT_TITLE[task.NAME]}]({plot.name})",
                "",
                "```text",
                report.rstrip(),
                "```",
                "",
            ]
        ),
    )
    rundir.write_json(out_dir / rundir.METRICS_FILE, record)  # last: a finished evaluation
    return record


def with_run_dataset(cfg: DictConfig, overrides: list[str], found: Opened) -> DictConfig:
    """Without `dataset=<option>` on the command line, the dataset of the folder scored (a
    run's own, that of the run behind a best_model/ or export, an evaluation's), with any
    `dataset.<key>=` given applied on top: `run_dir=R` alone scores R's own test split again,
    whatever data R trained on. A model folder away from its run names no data: one line."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "dataset" in keys:
        return cfg
    if not found.dataset:
        raise UserError(
            f"run_dir={cfg.run_dir}: {found.what}, with no run folder beside it, so its own "
            "test split is unknown; name the data to score: dataset=files "
            "dataset.test_file=<file> (or dataset=movie_reviews, dataset=hf)"
        )
    own = OmegaConf.create(found.data_to_read())
    for key in (k for k in keys if k.startswith("dataset.")):
        OmegaConf.update(own, key[len("dataset.") :], OmegaConf.select(cfg, key), merge=False)
    out = cfg.copy()
    out.dataset = own
    return out


# what an evaluation takes no part of: it scores the test split alone
UNUSED = ("val_size", "max_train_samples", "validation_split")
SPLIT = ("test_size", "split_seed")  # what draws a test split off the training data


def check_not_trained_on(dataset: Mapping, overrides: list[str], found: Opened) -> None:
    """The texts an evaluation scores are none its run trained on: the run's own data split
    with another split_seed or test_size, or its train_file scored whole, would score texts
    the model learnt, as test scores, with exit 0. A key that selects what the evaluation
    does not read (the validation share, the training cap) does nothing: one line too."""

    for key in (o.split("=", 1)[0].lstrip("+~") for o in overrides):
        if key.startswith("dataset.") and key.removeprefix("dataset.") in UNUSED:
            raise UserError(
                f"{key}: an evaluation scores the test split alone and reads no {key}; drop it"
            )
    own = open_folder(found.run).data_to_read() if found.run is not None else None  # trained on
    if not own or own.get("_target_") != dataset.get("_target_"):
        return  # no run beside the model, or another kind of data

    def where(name: str | None, cwd: Path | None = None) -> Path | None:
        return ((cwd or Path.cwd()) / name).resolve() if name else None

    trained_on = where(own.get("train_file"))
    if dataset.get("test_file"):  # its own test_file is its test split, whatever it holds
        scored = where(dataset["test_file"])
        if trained_on and scored == trained_on != where(own.get("test_file")):
            raise UserError(
                f"dataset.test_file={dataset['test_file']}: the file the run {found.run} "
                "trained on; score a file it never saw"
            )
        return
    if where(dataset.get("train_file")) != trained_on or "path" in own:
        return  # another file split, or a hub dataset (its own test split)
    if own.get("test_file"):
        raise UserError(
            f"dataset.train_file={dataset.get('train_file')}: the run {found.run} trained on "
            "all of it (its test_file was apart), so a split of it scores texts it learnt; "
            f"score its test_file: dataset.test_file={own['test_file']}"
        )
    for key in SPLIT:
        if dataset.get(key) != own.get(key):
            raise UserError(
                f"dataset.{key}={dataset.get(key)}: the run {found.run} drew its test split "
                f"with {key}={own.get(key)}; another draws texts it trained on; keep the "
                "run's, or score other data (dataset=files dataset.test_file=<file>)"
            )


def prepare(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Opened]:
    """The evaluation's config with the data to score (the folder's own, unless the command
    line names it) and the folder opened, each mistake one line, before anything loads."""

    declared.check_current()
    settings = validate(cfg)
    found = open_model(settings.run_dir)
    check_device("device", settings.device)
    cfg = with_run_dataset(cfg, overrides, found)
    check_not_trained_on(OmegaConf.to_container(cfg.dataset, resolve=True), overrides, found)
    return cfg, found


def check(cfg: DictConfig) -> None:
    """Before Hydra writes the evaluation's folder (src.outputs.callbacks.CheckConfig): the
    config, the folder to score, and the folder to write (not a run's, an export's, ...)."""
    prepare(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), list(cfg.hydra.overrides.task)
    )
    check_output_folder(Path(cfg.hydra.run.dir), "evaluate")


@hydra.main(version_base="1.3", config_path="../conf", config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    new = rundir.unused(out_dir)
    with reported():
        try:
            cfg, found = prepare(cfg, list(HydraConfig.get().overrides.task))
            record = evaluate(cfg, out_dir, found)
        except Exception as e:  # found in the data (labels, columns): no half-made folder
            if new and user_error(e) is not None:
                shutil.rmtree(out_dir, ignore_errors=True)
            raise
    scores = " ".join(f"{k}={v:.4f}" for k, v in record["test"].items())
    print(f"{record['n_test']} texts: {scores}; wrote {out_dir}")


if __name__ == "__main__":
    from src.config import cli, preflight

    sys.argv[1:] = cli.quote_paths(sys.argv[1:], ("run_dir",))  # a sweep job's folder as shown
    with reported():
        flags, overrides = cli.hydra_command_line(sys.argv[1:])
        preflight.check(overrides, config_name=CONFIG_NAME, other_configs=cli.other_configs(flags))
    main()

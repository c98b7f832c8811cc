"""src.outputs.trained: every kind of folder a command writes, opened one way, and what each command
sees in it (src.predict, src.evaluate, src.export, src.compare, src.review --runs and
src.sweeps.summary): the same run, config, labels, data and test split, or one line saying why not.

The folders are made once from the shared custom_head smoke run (trained on 48 reviews, tested
on 32): the run, a sweep's job of it, its best_model/, an ONNX export, an evaluation of the
run and one of the export, and the sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from src import compare, export, review
from src.config import rundir
from src.config.cli import quote_paths
from src.config.compose import compose
from src.config.errors import UserError
from src.evaluate import CONFIG_NAME, evaluate, prepare
from src.outputs import trained
from src.outputs.results import texts_sha256
from tests.conftest import PAIRS, run_cli

KINDS = ("run", "job", "model", "export", "evaluation", "evaluation-of-export", "sweep")
# kind -> what opening it says: (Opened.kind, whether it has test metrics of its own to compare)
OPENED = {
    "run": ("run", True),
    "job": ("job", True),
    "model": ("model", True),  # compared as its run
    "export": ("export", False),
    "evaluation": ("evaluation", True),
    "evaluation-of-export": ("evaluation", True),
    "sweep": ("sweep", False),
}


def _evaluated(folder: Path, out: Path) -> Path:
    """`python -m src.evaluate run_dir=<folder>` as typed (a job's `0_seed=42` too)."""
    overrides = quote_paths([f"run_dir={folder}"], ("run_dir",))
    cfg, found = prepare(compose(overrides, config_name=CONFIG_NAME), overrides)
    evaluate(cfg, out, found)
    return out


@pytest.fixture(scope="module")
def folders(trained_runs, tmp_path_factory) -> dict[str, Path]:
    run = trained_runs["custom_head"]
    root = tmp_path_factory.mktemp("kinds")
    sweep = root / "sweep"
    job = Path(shutil.copytree(run, sweep / "0_seed=42"))
    (job / ".hydra").mkdir(exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=42\n")
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    out = root / "export-onnx"
    assert export.main([f"run_dir={run}", f"out={out}"]) == 0
    return {
        "run": run,
        "job": job,
        "model": run / "best_model",
        "export": out,
        "evaluation": _evaluated(run, root / "evaluation"),
        "evaluation-of-export": _evaluated(out, root / "evaluation-of-export"),
        "sweep": sweep,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_every_folder_kind_opens_to_its_run(folders, kind):
    """The kind it is, and the same run behind it: config, labels, dataset, test split."""
    run = trained.open_folder(folders["run"])
    found = trained.open_folder(folders[kind])
    assert found.kind == OPENED[kind][0]
    if kind == "sweep":
        assert [j.name for j in trained.sweep_jobs(found.path)] == ["0_seed=42"]
        return
    assert found.config == run.config and found.label_names == ["neg", "pos"]
    assert found.dataset == run.dataset and found.dataset["max_eval_samples"] == 32
    test = found.test_split(found.task())
    assert len(test) == 32
    assert texts_sha256(test.texts) == run.metrics["test_sha256"]
    if kind in ("model", "export", "evaluation-of-export"):
        assert found.run == folders["run"]
    assert (found.model / "config.json").is_file()
    assert (found.model.name == "export-onnx") == kind.endswith("export")


@pytest.mark.parametrize("kind", KINDS)
def test_what_each_command_sees_in_each_kind(folders, kind, tmp_path):
    """evaluate scores the run's own 32 test texts (no dataset given); compare sees the run's
    settings, none changed; export takes a trained model only; summarize a sweep only; predict
    serves every kind with a model. Each refusal is one line naming what to give instead."""
    folder, (_, scored) = folders[kind], OPENED[kind]
    run_metrics = trained.open_folder(folders["run"]).metrics
    if kind == "sweep":
        for refused in (
            lambda: trained.open_model(folder),
            lambda: compare.Run.read(folder),
            lambda: export.source({"run_dir": str(folder)}),
        ):
            with pytest.raises(
                UserError,
                match="a sweep or study folder of 1 jobs; give one of "
                "its job folders \\(its best by best_eval_f1: ",
            ):
                refused()
        assert trained.open_sweep(folder)[0].status == "finished"
        return
    with pytest.raises(UserError, match="not a sweep"):
        trained.open_sweep(folder)
    record = _evaluated(folder, tmp_path / "e")  # evaluate, as `run_dir=<folder>` alone
    metrics = json.loads((record / "metrics.json").read_text())
    assert metrics["n_test"] == 32 and metrics["test_sha256"] == run_metrics["test_sha256"]
    assert metrics["test"] == pytest.approx(run_metrics["test"], abs=1e-6)
    if scored:
        compared = compare.Run.read(folder)
        ran = compare.Run.read(folders["run"])
        assert compare.differences([ran, compared]) == {}
        assert [v for _, v in compare.metric_rows([compared])[:4]] == [
            v for _, v in compare.metric_rows([ran])[:4]
        ]
    else:
        with pytest.raises(
            UserError,
            match="has no test metrics of its own; score it with "
            f"`python -m src.evaluate run_dir={folder}`",
        ):
            compare.Run.read(folder)
    if kind in ("export", "evaluation-of-export"):
        with pytest.raises(
            UserError,
            match="already an ONNX export; export from the trained "
            f"model: run_dir={folders['run']}",
        ):
            export.source({"run_dir": str(folder)})
    else:
        own = folders["job"] if kind == "job" else folders["run"]
        assert export.source({"run_dir": str(folder)}).run == own
    texts = ["A gripping, beautifully acted film.", "Dull."]
    probs = trained.open_model(folder).predictor("cpu").probabilities(texts)
    reference = trained.Predictor.load(folders["run"], "cpu").probabilities(texts)
    assert probs == pytest.approx(reference, abs=1e-4)


def test_an_evaluation_of_an_export_compares_as_its_run(folders):
    """The seen bug: the export folder has no config, so every setting showed as changed."""
    runs = [compare.Run.read(folders[k]) for k in ("run", "evaluation-of-export")]
    out = compare.markdown(runs, ["run", "eval"])
    assert "None: the resolved configs are identical." in out
    assert f"an evaluation of `{folders['export'].as_posix()}`" in out


def test_the_export_card_names_the_folder_it_is_served_from(folders):
    card = (folders["export"] / "README.md").read_text()
    assert f"python -m src.predict run_dir={folders['export'].as_posix()} text=" in card
    assert ".partial" not in card
    record = json.loads((folders["export"] / "export.json").read_text())
    assert Path(record["run_path"]) == folders["run"].resolve()


def test_review_pairs_runs_and_refuses_a_run_beside_a_sweep(folders):
    (found,) = review.evidence(folders["run"], folders["job"])
    assert found.note.startswith("paired on the same 32 test texts")
    assert [m for m, _, _ in found.rows] == [
        f"test {m}" for m in ("accuracy", "precision", "recall", "f1")
    ]
    with pytest.raises(UserError, match=r"is a sweep and .* is not; give two run folders"):
        review.evidence(folders["sweep"], folders["run"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_command_writes_only_into_a_folder_of_its_own_kind(folders, kind, tmp_path):
    """src.run writes into a new folder or a run's (resume=auto decides), src.evaluate into a
    new one or an evaluation's, a sweep into a new one or a sweep's; a folder of another kind
    is one line before anything is written (an evaluation into a run's folder replaced its
    metrics.json and predictions, and the run then served another model; one into the folder
    it scored made every command on it recurse). Each case, through the check each command's
    Hydra callback makes (src.sweeps.job.check, src.evaluate.check, CheckOutputDir)."""
    own = {"run": ("run", "job"), "evaluate": ("evaluation", "evaluation-of-export")}
    own["sweep"] = ("sweep",)
    for command, kinds in own.items():
        for empty in (tmp_path / "new", tmp_path):  # no folder yet, an empty one
            trained.check_output_folder(empty, command)
        if kind in kinds:
            trained.check_output_folder(folders[kind], command)
            continue
        with pytest.raises(UserError) as refused:
            trained.check_output_folder(folders[kind], command, "hydra.run.dir")
        assert str(refused.value).startswith(f"hydra.run.dir={folders[kind]}: holds ")
        assert "would overwrite; name a new folder, or leave hydra.run.dir out" in str(
            refused.value
        )
    if kind == "run":  # an evaluation already written over the run it scored: one line
        broken = Path(shutil.copytree(folders["evaluation"], tmp_path / "self"))
        record = json.loads((broken / rundir.METRICS_FILE).read_text())
        record["evaluated"]["run_path"] = str(broken.resolve())
        (broken / rundir.METRICS_FILE).write_text(json.dumps(record))
        with pytest.raises(UserError, match="an evaluation written over the folder it scored"):
            trained.open_folder(broken)


def test_a_failed_attempt_leaves_a_finished_runs_record_as_it_was(trained_runs, tmp_path):
    """A run started again into a finished run's folder, from another folder, that stops on a
    data mistake before training (exit 2): Hydra had rewritten the run's .hydra/ (overrides,
    mode, working directory), and src.evaluate then read the run's relative data from the
    failed attempt's folder; the record is put back, byte for byte, and the run is still
    a finished one."""
    run = Path(shutil.copytree(trained_runs["custom_head"], tmp_path / "run"))
    (run / ".hydra").mkdir(exist_ok=True)
    for name, text in (("overrides.yaml", "- seed=42\n"), ("hydra.yaml", "hydra:\n  mode: RUN\n")):
        (run / ".hydra" / name).write_text(text)
    kept = rundir.hydra_record(run)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "bad.csv").write_text("text,label\nx,a\ny,b\n")
    proc = run_cli(
        "debug=smoke",
        "dataset=files",
        "dataset.train_file=bad.csv",
        f"hydra.run.dir={run}",
        cwd=tmp_path / "elsewhere",
    )
    assert proc.returncode == 2 and "cannot split the data stratified" in proc.stderr
    assert rundir.hydra_record(run) == kept
    assert not (run / rundir.STATUS_FILE).exists()  # the fixture's run, made in-process
    assert trained.open_folder(run).finished
    assert rundir.read_cwd(run) == Path.cwd()  # metrics.json's started_in: where it trained
    # the same run again with resume=auto: skipped, and its record as it was
    rundir.write_status(run, "finished")  # as src.run records it (the fixture ran in-process)
    proc = run_cli(*PAIRS["custom_head", "manual"], "resume=auto", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "finished already (resume=auto): skipped" in proc.stdout + proc.stderr
    assert rundir.hydra_record(run) == kept


def _pointed_at(folder: Path, record: str, key: str, run: Path) -> Path:
    """`folder` (an export or an evaluation) made to name `run` as the run it came from."""
    data = json.loads((folder / record).read_text())
    (data[key] if key else data)["run_path"] = str(run.resolve())
    (folder / record).write_text(json.dumps(data))
    return folder


def _export_run_of(export_dir: Path) -> Path:
    return Path(json.loads((export_dir / "export.json").read_text())["run_path"])


def test_a_run_trained_again_leaves_nothing_of_its_earlier_model(folders, tmp_path):
    """A run folder trained again from scratch first loses the earlier training's results and
    its exports (src.sweeps.job, clear_earlier_run), keeping checkpoints and another run's
    export; an export or an evaluation made elsewhere from the earlier model names its
    training (run_id) and is one line once the run holds another, where compare called the
    two the same settings and the export's metrics the run's."""
    run = Path(shutil.copytree(folders["run"], tmp_path / "run"))
    mine = _pointed_at(
        shutil.copytree(folders["export"], run / "export-onnx"), "export.json", "", run
    )
    copied = Path(shutil.copytree(folders["export"], run / "export-copied"))  # names the original
    theirs = Path(shutil.copytree(folders["export"], run / "export-theirs"))  # another training's
    kept = json.loads((theirs / rundir.PREPROCESSING_FILE).read_text()) | {"run_id": "0" * 32}
    (theirs / rundir.PREPROCESSING_FILE).write_text(json.dumps(kept))
    elsewhere = _pointed_at(
        shutil.copytree(folders["export"], tmp_path / "export"), "export.json", "", run
    )
    evaluation = _pointed_at(
        shutil.copytree(folders["evaluation"], tmp_path / "evaluation"),
        rundir.METRICS_FILE,
        "evaluated",
        run,
    )
    (run / rundir.CHECKPOINTS_DIR / "step-4").mkdir(parents=True)
    for folder in (elsewhere, evaluation, mine):  # the run as it is: each opens to it
        assert trained.open_folder(folder).run == run
    # a run copied with its export: the export is the copy's, though it names the original
    assert trained.open_folder(copied).run == run and _export_run_of(copied) == folders["run"]

    removed = trained.clear_earlier_run(run)
    assert set(removed) == {*trained.RUN_OUTPUTS, "export-onnx", "export-copied"} - {
        rundir.PER_LABEL_PNG,  # a single-label run draws the confusion matrix,
        rundir.SCATTER_PNG,  # not these; no logger file, no sweep's error.txt
        rundir.SCALARS_FILE,
        rundir.ERROR_FILE,
    }
    assert not mine.exists() and not copied.exists() and theirs.is_dir()
    assert (run / "checkpoints" / "step-4").is_dir()
    shutil.copytree(folders["run"] / "best_model", run / "best_model")  # trained again:
    shutil.copy2(folders["run"] / rundir.METRICS_FILE, run / rundir.METRICS_FILE)
    for name in (rundir.METRICS_FILE, f"best_model/{rundir.PREPROCESSING_FILE}"):
        record = json.loads((run / name).read_text())  # another model, another run_id
        record["run_id"] = "f" * 32
        (run / name).write_text(json.dumps(record))
    for folder, again in ((elsewhere, "export it"), (evaluation, "evaluate it")):
        with pytest.raises(UserError) as stale:
            trained.open_folder(folder)
        assert str(stale.value).startswith(f"{folder}: made from an earlier training in ")
        assert f"(now ffffffff); {again} again from that run" in str(stale.value)


def test_an_evaluation_of_a_model_away_from_its_run_is_compared_with_a_reason(folders, tmp_path):
    """Such an evaluation holds metrics but no settings that made them: compare says so, and
    what to evaluate instead (it said `not a finished run (no config_resolved.yaml)`, beside an
    evaluation that had one)."""
    model = Path(shutil.copytree(folders["model"], tmp_path / "model"))
    overrides = [f"run_dir={model}", "dataset=movie_reviews", "dataset.max_eval_samples=32"]
    cfg, found = prepare(compose(overrides, config_name=CONFIG_NAME), overrides)
    evaluate(cfg, tmp_path / "evaluation", found)
    with pytest.raises(UserError) as refused:
        compare.main([str(folders["run"]), str(tmp_path / "evaluation")])
    assert str(refused.value).startswith(
        f"{tmp_path / 'evaluation'}: an evaluation of `{model}`, a model folder with no run "
        "beside it, so the settings that made it are unknown; to compare it, evaluate the run"
    )


def test_a_folder_no_command_wrote_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for opener in (trained.open_folder, trained.open_model, trained.open_scored):
        with pytest.raises(UserError, match="not a folder any command of this project wrote"):
            opener(tmp_path)
        with pytest.raises(UserError, match="no such folder"):
            opener(tmp_path / "nope")


def test_a_run_that_did_not_finish_says_how_it_stands(folders, tmp_path):
    run = Path(shutil.copytree(folders["run"], tmp_path / "run"))
    rundir.write_status(run, "failed", "something broke", start="fresh")
    (run / "metrics.json").unlink()
    with pytest.raises(
        UserError,
        match=r"run_dir=.*: not a finished run \(status.json: failed, "
        r"something broke\); rerun it",
    ):
        trained.open_model(run)
    with pytest.raises(UserError, match=r"not a finished run \(status.json: failed"):
        trained.open_scored(run)


def test_what_the_commands_write_others_can_read(folders):
    """A run's, an export's and an evaluation's files get the umask's mode (0644 under 022),
    as open() gives, not mkstemp's 0600: a teammate or a UI under another user reads them."""
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    names = {
        "run": (
            "metrics.json",
            "report.md",
            "config_resolved.yaml",
            "test_predictions.csv",
            "best_model/preprocessing.json",
        ),
        "export": ("README.md", "export.json"),
        "evaluation": ("metrics.json", "report.md", "test_predictions.csv"),
    }
    modes = {
        f"{kind}/{name}": stat.S_IMODE((folders[kind] / name).stat().st_mode)
        for kind, files in names.items()
        for name in files
    }
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)

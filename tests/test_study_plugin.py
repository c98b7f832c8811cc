"""hydra-optuna-sweeper's configuration, unchanged: its sampler group and keys, its sweep
functions' meaning, GridSampler, custom_search_space, and lightning-hydra-template's
`hparams_search` file (tests/data/optuna_plugin, copied as written but for this app's keys)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from src.config.errors import UserError
from src.sweeps import study
from tests.conftest import ROOT, run_cli

PLUGIN_CONF = ROOT / "tests" / "data" / "optuna_plugin"


def _dry_run(tmp_path: Path, *args: str):
    proc = run_cli("-cd", str(PLUGIN_CONF), *args, "--dry-run", f"hydra.sweep.dir={tmp_path}/study")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "study").exists()
    return proc.stdout


@pytest.mark.parametrize(
    ("preset", "lines"),
    [
        (
            "plugin_sphere",
            [
                "  dropout: range(0.0, 0.5, step=0.1) -> 0, 0.1, 0.2, 0.3, 0.4, 0.5",
                "  batch_size: choice(8 ,16 ,32) -> 8, 16, 32",
                "sampler TPESampler, pruner none",
                "20 trials, 1 at a time",
            ],
        ),
        (
            "plugin_grid",
            [
                "  scheduler.warmup_ratio: range(0.0, 0.2, step=0.1) -> 0, 0.1, 0.2",
                '  truncation: choice("head", "tail") -> head, tail',
                "sampler GridSampler, pruner none",
                "12 trials, 1 at a time",  # the grid's 2 x 3 x 2, not n_trials=20
            ],
        ),
    ],
)
def test_the_plugins_example_configs_compose_and_print_their_space(tmp_path, preset, lines):
    out = _dry_run(tmp_path, f"hparams_search={preset}", "debug=smoke")
    for line in lines:
        assert line in out, out


@pytest.mark.processes
def test_a_lightning_hparams_search_file_runs_a_study_unchanged(tmp_path):
    """The template's file names the plugin's sweeper class and a seeded TPE; its
    custom_search_space suggests the warm-up after the lr it depends on."""
    sweep = tmp_path / "study"
    proc = run_cli(
        "-cd",
        str(PLUGIN_CONF),
        "hparams_search=lightning_optuna",
        "debug=smoke",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = [p.parent for p in sweep.glob("*/metrics.json")]
    config = (job / ".hydra" / "hydra.yaml").read_text()  # Hydra's node: the sweeper's
    overrides = (job / ".hydra" / "overrides.yaml").read_text()
    assert "scheduler.warmup_ratio=" in overrides and "lr=" in overrides  # the custom one too
    lr = float(next(o for o in overrides.split() if o.startswith("lr=")).split("=")[1])
    warmup = float(
        next(o for o in overrides.split() if o.startswith("scheduler.warmup_ratio=")).split("=")[1]
    )
    assert 0.0 <= warmup <= min(0.2, 1000 * lr)
    assert "TPESampler" in config and "seed: 1234" in config
    assert json.loads((job / "status.json").read_text())["status"] == "finished"


def _settings(**changes) -> study.Settings:
    return study.Settings(**{"sampler": {"_target_": "optuna.samplers.TPESampler"}, **changes})


def test_a_grid_is_every_value_of_the_space_and_caps_the_trials():
    distributions, _ = study.space({"batch_size": "choice(8, 16)", "epochs": "range(1,3)"}, [])
    grid = {"_target_": "optuna.samplers.GridSampler", "_partial_": True}
    sampler, n_trials = study.sampler_of(_settings(sampler=grid), distributions)
    assert isinstance(sampler, optuna.samplers.GridSampler) and n_trials == 6  # 2 x (1, 2, 3)
    interval, _ = study.space({"lr": "interval(1e-5, 1e-3)"}, [])
    with pytest.raises(UserError, match=r"^hydra.sweeper.params.lr: a grid needs values"):
        study.sampler_of(_settings(sampler=grid), interval)


def test_the_plugins_sampler_nodes_instantiate_and_motpe_says_what_replaced_it():
    """Each sampler option of hydra/sweeper/sampler (null keys: Optuna's own defaults)."""
    import yaml

    for path in sorted((ROOT / "conf/hydra/sweeper/sampler").glob("*.yaml")):
        node = yaml.safe_load(path.read_text())
        if path.stem == "motpe":
            with pytest.raises(UserError, match="Optuna 4 removed MOTPESampler; use "):
                study.optuna_object(node, "sampler", "samplers")
        elif path.stem == "cmaes" and not _has("cmaes"):
            continue  # an optional dependency of Optuna's, not of this project
        else:
            made = study.optuna_object(node, "sampler", "samplers")
            assert made is not None, path.name


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_a_custom_search_space_that_cannot_be_imported_is_one_line():
    with pytest.raises(UserError, match=r"^hydra.sweeper.custom_search_space=nope.nothing: not"):
        study.custom_space("nope.nothing")


def test_a_trial_left_running_by_a_dead_job_is_found_and_a_live_ones_is_not(tmp_path):
    """kill -9 leaves status.json `running` and the folder's lock free: the trial is resumed
    like an interrupted one. A job that is alive (its lock held), one that ended (its owner
    will tell the study) and one whose folder is elsewhere are left alone."""
    from src.config import rundir

    found = optuna.create_study()
    folders = {}
    for number, status in enumerate(["running", "running", "finished", None, "preempted"]):
        trial = found.ask()
        trial.set_user_attr(study.OVERRIDES_ATTR, [f"seed={number}"])
        if status is None:
            continue  # no folder here: another machine's
        folders[number] = tmp_path / f"{number}_seed={number}"
        (folders[number] / rundir.HYDRA_DIR).mkdir(parents=True)
        rundir.write_status(folders[number], status)
    with rundir.claimed(folders[1]):  # trial 1's job is alive
        assert study.interrupted(found, tmp_path) == [(0, ("seed=0",)), (4, ("seed=4",))]


def test_the_plugins_sweeper_alone_without_a_preset_dry_runs(tmp_path):
    """`-m hydra/sweeper=optuna` as the plugin's docs start (no params of a preset): the
    command line's sweep is the whole space (its params null was a traceback)."""
    out = _dry_run(tmp_path, "-m", "hydra/sweeper=optuna", "debug=smoke", "lr=interval(1e-5,1e-3)")
    assert "  lr: interval(1e-5,1e-3) -> a float in [1e-05, 0.001], uniform" in out


@pytest.mark.processes
def test_the_plugins_multi_objective_example_runs_and_draws_its_pareto_front(tmp_path):
    """Its NSGA-II and [minimize, minimize], with the values named (the regression task's mse
    and the training seconds): Optuna's own Pareto trials are the summary's front, and the
    front is the jobs no other job beats on both."""
    import yaml

    scores = tmp_path / "scores.csv"
    rows = [("the apple", 1.0), ("a river", 0.0), ("an apple by a river", 0.5), ("a car", 0.2)]
    scores.write_text("text,score\n" + "".join(f"{t},{v}\n" for t, v in rows * 3))
    sweep = tmp_path / "study"
    proc = run_cli(
        "-cd",
        str(PLUGIN_CONF),
        "hparams_search=plugin_multi_objective",
        "debug=overfit",
        "dataset=files",
        f"dataset.train_file={scores}",
        f"dataset.test_file={scores}",
        "dataset.label_column=score",
        "task=regression",
        "hydra.sweeper.n_trials=4",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = {}  # job folder -> (best eval mse, train seconds), from its metrics.json
    for folder in sweep.glob("*/metrics.json"):
        metrics = json.loads(folder.read_text())
        assert metrics["latency_ms"] > 0 and metrics["peak_memory_mb"] > 0
        values[folder.parent.name] = (metrics["best_eval_mse"], metrics["train_seconds"])
    assert len(values) == 4

    def beaten(a):
        return any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in values.values())

    text = (sweep / "summary.md").read_text()
    rows = text.split("## Pareto front", 1)[1].splitlines()
    front = {
        row.split(" | ")[0].lstrip("| ") for row in rows if row.startswith("| ") and "_" in row
    }
    front.discard("job")
    assert front == {name for name, v in values.items() if not beaten(v)}, text
    optimal = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_trials"]
    assert sorted(tuple(t["values"]) for t in optimal) == sorted(values[n] for n in front)
    assert (sweep / "summary_pareto.png").stat().st_size > 0


def test_pareto_front_and_objective_values():
    from src.sweeps import objectives

    points = [[0.9, 10.0], [0.8, 5.0], [0.9, 12.0], [0.7, 5.0], [float("nan"), 1.0], [0.9, 10.0]]
    front = objectives.pareto_front(points, ["maximize", "minimize"])
    assert front == [0, 1, 5]  # ties both stay; nan is on no front
    metrics = {"best_eval_f1": 0.5, "train_seconds": 3.0, "parameters": {"trainable": 7}}
    names = ["f1", "trainable_parameters", "train_seconds", "latency_ms"]
    assert objectives.values_of(metrics, names, "f1") == [0.5, 7.0, 3.0, None]


def test_a_study_of_the_metric_alone_keeps_its_name():
    """Adding `objectives` to the study's fingerprint leaves every earlier study's name as it
    was (null), so the same command still resumes it; with objectives it is a new study."""
    from src.config.compose import study_name

    args = ({"name": "movie_reviews"}, "task", "backbone", "model", {"lr": "interval(1, 2)"})
    # the name study_name gave these before objectives existed (at 232da1e)
    assert study_name(*args) == study_name(*args, None) == "movie_reviews-396f870a"
    assert study_name(*args, ["f1", "train_seconds"]) != study_name(*args)


def test_a_trial_of_several_objectives_reports_no_epoch():
    """Optuna's Trial.report refuses several objectives: the job does not call it (its
    storage is never opened, here a URL that could not be)."""
    sweeper = {"trial": 3, "storage": "postgresql://nowhere:1/db", "study_name": "s"}
    trial = study.JobTrial.of({**sweeper, "objectives": ["f1", "latency_ms"]})
    assert trial.number == 3 and trial.should_prune(1, 0.5) is False
    assert study.JobTrial.of({**sweeper, "objectives": ["f1"]}).reports


def test_a_study_without_the_presets_params_dry_runs_and_tables_its_objectives(capsys):
    """`~hydra.sweeper.params` (the command line's sweeps are the whole space; it was a
    traceback, twice: the study's name and the preview read the params it removed), and a
    study of several objectives says which way each goes."""
    from src.sweeps import preview

    argv = [
        "hparams_search=optuna",
        "debug=smoke",
        "~hydra.sweeper.params",
        "max_length=choice(64,128)",
        "hydra.sweeper.objectives=[f1,latency_ms]",
    ]
    assert preview.main(argv) == 0
    out = capsys.readouterr().out
    assert "maximize the best eval f1, minimize latency_ms\n" in out
    assert "search space:\n  max_length: choice(64,128) -> 64, 128\nsampler" in out


def test_a_grids_last_point_is_told_without_failing_the_study():
    """GridSampler stops the study after its last point, which raises under ask-and-tell
    (optuna#5141): the study's command failed at the end of every grid. The point is recorded,
    the grid is done, and nothing else is raised."""
    found = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1, 2]}))
    x = optuna.distributions.CategoricalDistribution([1, 2])
    for _ in range(2):
        trial = found.ask({"x": x})
        study.told(found, trial, float(trial.params["x"]))
    assert [t.state.name for t in found.trials] == ["COMPLETE", "COMPLETE"]
    assert found.sampler.is_exhausted(found)
    plain = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1]}))
    last = plain.ask({"x": optuna.distributions.CategoricalDistribution([1])})
    with pytest.raises(RuntimeError, match="Study.stop"):  # what study.tell alone does
        plain.tell(last, 1.0)

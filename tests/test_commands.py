"""Every `python -m src.<command>` turns a user's mistake into one line on stderr and exit 2
through one function (src.config.errors.reported): a bad device, an output that cannot be written, a
folder that is missing or of the wrong kind, an option that does not exist. Each row runs the
command's own entry in-process (its `main` through `run_command`, or the Hydra callback its
`python -m` runs before writing anything); one process per Hydra app shows the wiring. Hydra's
own flags work with every preset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from src import compare, export, predict, review, spec, summarize
from src.config.compose import compose
from src.outputs.callbacks import CheckConfig, CheckOutputDir
from tests.conftest import IMPORTTIME, command_exit, imported, run_cli


@pytest.fixture(scope="module")
def kinds(trained_runs, tmp_path_factory) -> dict[str, Path]:
    """A finished run, a sweep holding a copy of it as its job, an ONNX export of it, an input
    file, a plain file, and a folder nothing wrote."""
    root = tmp_path_factory.mktemp("commands")
    run = trained_runs["hf_head"]
    job = Path(shutil.copytree(run, root / "sweep" / "0_seed=1"))
    (job / ".hydra").mkdir(exist_ok=True)
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (root / "sweep" / "multirun.yaml").write_text("hydra: {}\n")
    assert export.main([f"run_dir={run}", f"out={root / 'export'}"]) == 0
    (root / "in.csv").write_text("text\nA fine film.\n")
    (root / "a_file").write_text("")
    (root / "empty").mkdir()
    return {
        "run": run,
        "sweep": root / "sweep",
        "export": root / "export",
        "input": root / "in.csv",
        "file": root / "a_file",
        "empty": root / "empty",
    }


# (command, argv with {run} {sweep} ... filled in, the line it starts with)
PLAIN = [
    (
        "predict",
        "run_dir={run} text=hi device=gpu",
        "device=gpu: one of auto, cpu, cuda, mps (cuda:N for one GPU)",
    ),
    ("predict", "run_dir={run} text=hi device=cuda:7", "device=cuda:7: no CUDA device here"),
    (
        "predict",
        "run_dir={run} input={input} output=/sys/p.csv",
        "output=/sys/p.csv: no file can be written in /sys",
    ),
    (
        "predict",
        "run_dir={run} input={input} output={file}/p.csv",
        "output={file}/p.csv: {file} is a file, not a folder",
    ),
    ("predict", "run_dir={empty}/nope text=hi", "run_dir={empty}/nope: no such folder"),
    ("predict", "run_dir={sweep} text=hi", "run_dir={sweep}: a sweep or study folder of 1 jobs"),
    (
        "predict",
        "run_dir={empty} text=hi",
        "run_dir={empty}: not a folder any command of this project wrote",
    ),
    ("predict", "run_dir={run} text=hi colour=red", "colour=red: expected key=value"),
    ("export", "run_dir={run} out=/sys/x", "out=/sys/x: no file can be written in /sys"),
    (
        "export",
        "run_dir={export}",
        "run_dir={export}: already an ONNX export; export from the trained model: run_dir={run}",
    ),
    ("export", "run_dir={sweep}", "run_dir={sweep}: a sweep or study folder"),
    ("export", "run_dir={empty}/nope", "run_dir={empty}/nope: no such folder"),
    ("export", "run_dir={run} colour=red", "colour=red: expected key=value"),
    (
        "compare",
        "{run} {export}",
        "{export}: an ONNX export of `{run}`, which has no test "
        "metrics of its own; score it with `python -m src.evaluate run_dir={export}`",
    ),
    ("compare", "{run} {empty}/nope", "{empty}/nope: no such folder"),
    ("compare", "{run} {sweep}", "{sweep}: a sweep or study folder of 1 jobs"),
    ("compare", "{run}", "python -m src.compare: give two or more run folders"),
    ("compare", "{run} {run} --colour", "python -m src.compare: unrecognized arguments: --colour"),
    ("summarize", "{run}", "{run}: a training run, not a sweep"),
    ("summarize", "{empty}/nope", "{empty}/nope: no such folder"),
    ("summarize", "{sweep} --colour", "python -m src.summarize: unrecognized arguments"),
    ("review", "HEAD --runs {run} {empty}/nope", "{empty}/nope: no such folder"),
    (
        "review",
        "HEAD --runs {sweep} {run}",
        "--runs {sweep} {run}: {sweep} is a sweep and {run} is not",
    ),
    ("review", "HEAD --colour", "python -m src.review: unrecognized arguments: --colour"),
    ("spec", "trainers", "src.spec: no group 'trainers'; did you mean trainer?"),
]
MAINS = {
    "predict": predict.main,
    "export": export.main,
    "compare": compare.main,
    "summarize": summarize.main,
    "review": review.main,
    "spec": spec.main,
}


@pytest.mark.parametrize(("command", "argv", "line"), PLAIN, ids=[f"{c}: {a}" for c, a, _ in PLAIN])
def test_a_mistake_is_one_line_and_exit_2(kinds, command, argv, line, capsys):
    words = [w.format(**kinds) for w in argv.split()]
    code, err = command_exit(MAINS[command], *words, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: " + line.format(**kinds)), err
    assert not Path("/sys/p.csv").exists()


# the Hydra apps: (app, overrides, the line), checked by the callbacks `python -m` runs first
HYDRA = [
    ("evaluate", "run_dir={run} device=gpu", "device=gpu: one of auto, cpu, cuda, mps"),
    (
        "evaluate",
        "run_dir={run} hydra.run.dir=/sys/x",
        "hydra.run.dir=/sys/x: /sys/x cannot be created",
    ),
    ("evaluate", "run_dir={empty}/nope", "run_dir={empty}/nope: no such folder"),
    ("evaluate", "run_dir={sweep}", "run_dir={sweep}: a sweep or study folder of 1 jobs"),
    ("evaluate", "run_dir={file}", "run_dir={file}: a file; give the folder a command wrote"),
    ("config", "debug=smoke device=gpu", "device=gpu: one of auto, cpu, cuda, mps"),
    (
        "config",
        "debug=smoke hydra.run.dir=/sys/x",
        "hydra.run.dir=/sys/x: /sys/x cannot be created",
    ),
    ("config", "debug=smoke resume={empty}/nope", "resume={empty}/nope: no such checkpoint"),
    ("config", "debug=smoke hydra.job.chdir=true", "hydra.job.chdir=true: this project's"),
    ("evaluate", "run_dir={run} hydra.job.chdir=true", "hydra.job.chdir=true: this project's"),
    ("config", "debug=smoke hydra.output_subdir=null", "hydra.output_subdir=null: a run's"),
    ("evaluate", "run_dir={run} hydra.run.dir={run}", "hydra.run.dir={run}: holds a training"),
    ("evaluate", "run_dir={run} dataset.split_seed=7", "dataset.split_seed=7: the run {run} drew"),
    ("evaluate", "run_dir={run} ~dataset", "dataset=null: an option of conf/dataset/"),
]


@pytest.mark.parametrize(("app", "argv", "line"), HYDRA, ids=[f"{a}: {v}" for a, v, _ in HYDRA])
def test_a_hydra_apps_mistake_is_one_line_before_its_folder(
    kinds, app, argv, line, capsys, tmp_path
):
    words = [w.format(**kinds) for w in argv.split()]
    run_dir = (
        []
        if any(w.startswith("hydra.run.dir") for w in words)
        else [f"hydra.run.dir={tmp_path / 'out'}"]
    )
    cfg = compose([*words, *run_dir], hydra=True, config_name=app)
    callbacks = {"evaluate": "src.evaluate.check", "config": "src.sweeps.job.check"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        CheckConfig(callbacks[app]).on_run_start(cfg)
        CheckOutputDir().on_run_start(cfg)  # as Hydra calls them: in conf/<app>.yaml's order
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: " + line.format(**kinds)), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("words", "line"),
    [
        (["debug=smoke"], "debug=smoke: conf/evaluate.yaml takes no debug group"),
        (["+debug=smoke"], "+debug=smoke: conf/evaluate.yaml takes no debug group"),
        (["model=hf_head"], "model=hf_head: conf/evaluate.yaml takes no model group"),
        (["colour=red"], "colour=red: no top-level key colour"),
    ],
)
def test_evaluate_takes_only_its_own_groups_and_keys(words, line):
    from src.config import preflight
    from src.config.errors import UserError

    with pytest.raises(UserError, match="^" + line.replace("+", r"\+")):
        preflight.check(["run_dir=x", *words], config_name="evaluate")


def test_evaluate_help_lists_only_what_it_takes():
    proc = run_cli("--help", module="src.evaluate", timeout=60)
    assert proc.returncode == 0 and "dataset: files, hf, movie_reviews" in proc.stdout
    for group in ("backbone:", "debug:", "model:", "task:", "declared:"):
        assert group not in proc.stdout


@pytest.mark.processes
def test_the_processes_say_it_in_one_line_and_leave_no_folder(kinds, tmp_path):
    """Through Hydra itself: an evaluation of a sweep job typed as shown (its `=` and `,`),
    and a run whose backbone is not in the cache offline: one line, no folder."""
    job = kinds["sweep"] / "0_seed=1"
    proc = run_cli(
        f"run_dir={job}",
        f"hydra.run.dir={tmp_path / 'e'}",
        "batch_size=0",
        module="src.evaluate",
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr == "error: batch_size=0: an integer >= 1\n"
    proc = run_cli(
        f"run_dir={job}", f"hydra.run.dir={tmp_path / 'e'}", module="src.evaluate", timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n_test"] == 32
    # mistakes found in the data once Hydra made the folder: one line, and the folder gone
    data = tmp_path / "one_each.csv"
    data.write_text("text,label\nx,a\ny,b\nz,b\n")
    for module, words, line in (
        ("src.evaluate", [f"run_dir={job}", f"dataset.test_file={data}"], "labels ['a', 'b']"),
        ("src.run", ["debug=smoke", f"dataset.train_file={data}"], "cannot split the data"),
    ):
        words.insert(1, "dataset=files")
        proc = run_cli(*words, f"hydra.run.dir={tmp_path / 'half'}", module=module)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
        assert line in proc.stderr and not (tmp_path / "half").exists()
    proc = run_cli(
        "debug=smoke",
        "backbone.path=nobody/no-such-model",
        "backbone.init=pretrained",
        f"hydra.run.dir={tmp_path / 'r'}",
        env={"HF_HUB_OFFLINE": "1", **IMPORTTIME},
        timeout=120,
    )
    roots, err = imported(proc)
    assert proc.returncode == 2 and err.count("\n") == 1, err[-2000:]
    assert err.startswith("error: backbone.path=nobody/no-such-model: not in the local HF cache")
    assert not (tmp_path / "r").exists()
    assert not roots & {"torch", "transformers", "nltk"}  # huggingface_hub alone looked


# --- Hydra's own flags, with every preset -----------------------------------------------------

PRESETS = [
    "",
    "experiment=cpu_quickstart",
    "experiment=seed_notebook",
    "experiment=seed_notebook_manual",
    "debug=smoke",
    "debug=overfit",
    "hparams_search=optuna",
]


@pytest.mark.parametrize("preset", PRESETS, ids=[p or "default" for p in PRESETS])
def test_hydras_flags_print_the_config_of_every_preset(preset):
    """`--cfg job --resolve` and `-c hydra -p hydra.sweeper --resolve`: what Hydra documents, each
    preset, through `python -m src.run` (a study's preflight once read `job` as an override)."""
    words = [preset] if preset else []
    job = run_cli(*words, "--cfg", "job", "--resolve", timeout=60)
    assert job.returncode == 0 and "Traceback" not in job.stderr, job.stderr[-2000:]
    assert "trainer:" in job.stdout and "${" not in job.stdout
    sweeper = run_cli(*words, "-c", "hydra", "-p", "hydra.sweeper", "--resolve", timeout=60)
    assert sweeper.returncode == 0, sweeper.stderr[-2000:]
    assert sweeper.stdout.startswith("# @package hydra.sweeper") and "${" not in sweeper.stdout
    assert ("OptunaSweeper" in sweeper.stdout) == (preset == "hparams_search=optuna")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--info", "defaults"], "Defaults List"),
        (["--help"], "== Groups (group=option) =="),
        (["--hydra-help"], "Hydra (1."),
        (["-m", "--dry-run"], "Optuna study "),
    ],
)
def test_hydras_flags_with_a_study(flags, expected):
    proc = run_cli("hparams_search=optuna", *flags, timeout=60)
    assert proc.returncode == 0 and expected in proc.stdout, proc.stderr[-2000:]


def test_our_reading_of_the_command_line_knows_every_flag_hydra_lists():
    """src.config.cli reads Hydra's flags apart from the overrides: the flags it knows are the
    ones Hydra's own help lists (a new one in a Hydra release fails here)."""
    import re

    from src.config.cli import HYDRA_FLAGS

    proc = run_cli("--hydra-help", timeout=60)
    listed = {
        name
        for line in proc.stdout.splitlines()
        if (m := re.match(r"^(--[a-z-]+(?:,-[a-z]+)?) :", line))
        for name in m.group(1).split(",")
    }
    assert listed and listed == {name for names, _ in HYDRA_FLAGS for name in names}


def test_two_of_hydras_modes_at_once_is_one_line():
    proc = run_cli("hparams_search=optuna", "-m", "--cfg", "job", timeout=60)
    assert proc.returncode == 2 and proc.stderr == (
        "error: --multirun --cfg: Hydra takes one of --run, --multirun, --cfg, --info and "
        "--shell-completion; the jobs a sweep would run: -m ... --dry-run\n"
    )

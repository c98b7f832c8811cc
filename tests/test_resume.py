"""Checkpoints, exact resume after SIGKILL, preemption by SIGTERM, Ctrl-C, damaged checkpoints.

A signal is sent to a real `python -m src.run` process; what needs no process (the reference
run, a resume, a refused checkpoint) runs in-process through `src.run.train`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from src.config.compose import compose
from src.config.errors import UserError
from src.config.rundir import further
from src.run import train
from tests.conftest import first_error, run_cli, start_cli

# custom_head keeps dropout active, so an exact resume needs the RNG state back too
RUN = [
    "debug=smoke",
    "model=custom_head",
    "trainer=manual",
    "epochs=2",
    "dataset.max_train_samples=160",
    "trainer.save_steps=5",
]


def resolved(cfg) -> dict:
    """A composed config as src.config.rundir takes it: resolved, plain."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _start(run_dir: Path, *extra: str):
    return start_cli(*RUN, *extra, f"hydra.run.dir={run_dir}")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path.name}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < end, f"no {path} after {timeout}s"
        time.sleep(0.01)


def _results(run_dir: Path) -> tuple[dict, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    keep = {k: metrics[k] for k in ("test", "history", "train_log", "best_epoch", "best_eval_f1")}
    return keep, load_file(str(run_dir / "best_model" / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, dict]:
    run_dir = tmp_path_factory.mktemp("full")
    train(compose(RUN), run_dir)
    return _results(run_dir)


def _assert_same(run_dir: Path, uninterrupted: tuple[dict, dict]) -> None:
    metrics, weights = _results(run_dir)
    assert metrics == uninterrupted[0]  # exact: same floats, same history, same best epoch
    assert weights.keys() == uninterrupted[1].keys()
    for name, tensor in weights.items():
        assert tensor.equal(uninterrupted[1][name]), name


def _next_checkpoint(run_dir: Path) -> Path:
    """The first `save_steps` checkpoint past the newest one there (step-0000005 at first)."""
    steps = [int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*")]
    return run_dir / "checkpoints" / f"step-{(max(steps, default=0) // 5 + 1) * 5:07d}"


def _stop(proc: subprocess.Popen, signum: int, code: int, status: str, run_dir: Path) -> str:
    """SIGTERM (SLURM's warning) or Ctrl-C: the run stops at its next step with a checkpoint,
    one line, the exit code a wrapper or a shell expects (75: requeue; 130: interrupted), and
    the status recorded. Returns the line."""
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    assert json.loads((run_dir / "status.json").read_text())["status"] == status
    assert not (run_dir / "metrics.json").exists()
    return last


@pytest.mark.processes
def test_every_kind_of_stop_resumes_to_exactly_the_uninterrupted_run(tmp_path, uninterrupted):
    """One run stopped three times, each resumed by the same command with resume=auto: SIGKILL
    mid-epoch (nothing saved but the periodic checkpoint: status stays `running`), then
    SIGTERM, then Ctrl-C; the last resume ends on the uninterrupted run's floats, history and
    weights."""
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    _wait_for(run_dir / "checkpoints" / "step-0000005", proc)  # 5 of 20 steps of epoch 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"

    for signum, code, status in (
        (signal.SIGTERM, 75, "preempted"),
        (signal.SIGINT, 130, "interrupted"),
    ):
        proc = _start(run_dir, "resume=auto")
        _wait_for(_next_checkpoint(run_dir), proc)  # this process's own, past the last stop
        last = _stop(proc, signum, code, status, run_dir)
        assert last.startswith(f"{status}: saved ")
        assert last.endswith("rerun with resume=auto to continue")
    log = (run_dir / "run.log").read_text()
    assert "resumed from" in log and "epoch 1, batch" in log  # the SIGKILL's: mid-epoch

    resumed = run_cli(*RUN, "resume=auto", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["start"] == "resumed"
    _assert_same(run_dir, uninterrupted)


def test_hf_trainer_resumes_from_its_checkpoint(tmp_path):
    """A finished run trained further: its checkpoints must be kept (keep_checkpoints)."""
    run_dir = tmp_path / "run"
    args = ["debug=smoke", "trainer=hf", "epochs=2", "trainer.keep_checkpoints=true"]
    train(compose(args), run_dir)
    first = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").unlink()
    train(compose([*args, "epochs=3", "resume=auto"]), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3]
    assert metrics["history"][:2] == first["history"]


def test_half_written_checkpoint_is_never_picked_up(tmp_path):
    from src.trainers.checkpoint import latest

    (tmp_path / "step-0000005").mkdir()
    (tmp_path / ".tmp-step-0000010-123").mkdir()
    assert latest(tmp_path).name == "step-0000005"


def test_checkpoints_rotate_and_a_truncated_or_foreign_one_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    train(
        compose(
            [
                "debug=smoke",
                "model=custom_head",
                "trainer=manual",
                "epochs=4",
                "trainer.save_total_limit=2",
                "trainer.keep_checkpoints=true",
            ]
        ),
        run_dir,
    )
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    assert names == ["step-0000018", "step-0000024"]  # save_total_limit=2: the newest two
    ckpt = run_dir / "checkpoints" / names[0]

    other = compose(["debug=smoke", "model=hf_head", "trainer=manual", f"resume={ckpt}"])
    with pytest.raises(UserError, match=re.escape(f"checkpoint {ckpt} was saved from a differ")):
        train(other, tmp_path / "other")

    state = ckpt / "state.pt"
    state.write_bytes(state.read_bytes()[: os.path.getsize(state) // 2])
    truncated = run_cli(
        "debug=smoke",
        "model=custom_head",
        "trainer=manual",
        f"resume={ckpt}",
        f"hydra.run.dir={tmp_path}/again",
    )
    assert truncated.returncode == 2 and "truncated or corrupt" in truncated.stderr
    assert "Traceback" not in truncated.stderr
    assert not (tmp_path / "again").exists()  # a run that never trained leaves no folder


def test_resume_auto_on_a_finished_run_skips_continues_or_refuses(trained, tmp_path):
    """The same config: skipped. Only epochs grew: trained further from the kept checkpoint.
    Anything else changed, or no checkpoint kept: one line naming what changed."""

    args = ["debug=smoke", "trainer=hf", "epochs=1", "resume=auto"]
    kept = tmp_path / "kept"
    train(compose([*args, "trainer.keep_checkpoints=true"]), kept)
    assert further(kept, resolved(compose([*args, "trainer.keep_checkpoints=true"]))) is False
    grown = resolved(compose([*args, "trainer.keep_checkpoints=true", "epochs=2"]))
    assert further(kept, grown) is True
    with pytest.raises(
        UserError,
        match=r"^resume=auto: .* finished with another config "
        r"\(lr: 0.001 -> 0.002, optimizer.lr: 0.001 -> 0.002\)",
    ):
        further(kept, resolved(compose([*args, "trainer.keep_checkpoints=true", "lr=2e-3"])))
    plain = trained(*args[:-1])  # keep_checkpoints=false: its checkpoints were deleted
    with pytest.raises(
        UserError,
        match=r"kept no checkpoint to train further from \(epochs: "
        r"1 -> 2, trainer.epochs: 1 -> 2\)",
    ):
        further(plain, resolved(compose([*args, "epochs=2"])))


@pytest.mark.parametrize("trainer", ["manual", "hf"])
def test_a_run_trained_further_counts_all_its_epochs_under_both_trainers(
    trainer, trained, tmp_path
):
    """epochs=1 then epochs=2 with resume=auto: metrics.json's train_samples and train_seconds
    cover both epochs under either trainer (the Trainer counted only the second attempt's,
    so one run's samples/s meant another thing under each trainer)."""
    import shutil

    args = ["debug=smoke", f"trainer={trainer}", "trainer.keep_checkpoints=true"]
    run = Path(shutil.copytree(trained(*args, "epochs=1"), tmp_path / "run"))
    first = json.loads((run / "metrics.json").read_text())
    train(compose([*args, "epochs=2", "resume=auto"]), run)
    grown = json.loads((run / "metrics.json").read_text())
    assert grown["resumed_from"] and len(grown["history"]) == 2
    assert first["train_samples"] == grown["n_train"]
    assert grown["train_samples"] == 2 * grown["n_train"]
    assert grown["train_seconds"] > first["train_seconds"]


@pytest.mark.parametrize("trainer", ["manual", "hf"])
def test_a_stopped_run_resumes_only_with_the_config_it_started_with(trainer, trained, tmp_path):
    """resume=auto on a run stopped at a checkpoint, with lr (or seed, batch_size, the data)
    changed, trained on with the old optimizer and schedule while config_resolved.yaml and
    report.md said the new, exit 0: one line naming the keys. The same config resumes; so
    does another device."""
    import shutil

    from src.config.rundir import plan, write_status

    args = ["debug=smoke", f"trainer={trainer}", "trainer.keep_checkpoints=true", "resume=auto"]
    run = Path(shutil.copytree(trained(*args[:-1]), tmp_path / "run"))
    (run / "metrics.json").unlink()  # stopped: a checkpoint, no results
    write_status(run, "interrupted", "interrupted: saved a checkpoint")
    assert plan(run, resolved(compose(args))) == "train"
    assert plan(run, resolved(compose([*args, "device=cpu"]))) == "train"
    with pytest.raises(UserError) as refused:
        plan(run, resolved(compose([*args, "lr=5e-3", "seed=7"])))
    assert str(refused.value).startswith(
        f"resume=auto: {run} stopped at a checkpoint of another config (lr: 0.001 -> 0.005, "
        "optimizer.lr: 0.001 -> 0.005, seed: 42 -> 7, trainer.seed: 42 -> 7); resume it with"
    )


def test_keeping_one_checkpoint_under_the_trainer_is_one_line():
    """transformers' Trainer with save_total_limit=1 keeps the best epoch's checkpoint at the
    end, not the last: a run kept to be trained further went on from epoch 1 of 2, retraining
    epoch 2 (exit 0). With keep_checkpoints that is one line; without, the limit is the
    Trainer's own; the manual loop keeps its newest (it rotates its own)."""
    keep = ("debug=smoke", "trainer.keep_checkpoints=true", "trainer.save_total_limit=1")
    assert first_error(*keep, "trainer=hf").startswith(
        "error: trainer.save_total_limit=1: transformers' Trainer keeps only the best epoch's"
    )
    assert first_error(*keep, "trainer=manual") == ""
    assert first_error("debug=smoke", "trainer=hf", "trainer.save_total_limit=1") == ""


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("trainer", ["manual", "hf"])
def test_fewer_epochs_with_resume_auto_is_refused_and_the_folder_kept(trainer, trained, tmp_path):
    """Only growth goes on: epochs=2 -> 1 (or min_steps down) with resume=auto would train
    nothing and relabel a 2-epoch run as 1. One line naming the key, exit 2, and every file of
    the folder as it was: Hydra's own .hydra/ record too (the check runs before Hydra writes)."""
    import shutil

    from src.config.rundir import write_status

    args = ["debug=smoke", f"trainer={trainer}", "trainer.keep_checkpoints=true"]
    run = trained(*args, "epochs=2")
    with pytest.raises(
        UserError,
        match=r"^resume=auto: .* finished with epochs=2; epochs=1 "
        r"would train nothing and only relabel its results; give epochs > 2",
    ):
        further(run, resolved(compose([*args, "epochs=1", "resume=auto"])))
    assert further(run, resolved(compose([*args, "epochs=3", "resume=auto"]))) is True
    if trainer == "hf":
        return  # the process: once
    folder = Path(shutil.copytree(run, tmp_path / "run"))
    write_status(folder, "finished", start="fresh")  # as src.run's main records a run it ran
    before = _files(folder)
    proc = run_cli(*args, "epochs=1", "resume=auto", f"hydra.run.dir={folder}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: resume=auto: ") and proc.stderr.count("\n") == 1
    assert _files(folder) == before


def test_a_key_the_record_lacks_is_no_change(trained, tmp_path):
    """A run recorded by an earlier version of the code (a key it did not have) still counts
    as the same config for resume=auto."""
    import shutil

    import yaml

    args = ["debug=smoke", "trainer=hf", "epochs=1"]
    run = Path(shutil.copytree(trained(*args), tmp_path / "run"))
    record = yaml.safe_load((run / "config_resolved.yaml").read_text())
    del record["backbone"]["lr"]  # a key added since
    (run / "config_resolved.yaml").write_text(yaml.safe_dump(record))
    assert further(run, resolved(compose([*args, "resume=auto"]))) is False


def test_a_resume_folder_without_a_checkpoint_is_one_line_before_anything_loads(tmp_path):
    """A finished run, a sweep, an evaluation or a model folder holds no resume checkpoint:
    refused by validation (2.6 s by the CLI, was 15 s once the data and model were built);
    a run folder with one of either loop's, or the checkpoint itself, goes on to the trainer's
    own finder."""
    empty, manual, hf = (tmp_path / name for name in ("finished", "manual", "hf"))
    (empty / "checkpoints" / ".tmp-step-0000005-77").mkdir(parents=True)  # half-written only
    (manual / "checkpoints" / "step-0000005").mkdir(parents=True)
    (hf / "checkpoints" / "checkpoint-12").mkdir(parents=True)
    error = first_error("debug=smoke", f"resume={empty}")
    assert error.startswith(f"error: resume={empty}: no complete checkpoint there"), error
    for ok in (manual, hf, hf / "checkpoints" / "checkpoint-12"):
        assert first_error("debug=smoke", f"resume={ok}") == "", ok

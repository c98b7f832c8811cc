"""Trainer behaviour through the public surface: train(cfg, run_dir), the files a run writes,
the CLI, `python -m src.predict` and transformers' pipeline().

Gradient accumulation (exact weights, step counts under both trainers), a 3-class dataset end
to end, early stopping in the manual loop, every optimizer and scheduler option, a validation
split carved from train, and SIGTERM under trainer=hf.
"""

from __future__ import annotations

import csv
import json
import math
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from src.config.compose import CONF
from src.run import train
from tests.conftest import PAIRS, run_cli, start_cli

TRAINERS = ["manual", "hf"]
NO_DROPOUT = [
    "dropout=0.0",
    "backbone.hidden_dropout=0.0",
    "backbone.attention_dropout=0.0",
]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _options(group: str) -> list[str]:
    """Every option of a config group, found on disk: a new YAML file is covered by itself."""
    found = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert found, f"no options in conf/{group}"
    return found


# --- gradient accumulation ------------------------------------------------------------------


def test_manual_grad_accumulation_matches_the_big_batch(compose_cfg, tmp_path):
    """batch 4 x 2 accumulation steps trains the same weights as batch 8 in one step.

    Conditions that make the two exactly comparable: no dropout anywhere (so no RNG draws
    differ); 96 examples, divisible by 8, so every micro-batch holds 4 (a micro-batch's mean
    loss / 2 equals the big batch's mean only then); custom_head with mean pooling over the
    attention mask, which is invariant to each batch's own padding; one epoch, so best_model
    holds the final weights. SGD without clipping, because Adam divides by the gradient's own
    scale and would hide a loss that is not divided by grad_accum_steps; here such a bug would
    double every update. Tolerance atol=1e-5 (measured: ~1e-6, float summation order).
    """
    from safetensors.torch import load_file

    base = [
        "debug=smoke",
        "model=custom_head",
        "trainer=manual",
        *NO_DROPOUT,
        "epochs=1",
        "dataset.max_train_samples=96",
        "optimizer=sgd",
        "lr=0.01",
        "trainer.max_grad_norm=null",
    ]
    train(compose_cfg(*base, "batch_size=8", "trainer.grad_accum_steps=1"), tmp_path / "big")
    train(compose_cfg(*base, "batch_size=4", "trainer.grad_accum_steps=2"), tmp_path / "accum")

    big, accum = _metrics(tmp_path / "big"), _metrics(tmp_path / "accum")
    assert big["history"][-1]["step"] == accum["history"][-1]["step"] == 96 // 8
    # the epoch's mean training loss: 24 half-batches average to the same as 12 batches
    assert accum["history"][0]["train_loss"] == pytest.approx(
        big["history"][0]["train_loss"], abs=1e-5
    )
    a = load_file(str(tmp_path / "big" / "best_model" / "model.safetensors"))
    b = load_file(str(tmp_path / "accum" / "best_model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        diff = (a[name] - b[name]).abs().max().item()
        assert diff <= 1e-5, f"{name}: max |big - accumulated| = {diff:.3g}"


@pytest.mark.parametrize("trainer", TRAINERS)
def test_optimizer_steps_with_accumulation(compose_cfg, tmp_path, trainer):
    """48 examples / batch 4 = 12 batches an epoch; 3 per optimizer step = 4 steps an epoch;
    2 epochs = 8 steps, the same count under both trainers."""
    cfg = compose_cfg(
        "debug=smoke",
        f"trainer={trainer}",
        "dataset.max_train_samples=48",
        "batch_size=4",
        "trainer.grad_accum_steps=3",
        "epochs=2",
        "trainer.logging_steps=1",
    )
    train(cfg, tmp_path)
    metrics = _metrics(tmp_path)
    assert [(r["epoch"], r["step"]) for r in metrics["history"]] == [(1, 4), (2, 8)]
    assert [e["step"] for e in metrics["train_log"]] == list(range(1, 9))


# --- a 3-class dataset ----------------------------------------------------------------------

WORDS = {
    "a": ["sunny", "bright", "warm", "beach", "summer"],
    "b": ["rain", "storm", "cloud", "wet", "umbrella"],
    "c": ["snow", "ice", "cold", "frost", "winter"],
}
FILLER = ["the", "day", "was", "quite", "very", "and", "with", "some", "today"]


LABELS = "aaaaabbbcc"  # 50% a, 30% b, 20% c: uneven, so macro, weighted and micro averages differ


def _write_dataset(path: Path, n_rows: int, seed: int = 0) -> Path:
    """A CSV of `n_rows` texts whose label (a, b or c) shows in its words."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(n_rows):
            label = LABELS[i % len(LABELS)]
            words = rng.sample(WORDS[label], 3) + rng.sample(FILLER, 4)
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])
    return path


@pytest.mark.parametrize(
    ("trainer", "model"),
    [("manual", "custom_head"), ("manual", "hf_head"), ("hf", "custom_head"), ("hf", "hf_head")],
)
def test_three_classes_end_to_end(compose_cfg, tmp_path, capsys, trainer, model):
    """debug=smoke's one epoch at lr 1e-3 leaves the tiny model far from perfect, so its test
    predictions tell a macro average from the weighted and micro ones (a perfect model would
    score 1.0 under every average)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    data_file = _write_dataset(tmp_path / "weather.csv", 90)
    run_dir = tmp_path / "run"
    cfg = compose_cfg(
        "debug=smoke",
        "dataset=files",
        f"dataset.train_file={data_file}",
        f"trainer={trainer}",
        f"model={model}",
    )
    train(cfg, run_dir)

    metrics = _metrics(run_dir)
    assert metrics["label_names"] == ["a", "b", "c"]
    assert (metrics["n_train"], metrics["n_test"]) == (48, 18)  # 72/18 split, train capped
    rows = list(csv.DictReader((run_dir / "test_predictions.csv").open(encoding="utf-8")))
    assert len(rows) == 18 and {r["label"] for r in rows} == {"a", "b", "c"}
    for r in rows:
        probs = [float(r[f"p_{n}"]) for n in "abc"]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert r["prediction"] == "abc"[probs.index(max(probs))]
    labels, preds = [r["label"] for r in rows], [r["prediction"] for r in rows]
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, labels=["a", "b", "c"], average="macro", zero_division=0
    )
    test = metrics["test"]
    assert test["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert test["precision"] == pytest.approx(precision)
    assert test["recall"] == pytest.approx(recall)
    assert test["f1"] == pytest.approx(f1)
    # the check above has teeth: these predictions score differently under other averages
    for average in ("weighted", "micro"):
        other = f1_score(labels, preds, labels=["a", "b", "c"], average=average, zero_division=0)
        assert other != pytest.approx(f1), f"{average} = macro here; the check cannot tell"

    from src import predict

    capsys.readouterr()
    predict.main([f"run_dir={run_dir}", "text=snow and ice, cold"])  # its CLI: test_predict
    label_line, probs_line = capsys.readouterr().out.strip().splitlines()[-2:]
    assert label_line.removeprefix("label: ") in {"a", "b", "c"}
    probs = dict(p.split("=") for p in probs_line.removeprefix("probabilities: ").split())
    assert sorted(probs) == ["a", "b", "c"]

    if model == "hf_head":
        from transformers import pipeline

        classify = pipeline("text-classification", model=str(run_dir / "best_model"), device="cpu")
        scores = classify(["warm sunny beach", "snow and frost"], top_k=None)
        assert all(sorted(s["label"] for s in per_text) == ["a", "b", "c"] for per_text in scores)


# --- early stopping -------------------------------------------------------------------------


def test_manual_early_stopping(compose_cfg, tmp_path):
    """lr 1e-9 cannot move the metric: epoch 1 is the best, epoch 2 does not beat it, and a
    patience of 1 stops the run there instead of running all 4 epochs."""
    cfg = compose_cfg(
        "debug=smoke", "trainer=manual", "epochs=4", "lr=1e-9", "trainer.early_stopping_patience=1"
    )
    train(cfg, tmp_path)
    metrics = _metrics(tmp_path)
    assert metrics["stopped_early"] is True
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert metrics["best_epoch"] == 1


# --- every optimizer and scheduler option ---------------------------------------------------


@pytest.mark.parametrize("optimizer", _options("optimizer"))
def test_every_optimizer_steps(compose_cfg, tmp_path, optimizer):
    """debug=overfit trains on the same 8 reviews every step with a constant lr: a loss that
    falls from the first step to the last shows the optimizer really updates the weights."""
    epochs = 6  # one optimizer step per epoch
    cfg = compose_cfg(
        "debug=overfit", "trainer=manual", f"optimizer={optimizer}", f"epochs={epochs}"
    )
    assert cfg.scheduler.name == "constant" and cfg.scheduler.warmup_ratio == 0
    train(cfg, tmp_path)
    log = _metrics(tmp_path)["train_log"]
    assert [e["step"] for e in log] == list(range(1, epochs + 1))
    assert all(e["lr"] == pytest.approx(cfg.lr, rel=1e-9) for e in log)
    assert all(math.isfinite(e["loss"]) for e in log)
    assert log[-1]["loss"] < log[0]["loss"], [e["loss"] for e in log]


def _expected_lr(name: str, peak: float, step: int, warmup: int, total: int) -> float:
    """The lr after `step` scheduler steps: linear warmup to `peak` over `warmup` steps, then
    the schedule's own shape, reaching 0 at `total` for the decaying ones."""
    if step < warmup:
        return peak * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if name == "constant":
        return peak
    if name == "linear":
        return peak * max(0.0, 1.0 - progress)
    if name == "cosine":
        return peak * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    pytest.fail(f"scheduler name={name}: add its lr shape to _expected_lr")


@pytest.mark.parametrize("scheduler", _options("scheduler"))
def test_every_scheduler_shapes_the_lr(compose_cfg, tmp_path, scheduler):
    """2 epochs x 6 steps, logged every step: the lr each step used (transformers' convention:
    the rate after step - 1 scheduler steps) follows the schedule, and the rate after the last
    step (final_lr) completes it."""
    cfg = compose_cfg(
        "debug=smoke",
        "trainer=manual",
        f"scheduler={scheduler}",
        "epochs=2",
        "trainer.logging_steps=1",
    )
    train(cfg, tmp_path)
    log = _metrics(tmp_path)["train_log"]
    total = 2 * 48 // 8
    assert [e["step"] for e in log] == list(range(1, total + 1))
    assert all(math.isfinite(e["loss"]) for e in log)

    name, warmup = cfg.scheduler.name, math.ceil(cfg.scheduler.warmup_ratio * total)
    lrs = [e["lr"] for e in log]
    expected = [_expected_lr(name, cfg.lr, e["step"] - 1, warmup, total) for e in log]
    assert lrs == pytest.approx(expected, rel=1e-6, abs=1e-12)
    final = _metrics(tmp_path)["final_lr"]
    assert final == pytest.approx(_expected_lr(name, cfg.lr, total, warmup, total), abs=1e-12)
    after_warmup = [*lrs[warmup:], final]
    if name == "constant":
        assert len(set(after_warmup)) == 1
    else:  # decays every step and ends at 0
        assert all(x > y for x, y in zip(after_warmup, after_warmup[1:], strict=False))
        assert final == pytest.approx(0.0, abs=1e-12)


# --- a validation split ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "sizes"),
    [
        # movie_reviews: 1600 train -> 1200 train + 400 validation; the smoke caps (48 train,
        # 32 eval) then apply to train, and to validation and test alike
        ([], (48, 32, 32)),
        # 100 rows, test_size 0.3 -> 70 train + 30 test; val_size 0.25 of 70 -> 18 (sklearn
        # rounds the held-out share up) + 52; no caps
        (
            ["dataset.test_size=0.3", "dataset.max_train_samples=null"]
            + ["dataset.max_eval_samples=null"],
            (52, 18, 30),
        ),
        # the same with caps: 40 of 52 train, validation 18 under its cap of 24, test 24 of 30
        (
            ["dataset.test_size=0.3", "dataset.max_train_samples=40"]
            + ["dataset.max_eval_samples=24"],
            (40, 18, 24),
        ),
    ],
    ids=["movie_reviews_smoke", "files_uncapped", "files_capped"],
)
def test_validation_split_is_carved_from_train(compose_cfg, tmp_path, overrides, sizes):
    """The splits the run trains, picks the epoch and tests on (metrics.json's n_train,
    n_eval, n_test are their sizes: test_train), as the run's first step loads them."""
    from src.trainers.build import make

    if overrides:
        data_file = _write_dataset(tmp_path / "data.csv", 100)
        overrides = ["dataset=files", f"dataset.train_file={data_file}", *overrides]
    cfg = compose_cfg("debug=smoke", "dataset.val_size=0.25", *overrides)
    corpus = make(cfg.dataset).load()
    assert corpus.eval_split == "validation"
    assert (len(corpus.train), len(corpus.eval), len(corpus.test)) == sizes
    assert not set(corpus.eval.texts) & set(corpus.test.texts)
    if cfg.dataset.max_train_samples is None and cfg.dataset.max_eval_samples is None:
        # nothing capped: train + validation is the whole training split before carving
        assert len(corpus.train) + len(corpus.eval) == 100 - len(corpus.test)


# --- SIGTERM under trainer=hf ---------------------------------------------------------------

HF_RUN = [
    "debug=smoke",
    "trainer=hf",
    "epochs=3",
    "dataset.max_train_samples=80",  # 10 steps an epoch: epoch 2 is still running at the signal
]


def _checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))


@pytest.mark.processes
def test_hf_sigterm_checkpoints_exits_for_requeue_and_resumes(tmp_path, trained):
    """SIGTERM mid-epoch: exit 75, a checkpoint; resume=auto ends on the uninterrupted run's
    epochs, test metrics and each epoch's train_loss (the cut epoch's batch losses ride in
    its checkpoint: the resumed epoch's mean had covered only the steps after it)."""
    run_dir = tmp_path / "run"
    proc = start_cli(*HF_RUN, f"hydra.run.dir={run_dir}")
    first_epoch = run_dir / "checkpoints" / "checkpoint-10"
    end = time.monotonic() + 180
    while not first_epoch.exists():
        assert proc.poll() is None, f"run ended before epoch 1's checkpoint: {proc.stderr.read()}"
        assert time.monotonic() < end, f"no {first_epoch} after 180 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 75, err[-3000:]
    assert "resume=auto" in err and "Traceback" not in err
    assert json.loads((run_dir / "status.json").read_text())["status"] == "preempted"
    assert not (run_dir / "metrics.json").exists()
    # the signal's own checkpoint, mid-run: after epoch 1's, before the end
    preempted_at = _checkpoint_steps(run_dir)[-1]
    assert 10 < preempted_at < 30, _checkpoint_steps(run_dir)

    resumed = run_cli(*HF_RUN, "resume=auto", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert f"checkpoint-{preempted_at}" in (run_dir / "run.log").read_text()
    metrics = _metrics(run_dir)
    steps = [e["step"] for e in metrics["train_log"]]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # no step trained twice
    assert metrics["stopped_early"] is False
    # one row per epoch, each at its epoch's last step, as in an uninterrupted run
    assert [(r["epoch"], r["step"]) for r in metrics["history"]] == [(1, 10), (2, 20), (3, 30)]
    assert not (run_dir / "checkpoints").exists()  # kept while preempted, gone once finished
    whole = _metrics(trained(*HF_RUN))
    assert metrics["test"] == pytest.approx(whole["test"], abs=1e-6)
    np.testing.assert_allclose(
        [r["train_loss"] for r in metrics["history"]],
        [r["train_loss"] for r in whole["history"]],
        rtol=1e-5,
    )


def _kept_checkpoints(trainer: str) -> tuple[str, ...]:
    return (
        "debug=smoke",
        f"trainer={trainer}",
        "trainer.save_steps=2",
        "trainer.save_total_limit=null",
        "trainer.keep_checkpoints=true",
    )


@pytest.mark.parametrize("trainer", ["manual", "hf"])
def test_save_steps_checkpoints_between_epochs(trained, trainer):
    """trainer.save_steps=2 on 6 steps an epoch: both loops keep a checkpoint at steps 2 and 4
    as well as at the epoch's end (6)."""
    run_dir = trained(*_kept_checkpoints(trainer))
    steps = sorted(
        int(p.name.split("-")[1])
        for p in (run_dir / "checkpoints").iterdir()
        if "-" in p.name and p.name.split("-")[0] in ("step", "checkpoint")
    )
    assert steps == [2, 4, 6]


@pytest.mark.parametrize(("model", "trainer"), [("hf_head", "hf"), ("custom_head", "manual")])
def test_finished_run_deletes_its_resume_checkpoints(trained, model, trainer):
    """A finished run keeps best_model/ and its reports, not the checkpoints it could have
    resumed from (weights plus optimizer state); keep_checkpoints=true keeps them."""
    run_dir = trained(*PAIRS[model, trainer])
    assert not (run_dir / "checkpoints").exists()
    assert (run_dir / "best_model" / "model.safetensors").is_file()
    assert (run_dir / "metrics.json").is_file()
    assert any((trained(*_kept_checkpoints(trainer)) / "checkpoints").iterdir())


# --- precision and the backbone's dropout -----------------------------------------------------


def test_precision_auto_follows_the_hardware(tmp_path, monkeypatch):
    """auto: bf16 on a CPU whose flags say avx512_bf16 or amx_bf16, fp32 on any other CPU;
    fp32 and bf16 are taken as asked."""
    import torch

    from src.config import devices

    flags = tmp_path / "cpuinfo"
    flags.write_text("flags\t\t: fpu avx2 avx512f avx512bw\n")
    assert not devices.cpu_has_native_bf16(flags)
    flags.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert devices.cpu_has_native_bf16(flags)
    assert not devices.cpu_has_native_bf16(tmp_path / "no such file")  # not Linux: no claim
    cpu = torch.device("cpu")
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda native=native: native)
        assert devices.resolve_precision("auto", cpu) == expected
        assert devices.resolve_precision("fp32", cpu) == "fp32"
        assert devices.resolve_precision("bf16", cpu) == "bf16"


@pytest.mark.parametrize("trainer", ["manual", "hf"])
def test_bf16_on_cpu_trains_under_both_trainers(compose_cfg, tmp_path, trainer):
    cfg = compose_cfg("debug=smoke", f"trainer={trainer}", "trainer.precision=bf16")
    train(cfg, tmp_path)
    metrics = _metrics(tmp_path)
    assert metrics["precision"] == "bf16"
    assert all(math.isfinite(e["loss"]) for e in metrics["train_log"])


def test_dropout_keys_reach_the_backbone(compose_cfg):
    from hydra.utils import instantiate

    dropouts = ("backbone.attention_dropout=0.0", "backbone.hidden_dropout=0.2")
    for model in ("hf_head", "custom_head"):
        cfg = compose_cfg("backbone=tiny", f"model={model}", *dropouts)
        net = instantiate(cfg.model).build(instantiate(cfg.backbone), {0: "neg", 1: "pos"})
        assert net.config.attention_probs_dropout_prob == 0.0
        assert net.config.hidden_dropout_prob == 0.2
    untouched = instantiate(compose_cfg("backbone=tiny").backbone).config()
    assert untouched.attention_probs_dropout_prob == 0.1  # null keeps the checkpoint's own

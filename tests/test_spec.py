"""Config validation: one line, exit 2, before anything loads.

The rules come from each component's declaration (src/config/schema.py); these tests check the
messages a user sees, not a copy of the rules. Every mistake is checked in-process through the
functions the entry point runs (`first_error`); a few go through `python -m src.run` itself,
for the exit code, the one-line format and what a failing process imports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from src import spec
from src.config import validation
from src.config.errors import UserError
from src.config.schema import Spec, param
from tests.conftest import (
    IMPORTTIME,
    command_exit,
    first_error,
    group_options,
    imported,
    run_cli,
)

ALLOWLIST = "src., torch.optim., torch.nn., transformers."

BAD_OVERRIDES = [
    (["lr=0"], "lr=0: a number > 0"),
    (
        ["truncation=head_tail", "stride=300"],
        "stride=300: only truncation=chunks reads it "
        "(truncation=head_tail cuts each text once); drop it, or set truncation=chunks",
    ),
    (
        ["truncation=head", "chunk_pooling=probs"],
        "chunk_pooling=probs: only truncation=chunks "
        "reads it (truncation=head cuts each text once); drop it, or set truncation=chunks",
    ),
    (
        ["stride=300"],
        "stride=300: an integer from 0 to 128 (half of max_length: windows would barely advance)",
    ),
    (["lr=fast"], "lr=fast: a number > 0"),
    (["dropout=1.0"], "dropout=1.0: a number in [0, 1)"),
    (["model=custom_head", "model.dropout=-0.1"], "model.dropout=-0.1: a number in [0, 1)"),
    (["epochs=0"], "epochs=0: an integer >= 1"),
    (["epochs=2.5"], "epochs=2.5: an integer >= 1"),
    (["batch_size=0"], "batch_size=0: an integer >= 1"),
    (["eval_batch_size=-8"], "eval_batch_size=-8: an integer >= 1"),
    (["trainer.grad_accum_steps=0"], "trainer.grad_accum_steps=0: an integer >= 1"),
    (
        ["max_length=1024"],
        "max_length=1024: an integer from 3 to 512 "
        "(the positions of backbone all-MiniLM-L6-v2 allow 512)",
    ),
    (["max_length=2"], "max_length=2: an integer >= 3"),
    (["truncation=middle"], "truncation=middle: one of head, tail, head_tail, chunks"),
    (
        ["trainer.metric_for_best_model=auc"],
        "trainer.metric_for_best_model=auc: one of accuracy, precision, recall, f1, f1_micro, "
        "f1_macro, precision_micro, recall_micro, subset_accuracy, hamming_loss, mse, mae, "
        "pearson, spearman",
    ),
    (["scheduler.warmup_ratio=1.5"], "scheduler.warmup_ratio=1.5: a number in [0, 1]"),
    (["scheduler.warmup_ratio=-0.1"], "scheduler.warmup_ratio=-0.1: a number in [0, 1]"),
    (["scheduler.name=step"], "scheduler.name=step: one of linear, cosine, constant"),
    (["device=gpu"], "device=gpu: one of auto, cpu, cuda, mps (cuda:N for one GPU)"),
    (["trainer.precision=fp8"], "trainer.precision=fp8: one of auto, fp32, bf16, fp16"),
    (["backbone.init=zeros"], "backbone.init=zeros: one of pretrained, random"),
    (["backbone.attention_dropout=1"], "backbone.attention_dropout=1: a number in [0, 1), or null"),
    (["model=custom_head", "model.pooling=max"], "model.pooling=max: one of cls, mean"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: a list of two numbers in [0, 1)"),
    (["dataset.val_size=1"], "dataset.val_size=1: a number in [0, 1)"),
    (["dataset.max_train_samples=0"], "dataset.max_train_samples=0: an integer >= 1, or null"),
    (
        ["+trainer.epochz=3"],
        "trainer.epochz=3: not a key of src.trainers.ManualTrainerConfig; "
        "did you mean trainer.epochs?",
    ),
    (["+lrr=1e-3"], "lrr=0.001: not a top-level key; did you mean lr?"),
    # the same typos without `+`, which Hydra itself would refuse in a multi-line block
    (
        ["trainer.epochz=3"],
        "trainer.epochz=3: trainer (src.trainers.ManualTrainerConfig) has no key epochz; "
        "did you mean trainer.epochs?",
    ),
    (
        ["lrr=1e-3"],
        "lrr=1e-3: no top-level key lrr; did you mean lr?",
    ),
    (
        ["model=hf_head", "model.pooling=cls"],
        "model.pooling=cls: model (src.models.HFHead) has no key pooling; keys: peft, lora, "
        "dropout",
    ),
    (
        ["backbone.config_overrides.layer_norm_eps=1e-6"],
        "backbone.config_overrides.layer_norm_eps=1e-6: the composed config has no key "
        "backbone.config_overrides.layer_norm_eps; to add a new key, write "
        "+backbone.config_overrides.layer_norm_eps=1e-6",
    ),
    (
        ["model=custom_hed"],
        "model=custom_hed: conf/model/ has no option 'custom_hed'; did you mean "
        "model=custom_head? options: custom_head, hf_head",
    ),
    (
        ["-m", "trainer=hf,manul"],
        "trainer=hf,manul: conf/trainer/ has no option 'manul'; did you mean "
        "trainer=manual? options: hf, manual",
    ),
    (
        ["trainer.epochs=${nope}"],
        "trainer.epochs=${nope}: a value that resolves (Interpolation key 'nope' not found)",
    ),
    (["metrics.extra=[1]"], "metrics.extra=[1]: a list of evaluate metric names or paths"),
    (
        ["truncation=chunks", "stride=200"],
        "stride=200: an integer from 0 to 128 (half of max_length: windows would barely advance)",
    ),
    (
        ["resume=/no/such/run"],
        "resume=/no/such/run: no such checkpoint or run folder; use resume=auto or the path "
        "of a run folder",
    ),
    (["device=cuda:0"], "device=cuda:0: no CUDA device here; use device=auto or device=cpu"),
    (  # neither a folder nor a hub id: refused now, not after the hub client's retries
        ["backbone.path=/no/such/model"],
        "backbone.path=/no/such/model: an existing folder, a hub id (name or owner/name) or "
        "pkg://<package>/<folder>",
    ),
    (
        ["backbone.path=./models/bert"],
        "backbone.path=./models/bert: an existing folder, a hub id (name or owner/name) or "
        "pkg://<package>/<folder>",
    ),
]


def _one_line_error(proc, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == f"error: {expected}\n"
    assert "Traceback" not in proc.stdout


@pytest.mark.parametrize(("overrides", "expected"), BAD_OVERRIDES)
def test_bad_value_is_one_line(overrides, expected):
    assert first_error(*overrides) == f"error: {expected}"


# One mistake of each path through the real process: validation in the task function, the
# override preflight for a missing option and for a missing key, a sweep's bad option.
CLI_CASES = [
    case
    for case in BAD_OVERRIDES
    if case[0] in (["lr=0"], ["trainer.epochz=3"], ["model=custom_hed"], ["-m", "trainer=hf,manul"])
]


@pytest.mark.parametrize(("overrides", "expected"), CLI_CASES, ids=[c[0][-1] for c in CLI_CASES])
def test_bad_value_through_the_cli_is_one_line_exit_2(tmp_path, overrides, expected):
    assert len(CLI_CASES) == 4
    proc = run_cli(*overrides, f"hydra.run.dir={tmp_path}", timeout=60)
    _one_line_error(proc, expected)
    assert not (tmp_path / "metrics.json").exists()


def test_checks_that_need_the_machine_are_fast(tmp_path):
    """A missing resume path and an absent GPU fail like any bad value: before anything loads
    (the budget is 3 s; this only checks that neither reaches the model or the corpus)."""
    for override in ("resume=/no/such/run", "device=cuda"):
        start = time.perf_counter()
        proc = run_cli(override, f"hydra.run.dir={tmp_path}", env=IMPORTTIME)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert not imported(proc)[0] & {"transformers", "nltk", "sklearn"}
        print(override, f"{time.perf_counter() - start:.2f} s")


def test_unknown_key_in_a_group_yaml(tmp_path):
    """A typo in an option file, found through an extra config dir as a user's own file."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "typo.yaml").write_text("_target_: src.models.HFHead\ndropuot: 0.2\n")
    proc = run_cli("--config-dir", str(tmp_path), "model=typo", f"hydra.run.dir={tmp_path}/run")
    _one_line_error(
        proc, "model.dropuot=0.2: not a key of src.models.HFHead; did you mean model.dropout?"
    )


# --- safe instantiation -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "builtins.eval"])
def test_target_outside_the_allowlist_is_refused(target):
    assert first_error(f"optimizer._target_={target}") == (
        f"error: optimizer._target_={target}: refused; a target must start with {ALLOWLIST}"
    )


def test_nested_target_is_refused():
    assert first_error("+backbone.config_overrides.hook._target_=os.system") == (
        "error: backbone.config_overrides.hook._target_=os.system: refused; "
        f"a target must start with {ALLOWLIST}"
    )


def test_own_package_target_must_be_our_own():
    """src.data.corpora imports os: `src.data.corpora.os.system` starts with src. but is
    os.system."""
    assert first_error("optimizer._target_=src.data.corpora.os.system") == (
        "error: optimizer._target_=src.data.corpora.os.system: refused; it is posix.system, "
        f"not a callable defined under {ALLOWLIST}"
    )


def test_remote_code_is_refused():
    assert first_error("+backbone.config_overrides.trust_remote_code=true") == (
        "error: backbone.config_overrides.trust_remote_code=true: false (a config never runs "
        "remote code)"
    )


def test_allowlisted_prefix_reaching_elsewhere_is_refused_before_anything_is_built(tmp_path):
    """torch.nn.modules.module imports torch: this path is torch.load, which unpickles. The
    process stops before the corpus or transformers loads."""
    proc = run_cli(
        "optimizer._target_=torch.nn.modules.module.torch.load",
        f"hydra.run.dir={tmp_path}",
        env=IMPORTTIME,
    )
    roots, err = imported(proc)
    assert proc.returncode == 2
    assert err == (
        "error: optimizer._target_=torch.nn.modules.module.torch.load: refused; it is "
        f"torch.serialization.load, not a callable defined under {ALLOWLIST}\n"
    )
    assert "torch" in roots and not roots & {"nltk", "sklearn", "transformers"}
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# --- introspection and validation load no torch ------------------------------------------


@pytest.mark.parametrize(
    "args", [("--cfg", "job", "--resolve"), ("--help",), ("lr=0",)], ids=["cfg", "help", "error"]
)
def test_introspection_and_validation_import_no_torch(tmp_path, args):
    proc = run_cli(*args, f"hydra.run.dir={tmp_path}", env=IMPORTTIME)
    assert proc.returncode == (2 if args == ("lr=0",) else 0), proc.stderr[-2000:]
    roots = imported(proc)[0]
    assert "hydra" in roots and "src" in roots
    assert not roots & {"torch", "transformers", "sklearn", "nltk"}
    if args[0] == "--cfg":  # a default declared in src/ only, registered where src.run starts
        assert "  min_steps: 150\n" in proc.stdout and "  amsgrad: false\n" in proc.stdout
    if args == ("--help",):  # the groups and presets, private option files left out
        assert "experiment: cpu_quickstart, seed_notebook, seed_notebook_manual" in proc.stdout
        assert "debug: overfit, smoke" in proc.stdout and "--cfg job --resolve" in proc.stdout
        assert "_shared" not in proc.stdout and "model: custom_head, hf_head\n" in proc.stdout


# --- every option validates; every target fits its callable's signature -------------------


# a task beyond single_label needs data with its labels (movie_reviews has one per review)
WITH = {
    "task=multi_label": ["dataset=files"],
    "task=regression": ["dataset=files"],
    "dataset=files": [],
}


@pytest.mark.parametrize("override", group_options())
def test_every_option_validates(compose_cfg, override, tmp_path):
    extra = WITH.get(override)
    if extra is not None:  # dataset=files: a file that is there (validation checks it is)
        (tmp_path / "train.csv").write_text("text,label\na,x\n")
        extra = ["dataset=files", f"dataset.train_file={tmp_path / 'train.csv'}"]
    validation.validate(compose_cfg(override, *(extra or [])))


def test_a_declaration_is_the_rule():
    """Type, range, null and choices come from the field's declaration; keys from the class."""

    @dataclass
    class Toy(Spec):
        """A toy component."""

        steps: int = param(1, "how many", ge=1)
        rate: float = param(0.5, "a fraction", gt=0, le=1)
        mode: str = param("a", "which", choices=("a", "b"))
        cap: int | None = param(None, "optional", ge=2)

    assert Toy.parse({"steps": 3, "cap": None}, "toy.") == Toy(steps=3)
    for node, message in [
        ({"steps": 0}, "toy.steps=0: an integer >= 1"),
        ({"steps": True}, "toy.steps=true: an integer >= 1"),
        ({"rate": 0}, "toy.rate=0: a number in (0, 1]"),
        ({"mode": "c"}, "toy.mode=c: one of a, b"),
        ({"cap": 1}, "toy.cap=1: an integer >= 2, or null"),
        ({"stepz": 2}, "toy.stepz=2: not a key of"),
    ]:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
            Toy.parse(node, "toy.")
    with pytest.raises(UserError, match=r"rate=2: a number in \(0, 1\]"):
        Toy(rate=2)  # construction checks too: Hydra's instantiate builds the same class


def test_every_option_builds_its_declared_config(compose_cfg):
    """What instantiate builds for each option is its Spec with the YAML's values."""
    from hydra.utils import instantiate

    for override in group_options():
        cfg = compose_cfg(override)
        for group in ("dataset", "backbone", "model", "trainer", "optimizer", "scheduler"):
            built = instantiate(cfg[group], _convert_="all")
            assert isinstance(built, Spec), (override, group)
            for key, value in validation.resolved(cfg)[group].items():
                if not key.startswith("_"):
                    assert getattr(built, key) == value, (override, group, key)


def test_spec_cli_lists_each_key_with_its_rule_and_help(capsys):
    spec.main(["trainer", "knobs"])
    out = capsys.readouterr().out
    assert "trainer=hf" in out and "save_steps = null  (an integer >= 1, or null)" in out
    assert "grad_accum_steps = 1  (an integer >= 1) batches whose gradients" in out
    assert "lr = ${backbone.lr} = 0.0001  (a number > 0)" in out
    assert "epochs = ${task.epochs} = 2  (an integer >= 1)" in out and "batch_size = 16  (" in out


def test_check_callables_refuses_a_reexported_callable():
    cfg = {"optimizer": {"_target_": "torch.nn.modules.module.torch.load", "_partial_": True}}
    with pytest.raises(UserError, match="refused; it is torch.serialization.load"):
        validation.check_callables(cfg)


def test_third_party_optimizer_keys_are_checked_against_its_signature():
    cfg = {"optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lrr": 0.1}}
    with pytest.raises(UserError, match=r"optimizer.lrr=0.1: not an argument of torch.optim.Adam"):
        validation.check_callables(cfg)


def test_spec_cli_names_an_unknown_group_in_one_line_and_has_help(capsys):
    for group, hint in (("bogus", ""), ("trainers", "did you mean trainer? ")):
        code, err = command_exit(spec.main, group, capsys=capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert err.startswith(f"error: src.spec: no group '{group}'; {hint}groups: knobs, ")
    spec.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m src.spec [GROUP ...]")

"""Config validation through the real entry point: one line, exit 2, before anything loads."""

from __future__ import annotations

import inspect

import pytest

from src import schema
from src.errors import UserError
from tests.conftest import group_options, run_cli

ALLOWLIST = "src., torch.optim., torch.nn., transformers."

BAD_OVERRIDES = [
    (["lr=0"], "lr=0: a number > 0"),
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
        "(max_position_embeddings of backbone all-MiniLM-L6-v2)",
    ),
    (["max_length=2"], "max_length=2: an integer >= 3"),
    (["truncation=middle"], "truncation=middle: one of head, tail, head_tail"),
    (
        ["trainer.metric_for_best_model=auc"],
        "trainer.metric_for_best_model=auc: one of accuracy, precision, recall, f1",
    ),
    (["scheduler.warmup_ratio=1.5"], "scheduler.warmup_ratio=1.5: a number in [0, 1]"),
    (["scheduler.warmup_ratio=-0.1"], "scheduler.warmup_ratio=-0.1: a number in [0, 1]"),
    (["scheduler.name=step"], "scheduler.name=step: one of linear, cosine, constant"),
    (["device=gpu"], "device=gpu: one of auto, cpu, cuda, mps (cuda:N for one GPU)"),
    (["trainer.precision=fp8"], "trainer.precision=fp8: one of auto, fp32, bf16, fp16"),
    (["backbone.init=zeros"], "backbone.init=zeros: one of pretrained, random"),
    (["model=custom_head", "model.pooling=max"], "model.pooling=max: one of cls, mean"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: a list of two numbers in [0, 1)"),
    (["dataset.val_size=1"], "dataset.val_size=1: a number in [0, 1)"),
    (["dataset.max_train_samples=0"], "dataset.max_train_samples=0: an integer >= 1, or null"),
    (
        ["+trainer.epochz=3"],
        "trainer.epochz=3: not an argument of src.trainers.manual.ManualTrainer; "
        "did you mean trainer.epochs?",
    ),
    (["+lrr=1e-3"], "lrr=0.001: not a top-level key; did you mean lr?"),
    # the same typos without `+`, which Hydra itself would refuse in a multi-line block
    (
        ["trainer.epochz=3"],
        "trainer.epochz=3: trainer (src.trainers.manual.ManualTrainer) has no key epochz; "
        "did you mean trainer.epochs?",
    ),
    (
        ["lrr=1e-3"],
        "lrr=1e-3: no top-level key lrr; did you mean lr?",
    ),
    (
        ["model=hf_head", "model.pooling=cls"],
        "model.pooling=cls: model (src.models.hf_head) has no key pooling; keys: dropout",
    ),
    (
        ["backbone.config_overrides.hidden_dropout_prob=0.2"],
        "backbone.config_overrides.hidden_dropout_prob=0.2: the composed config has no key "
        "backbone.config_overrides.hidden_dropout_prob; to add a new key, write "
        "+backbone.config_overrides.hidden_dropout_prob=0.2",
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
]


def _one_line_error(proc, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == f"error: {expected}\n"
    assert "Traceback" not in proc.stdout


@pytest.mark.parametrize(("overrides", "expected"), BAD_OVERRIDES)
def test_bad_value_fails_with_one_line(tmp_path, overrides, expected):
    proc = run_cli(*overrides, f"hydra.run.dir={tmp_path}", timeout=60)
    _one_line_error(proc, expected)


def test_unknown_key_in_a_group_yaml(tmp_path):
    """A typo in an option file, found through an extra config dir as a user's own file."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "typo.yaml").write_text("_target_: src.models.hf_head\ndropuot: 0.2\n")
    proc = run_cli("--config-dir", str(tmp_path), "model=typo", f"hydra.run.dir={tmp_path}/run")
    _one_line_error(
        proc,
        "model.dropuot=0.2: not an argument of src.models.hf_head; did you mean model.dropout?",
    )


# --- safe instantiation -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "builtins.eval"])
def test_target_outside_the_allowlist_is_refused(tmp_path, target):
    proc = run_cli(f"optimizer._target_={target}", f"hydra.run.dir={tmp_path}", timeout=60)
    _one_line_error(
        proc, f"optimizer._target_={target}: refused; a target must start with {ALLOWLIST}"
    )


def test_nested_target_is_refused(tmp_path):
    proc = run_cli(
        "+backbone.config_overrides.hook._target_=os.system", f"hydra.run.dir={tmp_path}"
    )
    _one_line_error(
        proc,
        "backbone.config_overrides.hook._target_=os.system: refused; "
        f"a target must start with {ALLOWLIST}",
    )


def test_own_package_target_must_be_a_builder(tmp_path):
    """src.data imports os: `src.data.os.system` starts with src. but is os.system."""
    proc = run_cli("optimizer._target_=src.data.os.system", f"hydra.run.dir={tmp_path}")
    _one_line_error(
        proc,
        "optimizer._target_=src.data.os.system: refused; "
        "the optimizer builders are torch.optim.AdamW, torch.optim.SGD",
    )


def test_remote_code_is_refused(tmp_path):
    proc = run_cli("+backbone.config_overrides.trust_remote_code=true", f"hydra.run.dir={tmp_path}")
    _one_line_error(
        proc,
        "backbone.config_overrides.trust_remote_code=true: false (a config never runs remote code)",
    )


def test_allowlisted_prefix_reaching_elsewhere_is_refused_before_anything_is_built(tmp_path):
    """torch.nn.modules.module imports torch: this path is torch.load, which unpickles."""
    proc = run_cli(
        "optimizer._target_=torch.nn.modules.module.torch.load", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "error: optimizer._target_=torch.nn.modules.module.torch.load: refused; it is "
        f"torch.serialization.load, not a callable defined under {ALLOWLIST}"
    )
    assert "dataset:" not in proc.stderr + proc.stdout


# --- introspection and validation load no torch ------------------------------------------


def _imported_roots(importtime_stderr: str) -> set[str]:
    """Top-level package names in `-X importtime` output (PYTHONPROFILEIMPORTTIME)."""
    return {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize(
    "args", [("--cfg", "job", "--resolve"), ("--help",), ("lr=0",)], ids=["cfg", "help", "error"]
)
def test_introspection_and_validation_import_no_torch(tmp_path, args):
    proc = run_cli(*args, f"hydra.run.dir={tmp_path}", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == (2 if args == ("lr=0",) else 0), proc.stderr[-2000:]
    roots = _imported_roots(proc.stderr)
    assert "hydra" in roots and "src" in roots
    assert not roots & {"torch", "transformers", "sklearn", "nltk"}


def test_help_lists_groups_and_presets(tmp_path):
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "experiment: cpu_quickstart, seed_notebook, seed_notebook_manual" in proc.stdout
    assert "debug: overfit, smoke" in proc.stdout and "--cfg job --resolve" in proc.stdout


# --- every option validates; every target fits its callable's signature -------------------


@pytest.mark.parametrize("override", group_options())
def test_every_option_validates(compose_cfg, override):
    schema.validate(compose_cfg(override))


@pytest.mark.parametrize("override", group_options())
def test_every_target_fits_its_signature(compose_cfg, override):
    """Each `_target_` node's keys against inspect.signature; imports, builds nothing."""
    plain = schema.resolved(compose_cfg(override))
    nodes = list(schema.target_nodes(plain))
    assert {key for key, _ in nodes} >= set(schema.GROUPS)
    for key, node in nodes:
        fn = schema.locate(key, node["_target_"])
        spec = schema.builder(node["_target_"])
        assert schema.signature_problem(node, fn, spec.runtime if spec else ()) is None


@pytest.mark.parametrize(
    ("group", "target"), [(g, t) for g, builders in schema.SCHEMA.items() for t in builders]
)
def test_schema_names_the_callables_arguments(group, target):
    """The validator's keys are the builder's keyword arguments (all of them for our own)."""
    spec = schema.SCHEMA[group][target]
    params = inspect.signature(schema.locate(group, target)).parameters
    assert set(spec.args) | set(spec.runtime) <= set(params)
    if target.startswith("src."):
        assert set(spec.args) | set(spec.runtime) == set(params)


def test_signature_check_catches_a_misspelled_and_a_missing_argument():
    from src.backbones import Backbone
    from src.models import custom_head

    node = {"_target_": "src.models.custom_head", "dropuot": 0.1}
    assert schema.signature_problem(node, custom_head, ("backbone", "id2label")) == (
        "dropuot=0.1: not an argument of src.models.custom_head "
        "(backbone, id2label, dropout, pooling)"
    )
    node = {"_target_": "src.backbones.Backbone", "name": "x"}
    assert (
        schema.signature_problem(node, Backbone) == "path=null: required by src.backbones.Backbone"
    )
    assert schema.signature_problem({**node, "_partial_": True}, Backbone) is None


def test_mirrored_choices_match_the_code():
    from src import models

    assert schema.POOLINGS == models.POOLINGS


def test_check_callables_refuses_a_reexported_callable():
    cfg = {"optimizer": {"_target_": "torch.nn.modules.module.torch.load", "_partial_": True}}
    with pytest.raises(UserError, match="refused; it is torch.serialization.load"):
        schema.check_callables(cfg)

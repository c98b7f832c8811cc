"""Golden snapshots: each preset resolves to what tests/snapshots/ says, key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.snapshots import changes, flatten, load, presets, resolve, snapshot_path, stale

UPDATE = "python -m tests.snapshots --update"


@pytest.mark.parametrize("name", list(presets()))
def test_preset_matches_its_snapshot(name):
    path = snapshot_path(name)
    assert path.is_file(), f"no snapshot for {name}: run `{UPDATE}`"
    diff = changes(load(path), resolve(presets()[name]))
    assert not diff, (
        f"{name} no longer resolves to {path.name}; changed keys:\n  "
        + "\n  ".join(diff)
        + f"\nIf intended, run `{UPDATE}` and commit the diff."
    )


def test_no_snapshot_without_a_preset():
    assert not stale(), f"snapshots with no preset: {stale()}; run `{UPDATE}`"


def test_snapshots_hold_no_machine_paths():
    for name in presets():
        text = snapshot_path(name).read_text()
        assert str(ROOT) not in text and str(Path.home()) not in text, name


def test_changes_names_dotted_keys_with_old_and_new_values():
    old = {"lr": 1e-4, "trainer": {"epochs": 1, "seed": 42}, "optimizer": {"betas": [0.9, 0.99]}}
    new = {"lr": 2e-4, "trainer": {"epochs": 1}, "optimizer": {"betas": [0.9, 0.999]}, "x": 1}
    assert changes(old, new) == [
        "lr: 0.0001 -> 0.0002",
        "trainer.seed: 42 -> '<absent>'",
        "optimizer.betas: [0.9, 0.99] -> [0.9, 0.999]",
        "x: '<absent>' -> 1",
    ]
    assert changes(old, old) == []


def test_a_knob_change_shows_every_resolved_key_it_moves():
    """What a reviewer reads: `epochs` feeds trainer.epochs by interpolation; both show."""
    assert changes(resolve([]), resolve(["epochs=3"])) == [
        "trainer.epochs: 2 -> 3",
        "epochs: 2 -> 3",
    ]


def test_notebook_halves_share_data_and_optimizer_settings():
    """seed_notebook_manual differs from seed_notebook only in the head and the loop."""
    hf = flatten(resolve(["experiment=seed_notebook"]))
    manual = flatten(resolve(["experiment=seed_notebook_manual"]))
    differ = {k for k in hf.keys() | manual.keys() if hf.get(k) != manual.get(k)}
    assert {k.split(".")[0] for k in differ} == {"model", "trainer"}
    assert manual["model._target_"] == "src.models.CustomHead"
    assert manual["trainer._target_"] == "src.trainers.ManualTrainerConfig"

"""Checkpoints of the manual loop: complete or absent, never half-written, safe to load.

A checkpoint is a folder `step-<N>` holding the weights (safetensors), the best weights so far
(a hard link to one file, not a copy), and `state.pt`: optimizer, scheduler, scaler, every RNG
and the loop counters, loaded with `weights_only=True`. It is written under a temporary name and
renamed into place, so a crash mid-write leaves nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from src.config.errors import UserError

WEIGHTS, BEST, STATE = "model.safetensors", "best.safetensors", "state.pt"
_NAME = re.compile(r"^step-(\d+)$")


def signature(state: dict[str, torch.Tensor]) -> str:
    """A fingerprint of parameter names and shapes: tells a checkpoint of another model apart."""
    text = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint under `folder` (temporary folders never match)."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def save(
    folder: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    best_file: Path | None,
    state: dict,
    keep: int | None,
) -> Path:
    """Write `folder/step-<step>` atomically and keep only the newest `keep` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / step_name(step)
    tmp = folder / f".tmp-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, str(tmp / WEIGHTS), metadata={"format": "pt"})
    if best_file is not None:
        try:
            os.link(best_file, tmp / BEST)
        except OSError:
            shutil.copyfile(best_file, tmp / BEST)
    torch.save({**state, "signature": signature(weights)}, tmp / STATE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in folder.iterdir() if _NAME.match(p.name))[: -keep if keep else 0]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def step_name(step: int) -> str:
    return f"step-{step:07d}"


def save_best(
    folder: Path, epoch: int, weights: dict[str, torch.Tensor], write: bool = True
) -> Path:
    """The best weights so far, written once per improvement (checkpoints link to it).
    Under DDP only rank 0 writes (`write`); every rank gets the path."""
    path = folder / f"best-epoch-{epoch:04d}.safetensors"
    if not write:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{path.name}"
    save_file(weights, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
    for old in folder.glob("best-epoch-*.safetensors"):
        if old != path:
            old.unlink(missing_ok=True)  # checkpoints that link to it keep their copy
    return path


def load(path: Path, model: torch.nn.Module) -> tuple[dict, dict[str, torch.Tensor] | None]:
    """(loop state, best weights) of checkpoint `path`; the model gets its weights.

    A truncated file or a checkpoint of another model is a UserError naming the folder.
    """
    try:
        state = torch.load(path / STATE, weights_only=True)
        weights = load_file(str(path / WEIGHTS))
        best = load_file(str(path / BEST)) if (path / BEST).exists() else None
    except (OSError, RuntimeError, EOFError, SafetensorError, ValueError) as e:
        raise UserError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}); delete it or "
            "resume from an older one"
        ) from None
    if state.get("signature") != signature(model.state_dict()):
        raise foreign(path)
    model.load_state_dict(weights)
    return state, best


def foreign(path: Path) -> UserError:
    return UserError(
        f"checkpoint {path} was saved from a different model (other backbone or head); "
        "resume with the config it was trained with"
    )


def matches(weights_file: Path, model: torch.nn.Module) -> bool:
    """Whether a safetensors file holds exactly this model's parameter names and shapes."""
    with safe_open(str(weights_file), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return shapes == own

"""The CUDA path: both heads under both trainers on a GPU, in the precision `auto` picks there.

CI has no GPU, so these skip there; on a GPU machine: `pytest -m gpu`. The CPU tests cover the
same code in fp32; what only a GPU shows is the device placement, mixed precision and a model
trained there reloading on the CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from src.models import load_trained
from src.run import train
from tests.conftest import reloaded_and_saved_probs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("trainer", ["manual", "hf"])
@pytest.mark.parametrize("model", ["hf_head", "custom_head"])
def test_overfit_on_gpu_in_mixed_precision(compose_cfg, tmp_path, model, trainer):
    """debug=overfit on cuda: the loss still falls to ~0 under autocast, and the best model
    trained on the GPU reloads on the CPU and predicts what the run predicted."""
    cfg = compose_cfg("debug=overfit", "device=cuda", f"model={model}", f"trainer={trainer}")
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda")
    assert metrics["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    history = metrics["history"]
    assert history[0]["train_loss"] > 0.5 and history[-1]["train_loss"] < 0.1

    assert next(load_trained(tmp_path / "best_model").parameters()).device.type == "cpu"
    probs, saved = reloaded_and_saved_probs(tmp_path, cfg)
    np.testing.assert_allclose(probs, saved, atol=0.05)  # the run scored them in bf16/fp16


def test_auto_precision_is_fp32_on_cpu_and_mixed_on_cuda():
    from src.devices import resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) in ("bf16", "fp16")

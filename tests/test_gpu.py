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
    cfg = compose_cfg(
        "debug=overfit",
        "device=cuda",
        f"model={model}",
        f"trainer={trainer}",
        "trainer.precision=auto",
    )  # debug=overfit pins fp32 for the CPU tests
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda")
    assert metrics["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    history = metrics["history"]
    assert history[0]["train_loss"] > 0.5 and history[-1]["train_loss"] < 0.1

    assert next(load_trained(tmp_path / "best_model").parameters()).device.type == "cpu"
    probs, saved = reloaded_and_saved_probs(tmp_path, cfg)
    np.testing.assert_allclose(probs, saved, atol=0.05)  # the run scored them in bf16/fp16


def test_auto_precision_is_mixed_on_cuda_and_on_a_cpu_with_native_bf16():
    from src.config.devices import cpu_has_native_bf16, resolve_precision

    native = cpu_has_native_bf16()  # AVX512-BF16 or AMX: bf16 autocast on the CPU too
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) in ("bf16", "fp16")


@pytest.mark.parametrize(
    "family", ["bert", "roberta", "distilbert", "deberta-v2", "electra", "modernbert"]
)
def test_every_family_caches_on_cuda(family, encoder_folder, tmp_path):
    """Each family's frozen cache on the GPU: in fp32 it gives the uncached run's predictions
    and runs the frozen layer once per example; under trainer=hf in mixed precision too."""
    from tests.test_encoders import CACHE, FREEZE, fit_counting, small

    folder, cuda = encoder_folder(family), ("device=cuda", "trainer.precision=fp32")
    cached, rows, examples = fit_counting(small(folder, *CACHE, *cuda), tmp_path / "c")
    plain, _, _ = fit_counting(small(folder, *FREEZE, *cuda), tmp_path / "p")
    assert rows == examples
    np.testing.assert_allclose(cached, plain, atol=1e-3, rtol=1e-3)
    mixed = small(folder, *CACHE, "device=cuda", "trainer=hf", "model=hf_head")
    logits, rows, examples = fit_counting(mixed, tmp_path / "m")
    assert rows == examples and np.isfinite(logits).all()


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "electra", "modernbert"])
def test_packed_batches_on_cuda_in_bf16(model_type, encoder_folder):
    """trainer.padding_free on the GPU: in bf16 the packed row (PyTorch's flash-attention
    varlen kernel) gives the padded batch's logits within bf16's tolerance, under both heads;
    in training mode with attention dropout (the jagged SDPA path) the loss is finite and its
    gradient reaches every weight."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    from src.data.collate import Collator, PackedCollator
    from src.models.custom_head import CustomHeadClassifier
    from src.models.packed import PackedModel
    from tests.test_padding_free import _examples

    folder = encoder_folder(model_type)
    examples, tokenizer = _examples(folder)
    cuda = torch.device("cuda")
    padded = {k: v.to(cuda) for k, v in Collator(tokenizer)(examples).items()}
    packed = {
        k: v.to(cuda) if hasattr(v, "to") else v for k, v in PackedCollator()(examples).items()
    }
    for head in ("hf", "mean"):
        torch.manual_seed(0)
        if head == "hf":
            model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
        else:
            model = CustomHeadClassifier(AutoModel.from_pretrained(folder), 2, 0.1, head)
        model = model.to(cuda).eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            want = model(**padded).logits.float()
            got = PackedModel(model).eval()(**packed).logits.float()
        torch.testing.assert_close(got, want, atol=3e-2, rtol=3e-2)
        net = PackedModel(model).train()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = net(**packed).loss
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

"""An exported model (`python -m src.export`): model.onnx run by onnxruntime, called as the
torch model is (`model(**batch).logits`), so src.outputs.trained's Predictor, src.evaluate and the
export's own check serve it through the same code as a trained run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ONNX_FILE = "model.onnx"
EXPORT_FILE = "export.json"  # what was exported from which run, and the check it passed


class OnnxModel:
    """model.onnx in an onnxruntime session (its CPU provider; onnxruntime picks its
    threads), with the saved config (labels, problem_type)."""

    def __init__(self, folder: str | Path) -> None:
        import onnxruntime as ort
        from transformers import AutoConfig

        self.folder = Path(folder)
        self.config = AutoConfig.from_pretrained(self.folder)
        self.session = ort.InferenceSession(
            str(self.folder / ONNX_FILE), providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **batch: Any) -> SimpleNamespace:
        import torch

        feeds = {
            k: np.asarray(v.cpu().numpy() if hasattr(v, "cpu") else v, dtype=np.int64)
            for k, v in batch.items()
            if k in self.inputs
        }
        (logits,) = self.session.run(["logits"], feeds)
        return SimpleNamespace(logits=torch.from_numpy(np.asarray(logits, dtype=np.float32)))

    def to(self, device: Any) -> OnnxModel:
        return self  # onnxruntime's CPU provider, whatever the device

    def eval(self) -> OnnxModel:
        return self

    @property
    def name(self) -> str:
        return f"ONNX ({self.folder.name}/{ONNX_FILE})"

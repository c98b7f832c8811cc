"""The torch backend of the one inference path (src.tasks.inference.documents): every
example's logits, in the examples' order, through a torch module or an exported model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from src.config.devices import autocast
from src.tasks.inference import lengths_of
from src.trainers import distributed


def forward(
    model: Any,
    examples: Any,
    collate: Callable,
    batch_size: int,
    device: Any,
    precision: str = "fp32",
    num_workers: int = 0,
) -> np.ndarray:
    """The torch backend: every example's logits, in the examples' order. Batches go longest
    first, so each pads little; under torchrun each process forwards its share and the rows
    are gathered. `model` is a torch module or an exported model called as one."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    order = np.argsort(-lengths_of(examples), kind="stable").tolist()
    mine = distributed.shard(order)
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    # its own generator: an iterator would otherwise draw from the global RNG, and a resumed
    # run would then see different dropout masks after an evaluation
    loader = DataLoader(
        examples,
        batch_sampler=batches,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    out = []
    with torch.no_grad():
        for batch in tqdm(loader, desc="predict", unit="batch", leave=False, disable=None):
            batch = {k: on_device(v, device) for k, v in batch.items() if k != "labels"}
            with autocast(device, precision):
                out.append(model(**batch).logits.float().cpu())
    rows = distributed.gather_rows(torch.cat(out).numpy(), len(examples))
    logits = np.empty_like(rows)
    logits[order] = rows
    return logits


def on_device(value: Any, device: Any) -> Any:
    """A batch's tensor on the device (copied asynchronously from pinned memory); a number (a
    packed batch's `max_length`) stays on the host."""
    return value.to(device, non_blocking=True) if hasattr(value, "to") else value

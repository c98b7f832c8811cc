"""Frozen lower layers (`backbone.freeze_layers=N`), and their outputs computed once per example
and reused (`backbone.cache_frozen=true`).

Freezing turns off gradients and dropout in the embeddings and the lower N encoder layers, so
their output is a function of the input alone and the backward pass stops at layer N. Caching
then keeps that output per example: the first time a batch holds an example (in the first epoch,
the first evaluation, the test split), the frozen part runs for it under no_grad and its rows
are stored; from then on only the upper layers and the head run. The model keeps its own
forward (transformers' masks, pooler, head and loss): during a cached forward its embeddings
return the stored rows and its encoder holds its upper layers only. A batch asks for the cache
with `cache_rows` (each example's row, from `src.data.collate`); a call without it, such as
`src.predict`'s on the saved model, runs every layer.

The cache holds examples x word pieces x hidden values in the training precision (fp32: 4 bytes
each, bf16/fp16: 2): 2,000 reviews x 256 x 384 in fp32 are 786 MB. Up to `IN_MEMORY_BYTES` it
lives in memory, beyond that in a memory-mapped file in the temporary folder (`TMPDIR`),
deleted when the run ends.
"""

from __future__ import annotations

import logging
import os
import tempfile
import weakref
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from src.errors import UserError

log = logging.getLogger(__name__)

IN_MEMORY_BYTES = 4 * 1024**3  # a larger cache goes to a memory-mapped file
_STORAGE = {torch.float32: np.float32, torch.bfloat16: np.uint16, torch.float16: np.float16}


def layers_of(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """The encoder of either head (`base_model`) and its list of layers: the BERT-family layout
    (embeddings, then encoder.layer), which BERT, RoBERTa, ELECTRA and MiniLM share."""
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(base, "embeddings"):
        raise UserError(
            f"backbone.freeze_layers: {type(base).__name__} has no embeddings + encoder.layer "
            "(the BERT-family layout) to freeze; set backbone.freeze_layers=0"
        )
    return base, layers


def freeze(model: nn.Module, n: int) -> int:
    """Freeze the embeddings and the lower `n` encoder layers: no gradients (so no optimizer
    state: src.optim skips them) and dropout 0 inside them. Returns the parameters frozen."""
    base, layers = layers_of(model)
    if n > len(layers):
        raise UserError(
            f"backbone.freeze_layers={n}: the backbone has {len(layers)} encoder layers; "
            f"use 0 to {len(layers)}"
        )
    frozen = 0
    for module in (base.embeddings, *layers[:n]):
        module.requires_grad_(False)
        frozen += sum(p.numel() for p in module.parameters())
        for m in module.modules():
            if isinstance(m, nn.Dropout):  # attention's too: it reads its Dropout's p
                m.p = 0.0
    return frozen


class FrozenCache:
    """Each example's output of the frozen part, stored once, ragged (no padding stored): the
    rows of example i are `offsets[i]:offsets[i] + lengths[i]`."""

    def __init__(self, model: nn.Module, n: int, lengths: Sequence[int], dtype: torch.dtype):
        self.base, layers = layers_of(model)
        self.lower, self.upper, self.all = layers[:n], nn.ModuleList(layers[n:]), layers
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.dtype, hidden = dtype, model.config.hidden_size
        shape = (int(self.lengths.sum()), hidden)
        storage = np.dtype(_STORAGE[dtype])
        self.nbytes = shape[0] * hidden * storage.itemsize
        self.file = None
        if self.nbytes > IN_MEMORY_BYTES:
            fd, self.file = tempfile.mkstemp(prefix="frozen-cache-", suffix=".bin")
            os.close(fd)
            weakref.finalize(self, _remove, self.file)  # however the run ends
            self.values = np.memmap(self.file, dtype=storage, mode="w+", shape=shape)
        else:
            self.values = np.empty(shape, dtype=storage)
        self.filled = np.zeros(len(self.lengths), dtype=bool)
        self._hidden: torch.Tensor | None = None
        self._handles = [
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            model.register_forward_hook(self._after, always_call=True),
            self.base.embeddings.register_forward_hook(self._embeddings),
        ]
        size, where = f"{self.nbytes / 1e6:.0f} MB", self.file or "memory"
        log.info(f"frozen cache: {len(self.lengths)} examples, {size} in {where}")

    # --- the hooks: a forward with cache_rows runs the upper layers on the stored rows --------

    def _before(self, model, args, kwargs):
        rows = kwargs.pop("cache_rows", None)
        if rows is None:
            return args, kwargs
        rows = rows.cpu().numpy()
        missing = ~self.filled[rows]
        if missing.any():
            self._fill(
                rows[missing],
                {
                    k: v[torch.from_numpy(missing)]
                    for k, v in kwargs.items()
                    if k in ("input_ids", "attention_mask", "token_type_ids")
                },
            )
        device = kwargs["input_ids"].device
        self._hidden = self._gather(rows, kwargs["input_ids"].shape[1]).to(device)
        self.base.encoder.layer = self.upper
        return args, kwargs

    def _after(self, model, args, output):
        self._hidden = None
        self.base.encoder.layer = self.all
        return output

    def _embeddings(self, module, args, output):
        if self._hidden is None:
            return output
        return self._hidden.to(output.dtype)

    # --- storing and reading rows -------------------------------------------------------------

    @torch.no_grad()
    def _fill(self, rows: np.ndarray, inputs: dict[str, torch.Tensor]) -> None:
        """Run the frozen part on these examples (eval mode: it has no dropout anyway) and store
        each one's unpadded rows."""
        self.base.encoder.layer = self.lower
        try:
            hidden = self.base(**inputs).last_hidden_state.to(self.dtype).cpu()
        finally:
            self.base.encoder.layer = self.all
        for row, h in zip(rows.tolist(), hidden, strict=True):
            start, n = self.offsets[row], self.lengths[row]
            self.values[start : start + n] = _to_numpy(h[:n])
        self.filled[rows] = True

    def _gather(self, rows: np.ndarray, width: int) -> torch.Tensor:
        """The stored rows of these examples, padded with zeros to the batch's width."""
        out = torch.zeros(len(rows), width, self.values.shape[1], dtype=self.dtype)
        for i, row in enumerate(rows.tolist()):
            start, n = self.offsets[row], self.lengths[row]
            out[i, :n] = _from_numpy(self.values[start : start + n], self.dtype)
        return out

    def close(self) -> None:
        """Remove the hooks (the model runs every layer again) and the file, if any."""
        for handle in self._handles:
            handle.remove()
        self.values = None
        if self.file:
            _remove(self.file)


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t

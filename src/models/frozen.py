"""Frozen lower layers (`backbone.freeze_layers=N`), and their outputs computed once per example
and reused (`backbone.cache_frozen=true`).

Freezing turns off gradients and dropout in what runs before layer 0 (the embeddings, and per
family what src.models.encoders lists: ELECTRA's projection, DeBERTa's relative embeddings) and the
lower N layers, so their output is a function of the input alone and the backward pass stops at
layer N. Caching then keeps that output per example: the first time a batch holds an example
(in the first epoch, the first evaluation, the test split), the frozen part runs for it under
no_grad and its rows are stored; from then on only the upper layers and the head run. The model
keeps its own forward (transformers' masks, positions, pooler, head and loss): during a cached
forward its encoder holds its upper layers only, and the first of them reads the stored rows in
place of its input. A batch asks for the cache
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

from src.config.errors import UserError
from src.models import encoders

log = logging.getLogger(__name__)

IN_MEMORY_BYTES = 4 * 1024**3  # a larger cache goes to a memory-mapped file
_STORAGE = {torch.float32: np.float32, torch.bfloat16: np.uint16, torch.float16: np.float16}


def freeze(model: nn.Module, n: int) -> int:
    """Freeze what runs before layer 0 and the lower `n` layers (src.models.encoders knows
    where they are): no gradients (so no optimizer state: src.trainers.optim skips them), and
    eval mode whenever they run, so no dropout however a family implements it (a module, a
    float it reads, a functional call). Returns the parameters frozen."""
    _, _, layers = encoders.layer_list(model)
    if n > len(layers):
        raise UserError(
            f"backbone.freeze_layers={n}: the backbone has {len(layers)} encoder layers; "
            f"use 0 to {len(layers)}"
        )
    frozen = 0
    for module in (*encoders.before_layers(model, n), *layers[:n]):
        module.requires_grad_(False)
        frozen += sum(p.numel() for p in module.parameters())
        module.register_forward_pre_hook(_eval)
    return frozen


def _eval(module: nn.Module, args) -> None:
    """A frozen module runs in eval mode even while the model trains (model.train() sets it
    back, so this runs before each call)."""
    if module.training:
        module.eval()


class _Stop(Exception):
    """Raised by the hook on the last frozen layer: the rest of the forward is not needed."""


class FrozenCache:
    """Each example's output of the frozen part, stored once, ragged (no padding stored): the
    rows of example i are `offsets[i]:offsets[i] + lengths[i]`."""

    def __init__(self, model: nn.Module, n: int, lengths: Sequence[int], dtype: torch.dtype):
        self.base, self.path, layers = encoders.layer_list(model)
        self.lower, self.all = layers[:n], layers
        # what the encoder runs in a cached forward: the upper layers, or with every layer
        # frozen, a stand-in that returns the stored rows as a layer would
        self.upper = nn.ModuleList(layers[n:] if n < len(layers) else [_Stored(self)])
        self._tuple_of: int | None = None  # a layer returns a tensor, or a tuple of this length
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
        ]
        if n < len(layers):  # the first upper layer's input becomes the stored rows
            self._handles.append(
                self.upper[0].register_forward_pre_hook(self._input, with_kwargs=True)
            )
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
        encoders.set_layers(self.base, self.path, self.upper)
        return args, kwargs

    def _after(self, model, args, output):
        self._hidden = None
        encoders.set_layers(self.base, self.path, self.all)
        return output

    def _input(self, layer, args, kwargs):
        """The first upper layer reads the stored rows in place of what the embeddings gave."""
        if self._hidden is None:
            return None
        if args:
            return (self._hidden.to(args[0].dtype), *args[1:]), kwargs
        key = next(k for k in ("hidden_states", "hidden_state", "x") if k in kwargs)
        return args, {**kwargs, key: self._hidden.to(kwargs[key].dtype)}

    # --- storing and reading rows -------------------------------------------------------------

    @torch.no_grad()
    def _fill(self, rows: np.ndarray, inputs: dict[str, torch.Tensor]) -> None:
        """Run the frozen part on these examples (in eval mode: see `freeze`) and store each
        one's unpadded rows: the last frozen layer's output, caught by a hook that then stops
        the forward (so no later module, such as ModernBERT's final norm, touches it)."""
        caught: list[torch.Tensor] = []

        def catch(layer, args, output):
            caught.append(output[0] if isinstance(output, tuple) else output)
            self._tuple_of = len(output) if isinstance(output, tuple) else None
            raise _Stop

        handle = self.lower[-1].register_forward_hook(catch)
        try:
            self.base(**inputs)
        except _Stop:
            pass
        finally:
            handle.remove()
        hidden = caught[0].to(self.dtype).cpu()
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


class _Stored(nn.Module):
    """With every layer frozen, the encoder's one layer in a cached forward: the stored rows,
    returned in the form the family's layers return (a tensor, or a tuple led by it)."""

    def __init__(self, cache: FrozenCache) -> None:
        super().__init__()
        self.cache = [cache]  # a list: not a submodule (no parameters, not in state_dict)

    def __getattr__(self, name: str):
        """What the encoder reads of its layers (ModernBERT: each one's attention_type) is the
        last frozen layer's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.cache[0].lower[-1], name)

    def forward(self, hidden, *args, **kwargs):
        cache = self.cache[0]
        rows = cache._hidden.to(hidden.dtype)
        return rows if cache._tuple_of is None else (rows, *[None] * (cache._tuple_of - 1))


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t

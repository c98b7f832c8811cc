"""Frozen lower layers (`backbone.freeze_layers=N`), and their outputs computed once per example
and reused (`backbone.cache_frozen=true`).

Freezing turns off gradients and dropout in what runs before layer 0 (the embeddings, and per
family what src.models.encoders lists: ELECTRA's projection, DeBERTa's relative embeddings) and
the lower N layers, so their output is a function of the input alone and the backward pass
stops at layer N. Caching then keeps that output per example, through two views of the model
made once, when the cache is, that share its modules and weights: the lower one is the encoder
with its lower N layers alone (and without what runs after the last layer: ModernBERT's final
norm); the upper one is the whole classifier with its upper layers alone, reading the stored
rows as its `inputs_embeds` where the embeddings (and what the family lists with them) stood.
`CachedModel.forward` is the call path: a batch with `cache_rows` (each example's row, from
src.data.collate) runs the lower view for the rows not stored yet, then the upper view on the
stored rows, transformers' masks, positions, pooler, head and loss included; a batch without
runs the model itself, every layer. Nothing is swapped or hooked during a forward, so
`compile=true` compiles it like any model (the rows are gathered outside the graph).

The cache holds examples x word pieces x hidden values in the training precision (fp32: 4 bytes
each, bf16/fp16: 2): 2,000 reviews x 256 x 384 in fp32 are 786 MB. Up to `IN_MEMORY_BYTES` it
lives in memory, beyond that in a memory-mapped file in the temporary folder (`TMPDIR`),
deleted when the run ends.
"""

from __future__ import annotations

import copy
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


def view(root: nn.Module, replaced: dict[str, nn.Module | None]) -> nn.Module:
    """`root` as a copy that shares every module and weight of it but those `replaced` names
    (dotted paths, each put into copies of the modules on its way): the original is untouched,
    and the copy is made once, not during a forward."""
    out = _shallow(root)
    copies = {id(out)}
    for path, module in replaced.items():
        *parents, name = path.split(".")
        node = out
        for part in parents:
            child = node._modules[part]
            if id(child) not in copies:
                child = _shallow(child)
                copies.add(id(child))
                node._modules[part] = child
            node = child
        node._modules[name] = module
    return out


def _shallow(module: nn.Module) -> nn.Module:
    """A copy of one module: its own dicts of submodules, parameters, buffers and hooks, the
    same objects in them."""
    out = copy.copy(module)
    for name, value in vars(module).items():
        if name.startswith("_") and isinstance(value, dict | set):
            out.__dict__[name] = type(value)(value)
    return out


def encoder_view(model: nn.Module, layers: Sequence[nn.Module], stored: bool = False) -> nn.Module:
    """The model's encoder (`base_model`) with `layers` alone, and nothing after them (no final
    norm, as ModernBERT's, and no pooler): it returns the last of `layers`' output. `stored`:
    it reads its `inputs_embeds` as the first of `layers` would (the frozen cache's rows)."""
    family, (base, path, _) = encoders.of(model), encoders.layer_list(model)
    replaced: dict[str, nn.Module | None] = {path: nn.ModuleList(layers)}
    replaced |= {p: nn.Identity() for p in family.after if _has(base, p)}
    if getattr(base, "pooler", None) is not None:
        replaced["pooler"] = None
    if stored:
        replaced |= _stored_inputs(family, base, "")
    return view(base, replaced)


def classifier_view(model: nn.Module, layers: Sequence[nn.Module]) -> nn.Module:
    """The whole classifier with `layers` alone, reading its `inputs_embeds` as the first of
    them would (where the embeddings, and what the family lists with them, stood), then what
    runs after the last layer, the pooler, the head and the loss."""
    family, (base, path, _) = encoders.of(model), encoders.layer_list(model)
    prefix = next(name for name, child in model.named_children() if child is base)
    replaced: dict[str, nn.Module | None] = {f"{prefix}.{path}": nn.ModuleList(layers)}
    if not layers and family.stack:  # no layer to run: the loop over them passes through
        replaced = {f"{prefix}.{family.stack}": PassThrough()}
    return view(model, replaced | _stored_inputs(family, base, f"{prefix}."))


def _stored_inputs(family: encoders.Encoder, base: nn.Module, prefix: str) -> dict:
    """Where the embeddings (and what the family lists with them) stood: the stored rows pass
    through as the first layer's input."""
    inputs = [p for p in family.inputs if _has(base, p)]
    stands_in = [StoredRows(), *(nn.Identity() for _ in inputs[1:])]  # rows, then nothing
    return {f"{prefix}{p}": module for p, module in zip(inputs, stands_in, strict=True)}


class PassThrough(nn.Module):
    """Where a family's loop over its layers stood (`Encoder.stack`), in a view with none:
    its input is its output."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor]:
        return (hidden_states,)


class StoredRows(nn.Module):
    """In the upper view, where the embeddings stood: the stored rows, given as `inputs_embeds`,
    pass through as the first upper layer's input."""

    def forward(self, input_ids=None, inputs_embeds=None, *args, **kwargs) -> torch.Tensor:
        return inputs_embeds


class CachedModel(nn.Module):
    """What the trainers train and evaluate when the frozen layers are cached: the model (its
    weights, what its state dict holds) and the cache's call path for a batch with
    `cache_rows`."""

    main_input_name = "input_ids"

    def __init__(self, model: nn.Module, cache: FrozenCache) -> None:
        super().__init__()
        self.model = model
        self.__dict__["cache"] = cache  # not a submodule: its views share the model's weights
        self.__dict__["config"] = model.config

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache_rows: torch.Tensor | None = None,
    ):
        """The models' contract (what transformers' Trainer reads the label names from), and
        each example's row in the cache."""
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if token_type_ids is not None:  # a family that reads none is given none
            batch["token_type_ids"] = token_type_ids
        if cache_rows is None:
            return self.model(**batch)
        return self.cache.forward(cache_rows, **batch)

    def train(self, mode: bool = True) -> CachedModel:
        super().train(mode)
        self.cache.upper.train(mode)  # its own copies of the modules on its layers' path
        return self


class FrozenCache:
    """Each example's output of the frozen part, stored once, ragged (no padding stored): the
    rows of example i are `offsets[i]:offsets[i] + lengths[i]`."""

    def __init__(self, model: nn.Module, n: int, lengths: Sequence[int], dtype: torch.dtype):
        layers = encoders.layer_list(model)[2]
        self.n = n
        self.lower = encoder_view(model, layers[:n])
        self.upper = classifier_view(model, layers[n:])
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
        self.model = CachedModel(model, self)
        size, where = f"{self.nbytes / 1e6:.0f} MB", self.file or "memory"
        log.info(f"frozen cache: {len(self.lengths)} examples, {size} in {where}")

    def forward(self, cache_rows: torch.Tensor, **batch: torch.Tensor):
        """The upper layers on the batch's stored rows, the rows not stored yet first run and
        stored; the model's output (loss with labels, logits)."""
        rows = cache_rows.cpu().numpy()
        missing = ~self.filled[rows]
        if missing.any():
            inputs = ("input_ids", "attention_mask", "token_type_ids")
            chosen = torch.from_numpy(missing).to(batch["input_ids"].device)
            self._fill(rows[missing], {k: v[chosen] for k, v in batch.items() if k in inputs})
        weight = next(self.upper.parameters())
        hidden = self._gather(rows, batch["input_ids"].shape[1]).to(weight.device, weight.dtype)
        given = {k: v for k, v in batch.items() if k != "input_ids"}
        return self.upper(inputs_embeds=hidden, **given)

    @torch.no_grad()
    def _fill(self, rows: np.ndarray, inputs: dict[str, torch.Tensor]) -> None:
        """Run the lower view on these examples (in eval mode: see `freeze`) and store each
        one's unpadded rows: its last frozen layer's output."""
        hidden = self.lower(**inputs)[0].to(self.dtype).cpu()
        for row, h in zip(rows.tolist(), hidden, strict=True):
            start, n = self.offsets[row], self.lengths[row]
            self.values[start : start + n] = _to_numpy(h[:n])
        self.filled[rows] = True

    def packed_rows(self, cache_rows: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """A packed batch's stored rows, its examples end to end (tokens x hidden); a batch with
        rows not stored yet first runs the lower view on `inputs` (packed: src.models.packed)."""
        rows = cache_rows.cpu().numpy()
        if not self.filled[rows].all():
            self._fill_packed(rows, inputs)
        ends = self.offsets[rows] + self.lengths[rows]
        parts = [self.values[a:b] for a, b in zip(self.offsets[rows], ends, strict=True)]
        return _from_numpy(np.concatenate(parts), self.dtype)

    @torch.no_grad()
    def _fill_packed(self, rows: np.ndarray, inputs: dict[str, torch.Tensor]) -> None:
        hidden = self.lower(**inputs)[0][0].to(self.dtype).cpu()
        start = 0
        for row in rows.tolist():
            a, n = self.offsets[row], self.lengths[row]
            if not self.filled[row]:
                self.values[a : a + n] = _to_numpy(hidden[start : start + n])
            start += n
        self.filled[rows] = True

    def _gather(self, rows: np.ndarray, width: int) -> torch.Tensor:
        """The stored rows of these examples, padded with zeros to the batch's width."""
        out = torch.zeros(len(rows), width, self.values.shape[1], dtype=self.dtype)
        for i, row in enumerate(rows.tolist()):
            start, n = self.offsets[row], self.lengths[row]
            out[i, :n] = _from_numpy(self.values[start : start + n], self.dtype)
        return out

    def close(self) -> None:
        """The stored rows, and the file if any, let go."""
        self.values = None
        if self.file:
            _remove(self.file)


def _has(module: nn.Module, path: str) -> bool:
    try:
        return module.get_submodule(path) is not None
    except AttributeError:
        return False


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t

"""Padding-free batches (`trainer.padding_free=true`): the encoder computes no pad token.

src.data.collate.PackedCollator puts a batch's examples end to end in one row and says where
each starts (`cu_seq_lens`, flash-attention's varlen format). `PackedModel` runs the encoder's
layers on that row, each token attending only to its own example's, then puts the last layer's
output back into padded rows for what reads a padded batch (ModernBERT's final norm, the
pooler, either head, the loss), through the two views of src.models.frozen made once: the
encoder with every layer and nothing after them, and the classifier with no layer at all.
What is computed per token (every Linear, the feed-forward, the norms) then costs the
batch's real tokens, not its longest example times its size; only the head sees pads.

Attention inside each example is `varlen_attention`, registered with transformers'
AttentionInterface as "varlen" (each family in src.models.encoders with `varlen`: those whose
attention goes through that interface; DeBERTa's disentangled attention does not). On CUDA in
bf16 or fp16 it is PyTorch's flash-attention varlen kernel (`torch.nn.attention.varlen`),
without attention dropout, which that kernel lacks; with attention dropout while training it is
SDPA on a jagged nested tensor, where PyTorch picks a fused kernel; on the CPU, SDPA per
example. Positions restart at each example (RoBERTa's after its pad id, as its embeddings
count them), so the packed row's output equals the padded batch's real rows.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.varlen import varlen_attn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import flash_attention_mask

from src.models import encoders
from src.models.frozen import FrozenCache, classifier_view, encoder_view

ATTENTION = "varlen"  # the attention implementation a packed model's encoder runs
_VARLEN_TAKES = set(inspect.signature(varlen_attn).parameters)  # torch 2.9's lacks a few


def varlen_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    sliding_window: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention contract (query, key, value: batch x heads x tokens x dims;
    returns batch x tokens x heads x dims). Packed (`cu_seq_lens_q` given): attention within
    each example of the one row. Padded: SDPA with the batch's 2-D mask (what the "varlen"
    mask function hands on), as transformers' sdpa. `sliding_window` (ModernBERT's local
    layers, flash-attention's convention): a token sees those less than that far away."""
    window = None if sliding_window is None else sliding_window - 1
    if cu_seq_lens_q is None:
        n = query.shape[2]
        mask = None if attention_mask is None else attention_mask[:, None, None, :].bool()
        if window is not None:
            mask = (
                _band(n, window, query.device)
                if mask is None
                else mask & _band(n, window, query.device)
            )
        return sdpa_attention_forward(
            module, query, key, value, mask, dropout=dropout, scaling=scaling, is_causal=False
        )
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # tokens x heads x dims
    if not module.training:
        dropout = 0.0
    flash = q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and not dropout
    if flash and (window is None or "window_size" in _VARLEN_TAKES):
        cu, given = cu_seq_lens_q.to(torch.int32), {}
        if window is not None:
            given["window_size"] = (window, window)
        if scaling is not None and "scale" in _VARLEN_TAKES:
            given["scale"] = scaling
        elif scaling is not None:  # torch 2.9's varlen_attn scales by 1/sqrt(dims) alone
            q = q * (scaling * q.shape[-1] ** 0.5)
        out = varlen_attn(q, k, v, cu, cu, max_length_q, max_length_q, **given)
    elif q.is_cuda and window is None:
        out = _jagged(q, k, v, cu_seq_lens_q, dropout, scaling)
    else:
        out = _per_example(q, k, v, cu_seq_lens_q, dropout, scaling, window)
    return out[None], None


def _band(n: int, window: int, device) -> torch.Tensor:
    """Which of n tokens each sees within `window` places (an SDPA boolean mask)."""
    place = torch.arange(n, device=device)
    return (place[:, None] - place[None, :]).abs() <= window


def _jagged(q, k, v, cu, dropout: float, scaling: float | None) -> torch.Tensor:
    """SDPA on nested tensors of jagged layout: one fused call over examples of any length."""
    offsets = cu.to(torch.int64)
    nested = [torch.nested.nested_tensor_from_jagged(t, offsets).transpose(1, 2) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*nested, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).values()


def _per_example(q, k, v, cu, dropout: float, scaling: float | None, window: int | None):
    """SDPA example by example (the CPU's path; a window where one is given)."""
    bounds, parts = cu.tolist(), []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        mask = None if window is None else _band(b - a, window, q.device)
        one = (t[a:b].transpose(0, 1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(*one, attn_mask=mask, dropout_p=dropout, scale=scaling)
        parts.append(out.transpose(0, 1))
    return torch.cat(parts)


def register() -> None:
    """ "varlen" in transformers' attention and mask interfaces (its mask: flash-attention's,
    the 2-D padding mask or none). Called where a packed model is made, not at import."""
    AttentionInterface.register(ATTENTION, varlen_attention)
    AttentionMaskInterface.register(ATTENTION, flash_attention_mask)


class PackedModel(nn.Module):
    """What the trainers train and evaluate with padding-free batches: the model (its weights,
    what its state dict holds) and the packed call path around it."""

    main_input_name = "input_ids"

    def __init__(self, model: nn.Module, cache: FrozenCache | None = None) -> None:
        super().__init__()
        register()
        self.model = model
        family, (base, _, layers) = encoders.of(model), encoders.layer_list(model)
        base.config._attn_implementation = ATTENTION
        self.offset = int(base.config.pad_token_id or 0) + 1 if family.position_offset else 0
        # views, not submodules: they share the model's weights
        self.__dict__["encoder"] = encoder_view(model, layers)
        self.__dict__["head"] = classifier_view(model, [])
        self.__dict__["config"] = model.config
        # backbone.cache_frozen: the stored rows of the lower layers, then the upper ones
        self.__dict__["cache"] = cache
        if cache is not None:
            self.__dict__["upper"] = encoder_view(model, layers[cache.n :], stored=True)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cu_seq_lens: torch.Tensor,
        max_length: int,
        padded_index: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache_rows: torch.Tensor | None = None,
    ):
        """The model's output (loss with labels, logits) for a packed batch
        (src.data.collate.PackedCollator's keys; `cache_rows` with backbone.cache_frozen)."""
        packed = {
            "position_ids": position_ids + self.offset,
            "cu_seq_lens_q": cu_seq_lens,
            "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": max_length,
            "max_length_k": max_length,
        }
        inputs = {"input_ids": input_ids, **packed}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if cache_rows is not None and self.cache is not None:
            stored = self.cache.packed_rows(cache_rows, **inputs)
            weight = next(self.head.parameters())
            hidden = self.upper(inputs_embeds=stored.to(weight)[None], **packed)[0][0]
        else:
            hidden = self.encoder(**inputs)[0][0]
        rows, width = attention_mask.shape
        padded = hidden.new_zeros(rows * width, hidden.shape[-1])
        padded = padded.index_copy(0, padded_index, hidden).view(rows, width, -1)
        return self.head(inputs_embeds=padded, attention_mask=attention_mask, labels=labels)

    def train(self, mode: bool = True) -> PackedModel:
        super().train(mode)
        self.encoder.train(mode)  # the views' own copies of the modules on their paths
        self.head.train(mode)
        if self.cache is not None:
            self.upper.train(mode)
        return self

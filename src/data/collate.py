"""Collation: a batch padded to its own longest example, or packed without padding."""

from __future__ import annotations

import numpy as np

CACHE_ROW = "cache_row"  # an example's row in the frozen cache (backbone.cache_frozen)
# what a packed batch adds to the model's inputs (src.models.packed.PackedModel reads them)
PACKED_KEYS = ("position_ids", "cu_seq_lens", "max_length", "padded_index")


class Collator:
    """Pads each batch to its own longest example, not every review to max_length; the `doc`
    index stays out of the batch (the models take input_ids, attention_mask, token_type_ids,
    labels). With `backbone.cache_frozen`, each example's `cache_row` becomes the batch's
    `cache_rows`: where src.models.frozen stores its frozen layers' output."""

    def __init__(self, tokenizer) -> None:
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.pad(
            [{k: v for k, v in e.items() if k not in ("doc", CACHE_ROW)} for e in examples]
        )
        _cache_rows(examples, batch)
        return batch


class PackedCollator:
    """`trainer.padding_free`: a batch's word pieces end to end in one row (`input_ids` and
    `token_type_ids` of shape 1 x tokens), no pad token in it, with what the packed model needs
    to keep examples apart: `position_ids` (each token's place in its example),
    `cu_seq_lens` (where each example starts, then the total: flash-attention's varlen
    format), `max_length` (the longest example, an int) and, for the head, which reads a padded
    batch, `padded_index` (each token's row x width + place) and `attention_mask` (batch x
    longest). Built on the host, so the step asks the device for none of it."""

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        lengths = [len(e["input_ids"]) for e in examples]
        width, n = max(lengths, default=0), len(examples)
        starts = [0]
        for length in lengths:
            starts.append(starts[-1] + length)
        place = torch.cat([torch.arange(length) for length in lengths])
        row = torch.repeat_interleave(torch.arange(n), torch.tensor(lengths))
        batch = {
            "input_ids": torch.tensor([t for e in examples for t in e["input_ids"]])[None],
            "attention_mask": torch.arange(width)[None] < torch.tensor(lengths)[:, None],
            "position_ids": place[None],
            "cu_seq_lens": torch.tensor(starts, dtype=torch.int32),
            "max_length": width,
            "padded_index": row * width + place,
        }
        if examples and "token_type_ids" in examples[0]:
            types = [t for e in examples for t in e["token_type_ids"]]
            batch["token_type_ids"] = torch.tensor(types)[None]
        if examples and "labels" in examples[0]:
            labels = [e["labels"] for e in examples]
            if hasattr(labels[0], "shape") and labels[0].shape:  # multi-hot rows (multi_label)
                batch["labels"] = torch.from_numpy(np.stack(labels))
            else:  # one number each, as the padded batch's tensor holds them
                batch["labels"] = torch.tensor(labels)
        _cache_rows(examples, batch)
        return batch


def _cache_rows(examples: list[dict], batch: dict) -> None:
    if examples and CACHE_ROW in examples[0]:
        import torch

        batch["cache_rows"] = torch.tensor([e[CACHE_ROW] for e in examples])


def collator(tokenizer, padding_free: bool = False) -> Collator | PackedCollator:
    return PackedCollator() if padding_free else Collator(tokenizer)

"""Collation: a batch padded to its own longest example."""

from __future__ import annotations

CACHE_ROW = "cache_row"  # an example's row in the frozen cache (backbone.cache_frozen)


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
        if examples and CACHE_ROW in examples[0]:
            import torch

            batch["cache_rows"] = torch.tensor([e[CACHE_ROW] for e in examples])
        return batch


def collator(tokenizer) -> Collator:
    return Collator(tokenizer)

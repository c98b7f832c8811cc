"""Collation: a batch padded to its own longest example."""

from __future__ import annotations


class Collator:
    """Pads each batch to its own longest example, not every review to max_length; the `doc`
    index stays out of the batch (the models take input_ids, attention_mask, token_type_ids,
    labels)."""

    def __init__(self, tokenizer) -> None:
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, examples: list[dict]) -> dict:
        return self.pad([{k: v for k, v in e.items() if k != "doc"} for e in examples])


def collator(tokenizer) -> Collator:
    return Collator(tokenizer)

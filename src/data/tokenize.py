"""Tokenization: each text cut to max_length word pieces by a truncation strategy, or into
overlapping windows (`chunks`); training, evaluation and `src.predict` all cut texts here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from src.errors import UserError

if TYPE_CHECKING:
    from src.data.corpora import Split

TRUNCATIONS = ("head", "tail", "head_tail", "chunks")
TOKENIZE_CHUNK = 256  # texts per tokenizer call: one progress-bar tick


def truncate(ids: list[int], budget: int, strategy: str) -> list[int]:
    """Keep `budget` word pieces: the first (head), the last (tail), or a quarter from the start
    and the rest from the end (head_tail; Sun et al. 2019: reviews state their verdict last)."""
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[len(ids) - budget :]
    if strategy == "head_tail":
        n_head = (budget + 2) // 4  # 128 + 382 at max_length 512
        return ids[:n_head] + ids[len(ids) - (budget - n_head) :]
    raise UserError(f"truncation={strategy}: unknown strategy; use one of {', '.join(TRUNCATIONS)}")


def windows(ids: list[int], budget: int, stride: int) -> list[list[int]]:
    """`truncation=chunks`: every word piece, in windows of `budget` that overlap by `stride`
    (the last one ends at the text's end; a short text is one window)."""
    step = budget - stride
    return [ids[start : start + budget] for start in range(0, max(len(ids) - stride, 1), step)]


def encode_texts(
    tokenizer, texts: Sequence[str], max_length: int, truncation: str, stride: int = 0
) -> list[dict]:
    """Tokenize without truncation, then cut each text with the chosen strategy; `doc` is the
    index of the text an example came from (several windows share one with `chunks`).

    Training and `src.predict` both go through here, so a prediction sees exactly the word
    pieces the model was trained on. Tokenizes in chunks to show progress on a terminal.
    """
    from tqdm.auto import tqdm

    # The ids the tokenizer puts before and after a single sequence ([CLS] ... [SEP] for BERT).
    probe = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    at = next(i for i in range(len(full)) if full[i : i + len(probe)] == probe)
    prefix, suffix = full[:at], full[at + len(probe) :]
    budget = max_length - len(prefix) - len(suffix)
    with_types = "token_type_ids" in tokenizer.model_input_names
    examples = []
    starts = range(0, len(texts), TOKENIZE_CHUNK)
    for start in tqdm(starts, desc="tokenize", unit="chunk", leave=False, disable=None):
        chunk = list(texts[start : start + TOKENIZE_CHUNK])
        tokenized = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
        for doc, ids in enumerate(tokenized, start=start):
            cuts = (
                windows(ids, budget, stride)
                if truncation == "chunks"
                else [truncate(ids, budget, truncation)]
            )
            examples.extend(example(prefix + cut + suffix, doc, with_types) for cut in cuts)
    return examples


def example(input_ids: list[int], doc: int, with_types: bool) -> dict:
    """One model input: its ids, a full attention mask, segment 0 where the model takes types."""
    example = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids)}
    if with_types:
        example["token_type_ids"] = [0] * len(input_ids)
    return {**example, "doc": doc}


def encode(
    tokenizer, split: Split, max_length: int, truncation: str, stride: int = 0
) -> list[dict]:
    """`encode_texts` plus each example's label (a window carries its document's)."""
    examples = encode_texts(tokenizer, split.texts, max_length, truncation, stride)
    return [{**e, "labels": split.labels[e["doc"]]} for e in examples]


def docs(examples: list[dict]) -> list[int]:
    """Each example's document: what predictions are pooled by."""
    return [e["doc"] for e in examples]

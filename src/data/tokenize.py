"""Tokenization: each text cut to max_length word pieces by a truncation strategy, or into
overlapping windows (`chunks`); training, evaluation and `src.predict` all cut texts here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from src.config.errors import UserError
from src.config.knobs import TRUNCATIONS  # the truncation knob's vocabulary
from src.data.encoded import Encoded, from_parts

if TYPE_CHECKING:
    from src.data.corpora import Split

# A pair's texts share one window, so `chunks` cuts each text of a pair to its share as head_tail
# does (windows over two texts at once have no one meaning); src.trainers.build says so in the log.
FOR_PAIRS = {"chunks": "head_tail"}
TOKENIZE_BATCH = 256  # texts per tokenizer call: one progress-bar tick


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


def allot(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many word pieces each text of a pair keeps when both cannot: the shorter keeps all
    of its own up to half the budget, the longer the rest (what transformers' `longest_first`
    arrives at). Each text is then cut to its share by the truncation strategy."""
    if len_a + len_b <= budget:
        return len_a, len_b
    if len_a <= len_b:
        keep_a = min(len_a, budget // 2)
        return keep_a, budget - keep_a
    keep_b = min(len_b, budget // 2)
    return budget - keep_b, keep_b


class _Layout:
    """Where the tokenizer puts its special tokens around one text, or around a pair ([CLS] a
    [SEP] for BERT; [CLS] a [SEP] b [SEP]), and the segment id of each part: read from the
    tokenizer itself, so any BERT-family layout works."""

    def __init__(self, tokenizer, pair: bool) -> None:
        probes = ["a", "b"] if pair else ["a"]
        pieces = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in probes]
        full = tokenizer(*probes, return_token_type_ids=True)
        ids, types = full["input_ids"], full["token_type_ids"]
        self.parts, self.types, start = [], [], 0
        for piece in pieces:  # the special tokens before each text, and the text's segment id
            at = next(i for i in range(start, len(ids)) if ids[i : i + len(piece)] == piece)
            self.parts.append(ids[start:at])
            self.types += [types[start:at], types[at]]
            start = at + len(piece)
        self.parts.append(ids[start:])
        self.types.append(types[start:])
        self.special = sum(map(len, self.parts))

    def join(self, cuts: list[list[int]]) -> tuple[list[int], list[int]]:
        """The model input of the cut text(s), and its segment ids."""
        ids, types = list(self.parts[0]), list(self.types[0])
        for i, cut in enumerate(cuts):
            ids += cut + self.parts[i + 1]
            types += [self.types[2 * i + 1]] * len(cut) + self.types[2 * i + 2]
        return ids, types


def encode_texts(
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    truncation: str,
    stride: int = 0,
    pairs: Sequence[str] | None = None,
) -> Encoded:
    """Tokenize without truncation, then cut each text with the chosen strategy; `doc` is the
    index of the text an example came from (several windows share one with `chunks`).

    With `pairs` (a second text per example: sentence-pair tasks) both go in as the tokenizer
    pairs them, segment ids 0 and 1, sharing max_length: `allot` splits it, and each text is
    cut to its share by the strategy (`chunks` by head_tail's: FOR_PAIRS).
    Training, evaluation and `src.predict` all go through here, so a prediction sees exactly
    the word pieces the model was trained on. Tokenizes in chunks (a progress-bar tick each),
    each chunk's word pieces going straight into an int32 array (src.data.encoded).
    """
    from tqdm.auto import tqdm

    layout = _Layout(tokenizer, pair=pairs is not None)
    budget = max_length - layout.special
    with_types = "token_type_ids" in tokenizer.model_input_names
    id_parts, type_parts, lengths, doc_of = [], [] if pairs is not None else None, [], []
    starts = range(0, len(texts), TOKENIZE_BATCH)
    for start in tqdm(starts, desc="tokenize", unit="chunk", leave=False, disable=None):
        stop = start + TOKENIZE_BATCH
        sides = [texts[start:stop]] + ([pairs[start:stop]] if pairs is not None else [])
        tokenized = [
            tokenizer(list(side), add_special_tokens=False, verbose=False)["input_ids"]
            for side in sides
        ]
        chunk_ids, chunk_types = [], []
        for doc, ids in enumerate(zip(*tokenized, strict=True), start=start):
            if pairs is not None:
                shares = allot(len(ids[0]), len(ids[1]), budget)
                pair, cut_by = zip(ids, shares, strict=True), FOR_PAIRS.get(truncation, truncation)
                cuts = [[truncate(side, share, cut_by) for side, share in pair]]
            elif truncation == "chunks":
                cuts = [[window] for window in windows(ids[0], budget, stride)]
            else:
                cuts = [[truncate(ids[0], budget, truncation)]]
            for cut in cuts:
                input_ids, token_types = layout.join(cut)
                chunk_ids += input_ids
                if type_parts is not None:
                    chunk_types += token_types
                lengths.append(len(input_ids))
                doc_of.append(doc)
        id_parts.append(np.asarray(chunk_ids, dtype=np.int32))
        if type_parts is not None:
            type_parts.append(np.asarray(chunk_types, dtype=np.int8))
    return from_parts(id_parts, type_parts, lengths, doc_of, with_types)


def encode(tokenizer, split: Split, max_length: int, truncation: str, stride: int = 0) -> Encoded:
    """`encode_texts` with the split's labels (a window carries its document's)."""
    examples = encode_texts(tokenizer, split.texts, max_length, truncation, stride, split.pairs)
    return examples.with_labels(split.labels)

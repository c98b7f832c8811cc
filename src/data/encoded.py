"""Encoded splits as arrays: every example's word pieces end to end in one int32 array, with
each example's length and text, so a split costs 4 bytes per word piece (plus one byte of
segment ids for sentence pairs) instead of a Python list of dicts of ints (about 17 KB per
example at 256 word pieces). The tokenize cache stores the same arrays and memory-maps them
back (src.data.cache).

An `Encoded` is a sequence of examples: `encoded[i]` is the dict the models' collator takes
(`input_ids`, `attention_mask`, `token_type_ids` where the model takes them, `doc`, `labels`,
and `cache_row` with backbone.cache_frozen), made when a batch asks for it. Training,
evaluation, the test split and `src.predict` all read their batches from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Encoded(Sequence):
    """A split's model inputs. Example i is `ids[starts[i]:starts[i] + lengths[i]]`, cut from
    text `doc[i]` (windows of one text share it), labelled `labels[doc[i]]`."""

    ids: np.ndarray  # int32, every example's word pieces end to end
    lengths: np.ndarray  # int32, one per example
    doc: np.ndarray  # int32, the text each example was cut from
    types: np.ndarray | None = None  # int8 segment ids, like ids (sentence pairs); None: all 0
    with_types: bool = False  # whether the model takes token_type_ids
    labels: Sequence | None = None  # one per text
    first_row: int | None = None  # backbone.cache_frozen: example i's row is first_row + i

    def __post_init__(self) -> None:
        starts = np.zeros(len(self.lengths), dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=starts[1:])
        object.__setattr__(self, "starts", starts)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        a, n = int(self.starts[i]), int(self.lengths[i])
        example: dict[str, Any] = {
            "input_ids": self.ids[a : a + n].tolist(),
            "attention_mask": [1] * n,
        }
        if self.with_types:
            example["token_type_ids"] = (
                self.types[a : a + n].tolist() if self.types is not None else [0] * n
            )
        example["doc"] = int(self.doc[i])
        if self.labels is not None:
            example["labels"] = self.labels[example["doc"]]
        if self.first_row is not None:
            example["cache_row"] = self.first_row + i  # src.data.collate.CACHE_ROW
        return example

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Encoded | list):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # mutable labels: not hashable, as a list is not

    def with_labels(self, labels: Sequence) -> Encoded:
        return replace(self, labels=labels)

    def numbered(self, first_row: int) -> Encoded:
        """These examples as rows first_row, first_row + 1, ... of a frozen cache."""
        return replace(self, first_row=first_row)

    def targets(self) -> np.ndarray:
        """Every example's label (its text's), in order: what the metrics compare against."""
        return np.asarray([self.labels[d] for d in self.doc.tolist()])

    @property
    def nbytes(self) -> int:
        arrays = (self.ids, self.lengths, self.doc, self.types)
        return sum(a.nbytes for a in arrays if a is not None)


def from_parts(
    id_parts: list[np.ndarray],
    type_parts: list[np.ndarray] | None,
    lengths: list[int],
    doc: list[int],
    with_types: bool,
) -> Encoded:
    """An Encoded from the chunks tokenization produced."""
    return Encoded(
        ids=_join(id_parts, np.int32),
        lengths=np.asarray(lengths, dtype=np.int32),
        doc=np.asarray(doc, dtype=np.int32),
        types=None if type_parts is None else _join(type_parts, np.int8),
        with_types=with_types,
    )


def _join(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

"""Data: corpora -> the notebook's split -> label map -> tokenization -> batches.

Every dataset option returns a `Corpus` of raw texts and integer labels (`corpora`); one
tokenization cuts every split of it (`tokenize`), read from the tokenize cache when it can be
(`cache`), and batches are padded to their own longest example, or packed into one row
without padding (`collate`). The names below are
the package's public ones: `dataset._target_: src.data.MovieReviews` and the like. It imports
src.config and src.tasks (what a label is); no model, trainer or report.
"""

from src.data.cache import encode_cached, fingerprint
from src.data.collate import Collator, collator
from src.data.corpora import (
    Columns,
    Corpus,
    Files,
    HFDataset,
    MovieReviews,
    Split,
    Splits,
    label_list,
    log_label_counts,
    read_rows,
    read_text,
)
from src.data.encoded import Encoded
from src.data.tokenize import (
    FOR_PAIRS,
    TRUNCATIONS,
    encode,
    encode_texts,
    truncate,
    windows,
)

__all__ = [
    "FOR_PAIRS",
    "TRUNCATIONS",
    "Collator",
    "Columns",
    "Corpus",
    "Encoded",
    "Files",
    "HFDataset",
    "MovieReviews",
    "Split",
    "Splits",
    "collator",
    "encode",
    "encode_cached",
    "encode_texts",
    "fingerprint",
    "label_list",
    "log_label_counts",
    "read_rows",
    "read_text",
    "truncate",
    "windows",
]

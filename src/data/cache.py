"""The tokenize cache: encoded splits stored once per (texts, tokenizer, cut), so a sweep's
jobs and reruns tokenize once. An entry that cannot be read is dropped and tokenized again."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from src.data.tokenize import encode, example
from src.rundir import atomic

if TYPE_CHECKING:
    from src.data.corpora import Split

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when encode_texts' output changes: older entries then miss


def fingerprint(tokenizer, texts: Sequence[str], max_length: int, truncation: str,
                stride: int, pairs: Sequence[str] | None = None) -> str:  # fmt: skip
    """What an encoding depends on: the texts (and their pairs), the whole tokenizer (vocab,
    normalizer, special tokens: its serialized form, not its name) and how texts are cut."""
    digest = hashlib.sha256()
    if tokenizer.is_fast:  # less the padding and truncation state its last call left behind
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        identity = json.dumps(
            {k: v for k, v in state.items() if k not in ("padding", "truncation")}
        )
    else:
        identity = json.dumps(sorted(tokenizer.get_vocab().items())) + repr(tokenizer.init_kwargs)
    cut = [max_length, truncation, stride if truncation == "chunks" else 0]
    setting = [CACHE_FORMAT, type(tokenizer).__name__, tokenizer.model_input_names, *cut]
    second = ("\x01 pairs", *pairs) if pairs is not None else ()  # none: the keys of before
    for part in (json.dumps(setting), identity, *texts, *second):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def encode_cached(tokenizer, split: Split, max_length: int, truncation: str, stride: int = 0,
                  cache_dir: str | Path | None = None) -> list[dict]:  # fmt: skip
    """`encode`, read from `cache_dir` when these texts were cut this way before (a sweep's
    jobs, a rerun), else tokenized and stored there. Entries are written whole or not at all
    (src.rundir.atomic), so parallel jobs that miss together each write a whole file and
    readers never see half of one. `cache_dir=None`: tokenize every time."""
    if cache_dir is None:
        return encode(tokenizer, split, max_length, truncation, stride)
    import numpy as np

    key = fingerprint(tokenizer, split.texts, max_length, truncation, stride, split.pairs)
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file() and (examples := _read(path, tokenizer, split)) is not None:
        log.info(f"tokenized {len(split)} texts: read from {path}")
        return examples
    examples = encode(tokenizer, split, max_length, truncation, stride)
    arrays = {
        "input_ids": np.fromiter((i for e in examples for i in e["input_ids"]), np.int32),
        "lengths": np.array([len(e["input_ids"]) for e in examples], np.int32),
        "doc": np.array([e["doc"] for e in examples], np.int32),
    }
    if split.pairs is not None and examples and "token_type_ids" in examples[0]:
        arrays["types"] = np.fromiter((t for e in examples for t in e["token_type_ids"]), np.int8)
    with atomic(path, "wb") as f:
        np.savez(f, **arrays)
    log.info(f"tokenized {len(split)} texts: stored in {path}")
    return examples


def _read(path: Path, tokenizer, split: Split) -> list[dict] | None:
    """A stored entry's examples, with the split's labels; None (the entry dropped, with a
    warning) when it cannot be read: truncated by a full disk, damaged, of another layout."""
    import numpy as np

    try:
        with np.load(path) as stored:
            ids, lengths, doc = stored["input_ids"], stored["lengths"], stored["doc"]
            types = stored["types"] if "types" in stored else np.zeros_like(ids)  # one text: 0
        if (
            lengths.sum() != len(ids)
            or len(types) != len(ids)
            or (len(doc) and doc.max() >= len(split))
        ):
            raise ValueError("its arrays do not fit together")
    except Exception as e:  # zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError...
        log.warning(f"tokenize cache: dropped {path}, which cannot be read "
                    f"({type(e).__name__}: {e}); tokenizing again")  # fmt: skip
        path.unlink(missing_ok=True)
        return None
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    with_types = "token_type_ids" in tokenizer.model_input_names
    cut = [(start, start + n) for start, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
    return [
        {
            **example(ids[a:b].tolist(), types[a:b].tolist(), d, with_types),
            "labels": split.labels[d],
        }
        for (a, b), d in zip(cut, doc.tolist(), strict=True)
    ]

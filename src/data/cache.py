"""The tokenize cache: encoded splits stored once per (texts, tokenizer, cut), so a sweep's
jobs and reruns tokenize once. An entry that cannot be read is dropped and tokenized again."""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.config.rundir import atomic
from src.data.encoded import Encoded
from src.data.tokenize import encode

if TYPE_CHECKING:
    from src.data.corpora import Split

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when encode_texts' output changes: older entries then miss


def fingerprint(
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    truncation: str,
    stride: int,
    pairs: Sequence[str] | None = None,
) -> str:
    """What an encoding depends on: the texts (and their pairs), the whole tokenizer (vocab,
    normalizer, special tokens: its serialized form, not its name) and how texts are cut."""
    digest = hashlib.sha256()
    if tokenizer.is_fast:
        identity = _serialized(tokenizer.backend_tokenizer)
    else:
        identity = json.dumps(sorted(tokenizer.get_vocab().items())) + repr(tokenizer.init_kwargs)
    cut = [max_length, truncation, stride if truncation == "chunks" else 0]
    setting = [CACHE_FORMAT, type(tokenizer).__name__, tokenizer.model_input_names, *cut]
    second = ("\x01 pairs", *pairs) if pairs is not None else ()  # none: the keys of before
    for part in (json.dumps(setting), identity, *texts, *second):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _serialized(backend) -> str:
    """A fast tokenizer's serialized form less the padding and truncation its last call left
    behind, which are set aside while it is written, then put back (6 ms for MiniLM's; parsing
    and re-writing its 460 KB of JSON took 90 ms, three times a run)."""
    padding, truncation = backend.padding, backend.truncation
    backend.no_padding()
    backend.no_truncation()
    try:
        return backend.to_str()
    finally:
        if padding is not None:
            backend.enable_padding(**padding)
        if truncation is not None:
            backend.enable_truncation(**truncation)


def encode_cached(
    tokenizer,
    split: Split,
    max_length: int,
    truncation: str,
    stride: int = 0,
    cache_dir: str | Path | None = None,
) -> Encoded:
    """`encode`, read from `cache_dir` when these texts were cut this way before (a sweep's
    jobs, a rerun), else tokenized and stored there. Entries are written whole or not at all
    (src.config.rundir.atomic), so parallel jobs that miss together each write a whole file and
    readers never see half of one. An entry is an uncompressed .npz of the split's arrays,
    which a hit memory-maps (`_mapped`): the pages are read as batches need them, and jobs on
    one machine share them. `cache_dir=None`: tokenize every time."""
    if cache_dir is None:
        return encode(tokenizer, split, max_length, truncation, stride)

    key = fingerprint(tokenizer, split.texts, max_length, truncation, stride, split.pairs)
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file() and (examples := _read(path, tokenizer, split)) is not None:
        log.info(f"tokenized {len(split)} texts: read from {path}")
        return examples
    examples = encode(tokenizer, split, max_length, truncation, stride)
    arrays = {"input_ids": examples.ids, "lengths": examples.lengths, "doc": examples.doc}
    if examples.types is not None:
        arrays["types"] = examples.types
    with atomic(path, "wb") as f:
        np.savez(f, **arrays)
    log.info(f"tokenized {len(split)} texts: stored in {path}")
    return examples


def _read(path: Path, tokenizer, split: Split) -> Encoded | None:
    """A stored entry's examples, with the split's labels; None (the entry dropped, with a
    warning) when it cannot be read: truncated by a full disk, damaged, of another layout."""
    try:
        stored = _mapped(path)
        ids, lengths, doc = stored["input_ids"], stored["lengths"], stored["doc"]
        types = stored.get("types")
        if (
            lengths.sum() != len(ids)
            or (types is not None and len(types) != len(ids))
            or len(doc) != len(lengths)
            or (len(doc) and doc.max() >= len(split))
        ):
            raise ValueError("its arrays do not fit together")
    except Exception as e:  # zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError...
        log.warning(
            f"tokenize cache: dropped {path}, which cannot be read "
            f"({type(e).__name__}: {e}); tokenizing again"
        )
        path.unlink(missing_ok=True)
        return None
    with_types = "token_type_ids" in tokenizer.model_input_names
    return Encoded(ids, lengths, doc, types, with_types, labels=split.labels)


def _mapped(path: Path) -> dict:
    """The arrays of an uncompressed .npz (what np.savez writes), memory-mapped where they lie
    in the file: np.load would read each one whole into memory."""

    arrays = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as f:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{info.filename}: not an uncompressed array")
            f.seek(info.header_offset)
            local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{info.filename}: no local file header")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            name = info.filename[: -len(".npy")]
            if int(np.prod(shape)) == 0:
                arrays[name] = np.zeros(shape, dtype)
            else:
                arrays[name] = np.memmap(
                    path,
                    dtype=dtype,
                    mode="r",
                    offset=f.tell(),
                    shape=shape,
                    order="F" if fortran else "C",
                )
    return arrays

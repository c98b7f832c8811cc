"""Corpora: every dataset option returns a `Corpus` of raw texts and their labels.

What a label is (an id, a set of ids, a number) is the task's (src.tasks): `load(task)` reads
and splits the labels through it; without a task, labels are single-label ids.

The notebook's movie_reviews split, your own CSV / TSV / JSONL files, anything `datasets`
loads; the stratified splits, the label map and the data files' readers they share.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import logging
import os
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from src.config.errors import UserError
from src.config.schema import Spec, param
from src.tasks.task import SingleLabel, Task, label_list

log = logging.getLogger(__name__)

EMPTY_TEXT = ("drop", "error")
MINORITY_SHARE = 0.1  # a class rarer than this in train gets a warning
FIELD_SIZE_LIMIT = 2**31 - 1  # the largest the csv module takes on every platform (a C long)


@dataclass
class Split:
    """Texts and their labels; `pairs`, for sentence-pair tasks, the second text of each."""

    texts: list[str]
    labels: list
    pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int | None) -> Split:
        return self if n is None else self.take(range(min(n, len(self))))

    def take(self, rows: Iterable[int]) -> Split:
        rows = list(rows)
        pairs = None if self.pairs is None else [self.pairs[i] for i in rows]
        return Split([self.texts[i] for i in rows], [self.labels[i] for i in rows], pairs)


@dataclass
class Corpus:
    """Train / eval / test splits and the label names (index = label id)."""

    train: Split
    eval: Split
    test: Split
    label_names: list[str]
    eval_split: str  # "test" (the notebook: select the best epoch on the test set) or "validation"

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))


def log_label_counts(corpus: Corpus, task: Task | None = None) -> None:
    """Each split's examples per label (regression: the values' spread); a warning for a class
    under MINORITY_SHARE of train, where an unweighted loss can learn to never predict it
    (`class_weights=balanced`)."""
    task, names = task or SingleLabel(), corpus.label_names
    for split, shown in (("train", "train"), ("eval", corpus.eval_split), ("test", "test")):
        if split == "eval" and corpus.eval_split == "test":
            continue  # the notebook's way: the test split is also the eval split
        labels = getattr(corpus, split).labels
        counts = task.counts(labels, names)
        if counts is None:
            log.info(f"labels in {shown}: {task.describe(labels)}")
            continue
        log.info(f"labels in {shown}: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
        if split == "train" and (
            rare := [
                n
                for n, c in counts.items()
                if c < MINORITY_SHARE * len(labels) and not n.startswith("(")
            ]
        ):
            log.warning(
                f"class {', '.join(rare)} is under {MINORITY_SHARE:.0%} of the training data; "
                "class_weights=balanced weights the loss by inverse class frequency"
            )


def _split(
    split: Split,
    test_size: float,
    seed: int,
    key: str = "test_size",
    stratify: bool = True,
    names: list[str] | None = None,
) -> tuple[Split, Split]:
    """A stratified split (scikit-learn's train_test_split, as the notebook: the same rows
    whatever the split carries besides its texts); `stratify=False` (label sets, numbers): a
    seeded random one. A class too small to stratify is named by its label (`names`)."""

    from sklearn.model_selection import train_test_split

    few = (
        sorted(str(names[y] if names else y) for y, n in Counter(split.labels).items() if n < 2)
        if stratify
        else []
    )
    if few:
        fix = "give dataset.test_file" if key == "test_size" else f"set dataset.{key}=0"
        raise UserError(
            f"dataset.{key}={test_size}: cannot split the data stratified: "
            f"{', '.join(repr(f) for f in few)} {'has' if len(few) == 1 else 'have'} a single "
            f"example (each class needs 2); {fix}, add examples, or drop that class"
        )
    try:
        rows_tr, rows_te = train_test_split(
            range(len(split)),
            stratify=split.labels if stratify else None,
            random_state=seed,
            test_size=test_size,
            shuffle=True,
        )
    except ValueError as e:  # too few examples of a class to stratify, or test_size out of range
        raise UserError(f"dataset.{key}={test_size}: cannot split the data ({e})") from None
    return split.take(rows_tr), split.take(rows_te)


@dataclass
class Splits(Spec):
    """How the data becomes train / eval / test (shared by every dataset option)."""

    test_size: float = param(0.2, "the test share when there is no test file", gt=0, lt=1)
    split_seed: int = param(42, "fixed apart from `seed`, so a seed sweep keeps one split")
    val_size: float = param(
        0.1,
        "a stratified share of train that picks the epoch and drives early stopping (the "
        "test split is scored once, at the end); 0: pick on test (optimistic; the notebook "
        "presets do)",
        ge=0,
        lt=1,
    )
    max_train_samples: int | None = param(None, "cap for debugging; null = all", ge=1)
    max_eval_samples: int | None = param(None, "cap for debugging; null = all", ge=1)

    def finish(
        self,
        train: Split,
        test: Split,
        label_names: list[str],
        validation: Split | None = None,
        stratify: bool = True,
    ) -> Corpus:
        """Carve the optional validation split (unless the data has one), then apply the caps."""
        test = test.head(self.max_eval_samples)
        evaluation, eval_split = test, "test"
        if validation is not None:
            evaluation, eval_split = validation.head(self.max_eval_samples), "validation"
        elif self.val_size > 0:
            cut = (self.val_size, self.split_seed, "val_size", stratify, label_names)
            train, evaluation = _split(train, *cut)
            evaluation, eval_split = evaluation.head(self.max_eval_samples), "validation"
        return Corpus(train.head(self.max_train_samples), evaluation, test, label_names, eval_split)


_READ: dict[str, tuple[list[str], list[str]]] = {}  # corpus root -> its reviews and categories


@dataclass
class MovieReviews(Splits):
    """NLTK movie_reviews split as the notebook did (pos=1, neg=0; 1600/400 at test_size 0.2)."""

    TASKS: ClassVar[tuple[str, ...]] = ("single_label",)  # one label per review

    def load(self, task: Task | None = None) -> Corpus:
        import nltk
        from nltk.corpus import movie_reviews as mr

        if os.environ.get("NLTK_DATA") and os.environ["NLTK_DATA"] not in nltk.data.path:
            nltk.data.path.insert(0, os.environ["NLTK_DATA"])
        try:
            fileids = mr.fileids()
        except LookupError:
            raise UserError(
                "dataset=movie_reviews: NLTK corpus 'movie_reviews' not found; run "
                "`python -m nltk.downloader movie_reviews` or set NLTK_DATA to a folder holding "
                "corpora/movie_reviews.zip"
            ) from None
        key = str(mr.root)  # a process reads the corpus once (a sweep's in-process jobs)
        if key not in _READ:
            _READ[key] = _texts(mr, fileids), [mr.categories(f)[0] for f in fileids]
        reviews, categories = (list(part) for part in _READ[key])
        names = label_list(categories)
        y = [names.index(c) for c in categories]
        return self.finish(*_split(Split(reviews, y), self.test_size, self.split_seed), names)


def _texts(reader: Any, fileids: list[str]) -> list[str]:
    """The files' texts as `reader.raw` gives them; from a zip (NLTK's download) through one
    open archive, which reads the 2000 reviews in 0.2 s where `raw` per file took 1.7 s."""
    from nltk.data import ZipFilePathPointer

    root = reader.root
    if not isinstance(root, ZipFilePathPointer):
        return [reader.raw(f) for f in fileids]
    with zipfile.ZipFile(root.zipfile.filename) as archive:
        return [archive.read(root.entry + f).decode(reader.encoding(f)) for f in fileids]


def read_text(path: Path) -> str:
    """A UTF-8 file's text without the byte-order mark Excel and Notepad put first."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"data file {path} is not UTF-8 (byte {e.start}); re-save it as UTF-8"
        ) from None


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV / TSV / JSONL file as dicts (`src.predict`'s input)."""
    return list(iter_rows(path))


def iter_rows(path: Path) -> Iterator[dict]:
    """The rows of a CSV / TSV / JSONL file as dicts, one at a time: a large file is read as it
    is consumed, never whole into memory next to its rows."""
    if not path.is_file():
        raise UserError(f"data file {path} does not exist; check dataset.train_file/test_file")
    if _blank(path):
        raise UserError(f"data file {path} is empty")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _json_rows(path)
    if suffix in (".csv", ".tsv"):
        return _table_rows(path, "\t" if suffix == ".tsv" else ",", suffix[1:].upper())
    raise UserError(f"data file {path}: unsupported extension '{suffix}'; use .csv, .tsv or .jsonl")


def _blank(path: Path, probe: int = 1 << 16) -> bool:
    """Whether the file holds nothing but whitespace (a large one is not read to find out)."""
    with path.open("rb") as f:
        head = f.read(probe)
    return len(head) < probe and not head.strip()


def _lines(path: Path) -> Iterator[str]:
    """The file's lines as UTF-8 text, without the byte-order mark Excel and Notepad put first;
    a byte that is not UTF-8 is named by its offset in the file."""
    offset = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(
                    f"data file {path} is not UTF-8 (byte {offset + e.start}); re-save it as UTF-8"
                ) from None
            offset += len(raw)
            yield line.removeprefix("\ufeff") if n == 0 else line


def _json_rows(path: Path) -> Iterator[dict]:
    for n, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=lambda kv, n=n: _unique(kv, path, n))
        except json.JSONDecodeError as e:
            raise UserError(
                f"{path} line {n}: not valid JSON ({e.msg}); one object per line"
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"{path} line {n}: expected a JSON object per line")
        yield row


def _table_rows(path: Path, delimiter: str, kind: str) -> Iterator[dict]:
    csv.field_size_limit(FIELD_SIZE_LIMIT)  # the default 131,072 characters cuts long texts
    rows = 0
    try:
        reader = csv.DictReader(_lines(path), delimiter=delimiter)
        _unique([(name, None) for name in reader.fieldnames or []], path, "header")
        for rows, row in enumerate(reader, start=1):
            if None in row or None in row.values():  # more / fewer fields than the header
                raise UserError(
                    f"{path} row {rows}: not valid {kind}: its field count differs from the "
                    "header's; quote fields that contain the delimiter"
                )
            yield row
    except csv.Error as e:
        raise UserError(f"{path}: not valid {kind} ({e})") from None
    if not rows:
        raise UserError(f"data file {path} has a header but no rows")


def _unique(pairs: list[tuple[str, Any]], path: Path, where: int | str) -> dict:
    """A row's columns as a dict, refusing a column named twice (a dict would keep the last)."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            at = f"line {where}" if isinstance(where, int) else where
            raise UserError(f"{path} {at}: column '{name}' appears twice; rename one of them")
        seen.add(name)
    return dict(pairs)


@dataclass
class Columns(Splits):
    """Tabular data: which column holds the text and which the label (files and `datasets`)."""

    text_column: str = param("text", "the column holding the text")
    text_pair_column: str | None = param(
        None, "sentence pairs: the column holding each example's second text"
    )
    label_column: str = param(
        "label", "the column holding the label (strings; a list or a number, by task)"
    )
    label_separator: str = param(
        "|",
        "task=multi_label in CSV/TSV: what separates a row's labels (a|b)",
        test=lambda v: isinstance(v, str) and v != "",
        allowed="a non-empty string",
    )
    empty_text: str = param(
        "drop", "rows with empty text: drop (counted) or error", choices=EMPTY_TEXT
    )

    def check_columns(self, where: str, found: Sequence[str]) -> None:
        wanted = [("text_column", self.text_column), ("label_column", self.label_column)]
        if self.text_pair_column is not None:
            wanted.append(("text_pair_column", self.text_pair_column))
        for key, column in wanted:
            if column not in found:
                listed = ", ".join(map(str, found))
                raise UserError(
                    f"{where}: no column '{column}' (found: {listed}); set dataset.{key}=<column>"
                )

    def rows(self, row: Mapping) -> tuple[Any, Any, Any]:
        """(text, second text or None, label) of one row of a table."""
        pair = row.get(self.text_pair_column) if self.text_pair_column is not None else None
        return row.get(self.text_column), pair, row.get(self.label_column)

    def keep(
        self, where: str, rows: Iterable[tuple[Any, Any, Any]], task: Task | None = None
    ) -> Split:
        """The split of (text, pair, label) rows; an empty text (or second text) is dropped
        (counted) or refused. An empty label is refused, but for multi_label (no label)."""
        texts, pairs, labels, dropped = [], [], [], 0
        columns = [self.text_column, *([self.text_pair_column] if self.text_pair_column else [])]
        name = task.NAME if task is not None else "single_label"
        may_be_empty = name == "multi_label"
        for n, (text, pair, label) in enumerate(rows, start=1):
            if label is None and may_be_empty:
                label = []
            elif label is None or (str(label).strip() == "" and not may_be_empty):
                raise UserError(f"{where} row {n}: missing label in column '{self.label_column}'")
            elif isinstance(label, list | tuple | dict) and name != "multi_label":
                shown = json.dumps(label, default=str)
                raise UserError(
                    f"{where} row {n}: label {shown} in column '{self.label_column}' is a list; "
                    f"task={name} takes one label a text: several labels a text is "
                    "task=multi_label"
                )
            given = zip(columns, (text, pair), strict=False)  # the pair only where there is one
            empty = [c for c, t in given if t is None or not str(t).strip()]
            if empty:
                if self.empty_text == "error":
                    raise UserError(
                        f"{where} row {n}: empty text in column '{empty[0]}'; fix the row "
                        "or set dataset.empty_text=drop"
                    )
                dropped += 1
                continue
            texts.append(str(text))
            if self.text_pair_column:
                pairs.append(str(pair))
            labels.append(label)
        if dropped:
            log.warning(
                f"{where}: dropped {dropped} rows with empty text (dataset.empty_text=drop)"
            )
        if not texts:
            raise UserError(f"{where}: every row has empty text in column '{self.text_column}'")
        return Split(texts, labels, pairs if self.text_pair_column else None)

    def load_splits(
        self,
        where: Mapping[str, str | None],
        train: Split,
        test: Split | None,
        names: list[str] | None = None,
        evaluation: Split | None = None,
        task: Task | None = None,
    ) -> Corpus:
        """Labels as read become what the task holds (single_label: ids through the train
        split's sorted label list, or `names` when the data names them); no test split: one
        split off train (stratified for single_label). `where` names each split's source."""
        task = task or SingleLabel()
        names = names or task.label_names(train.labels, self)
        for split, role in ((test, "test"), (evaluation, "validation")):
            if split is not None and (unseen := task.unseen(split.labels, names, self)):
                raise UserError(
                    f"{where.get(role)}: labels {unseen} never appear in {where.get('train')}"
                )
        roles = (("train", train), ("test", test), ("validation", evaluation))
        train, test, evaluation = (
            None
            if s is None
            else dataclasses.replace(
                s, labels=task.encode(s.labels, names, str(where.get(role)), self)
            )
            for role, s in roles
        )
        task.check_names(names, str(where.get("train")))
        if test is None:
            train, test = _split(
                train, self.test_size, self.split_seed, stratify=task.STRATIFY, names=names
            )
        return self.finish(train, test, names, evaluation, task.STRATIFY)


@dataclass
class Files(Columns):
    """Your own CSV / TSV / JSONL; a stratified split when no test file is given."""

    train_file: str | None = param(None, "required: a .csv, .tsv or .jsonl file")
    test_file: str | None = param(None, "null: a stratified split of train_file by test_size")

    def check(self, plain: Mapping[str, Any]) -> None:
        """A train_file, and every file it names present, checked with the config (before a
        run folder is written or anything loads; a sweep's --dry-run too)."""
        if not self.train_file:
            raise UserError("dataset=files needs dataset.train_file=<path to .csv, .tsv or .jsonl>")
        for key in ("train_file", "test_file"):
            if getattr(self, key) and not Path(getattr(self, key)).is_file():
                raise UserError(
                    f"dataset.{key}={getattr(self, key)}: data file "
                    f"{getattr(self, key)} does not exist"
                )

    def load(self, task: Task | None = None) -> Corpus:
        if not self.train_file:
            raise UserError("dataset=files needs dataset.train_file=<path to .csv, .tsv or .jsonl>")
        train = self.read(Path(self.train_file), task)
        test = self.read(Path(self.test_file), task) if self.test_file else None
        where = {"train": self.train_file, "test": self.test_file}
        return self.load_splits(where, train, test, task=task)

    def read(self, path: Path, task: Task | None = None) -> Split:
        """One data file as a split of texts and labels, as read (row by row: a row's dict
        goes once its texts and label are kept)."""
        rows = iter_rows(path)
        first = next(rows)
        self.check_columns(str(path), list(first.keys()))
        return self.keep(str(path), map(self.rows, itertools.chain([first], rows)), task)


def _is_data_files(value: Any) -> bool:
    return value is None or isinstance(value, str | list | dict)


@dataclass
class HFDataset(Columns):
    """Anything `datasets.load_dataset` reads: a hub id, a builder with files, a local folder.

    A builder is csv, json or parquet with `data_files`; a folder `save_to_disk` wrote loads
    through `load_from_disk`."""

    path: str | None = param(None, "required: a hub id (imdb), a builder (parquet) or a folder")
    name: str | None = param(None, "the dataset's configuration (load_dataset's `name`)")
    data_files: str | None = param(
        None,
        "files for a builder: a path, a list, or {split: path(s)}",
        test=_is_data_files,
        allowed="a path, a list of paths, or {split: path(s)}",
    )
    revision: str | None = param(None, "a hub dataset's git revision, pinned for reproducibility")
    train_split: str = param("train", "the split to train on")
    test_split: str | None = param("test", "null or absent: a stratified split of train")
    validation_split: str | None = param(None, "a split that picks the epoch; null: val_size")

    def load(self, task: Task | None = None) -> Corpus:
        if not self.path:
            raise UserError("dataset=hf needs dataset.path=<hub id, builder or local folder>")
        found = self._load()
        where = f"dataset.path={self.path}"
        wanted = {
            "train": self.train_split,
            "test": self.test_split,
            "validation": self.validation_split,
        }
        for role, split in wanted.items():
            if split is not None and split not in found and role != "test":
                raise UserError(
                    f"{where}: no split '{split}' (found: {', '.join(found)}); set "
                    f"dataset.{role}_split=<split>"
                )
        if self.test_split is not None and self.test_split not in found:
            log.info(f"{where}: no split '{self.test_split}': a stratified split of train")
        feature = found[self.train_split].features.get(self.label_column)
        inner = getattr(feature, "feature", feature)  # Sequence(ClassLabel): multi_label
        names = list(inner.names) if hasattr(inner, "names") else None  # a ClassLabel's
        roles = {role: split for role, split in wanted.items() if split in found}
        origins = {role: f"{where} split '{split}'" for role, split in roles.items()}
        splits = {
            role: self._split(found[split], origins[role], names, task)
            for role, split in roles.items()
        }
        return self.load_splits(
            origins, splits["train"], splits.get("test"), names, splits.get("validation"), task
        )

    def _load(self):
        """The DatasetDict, with one line for what `datasets` could not load."""
        import datasets

        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # offline: its retry warnings, then our one line
        try:
            if (Path(self.path) / "dataset_dict.json").is_file():
                return datasets.load_from_disk(self.path)
            if (Path(self.path) / "state.json").is_file():
                return datasets.DatasetDict(train=datasets.load_from_disk(self.path))
            return datasets.load_dataset(
                self.path, self.name, data_files=self.data_files, revision=self.revision
            )
        except Exception as e:  # not found, offline, bad files: the library's own first line
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"dataset.path={self.path}: datasets cannot load it ({reason}); check the id, "
                "dataset.name and dataset.data_files (offline: a local folder or files)"
            ) from None
        finally:
            hub_log.setLevel(level)

    def _split(self, dataset, where: str, names: list[str] | None, task: Task | None) -> Split:
        """A split's texts and labels; a ClassLabel's ids become its names (then the task's
        ids, in the ClassLabel's order), -1 (hidden) is refused."""
        self.check_columns(where, dataset.column_names)
        second = dataset[self.text_pair_column] if self.text_pair_column else [None] * len(dataset)
        rows = zip(dataset[self.text_column], second, dataset[self.label_column], strict=True)
        split = self.keep(where, rows, task)
        if names is None:
            return split
        ids = [y for ys in split.labels for y in (ys if isinstance(ys, list) else [ys])]
        if any(not 0 <= y < len(names) for y in ids):
            raise UserError(
                f"{where}: labels outside 0..{len(names) - 1} (-1: hidden, as in GLUE's test "
                "splits); use another split, e.g. dataset.test_split=null"
            )
        named = [
            [names[y] for y in ys] if isinstance(ys, list) else names[ys] for ys in split.labels
        ]
        return dataclasses.replace(split, labels=named)

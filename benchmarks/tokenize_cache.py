"""What the tokenize cache saves: the default corpus tokenized without the cache, into an empty
cache, and read back from it.

    python -m benchmarks.tokenize_cache [overrides ...]    # e.g. truncation=chunks

Composes the run's config (the default unless overridden), loads its corpus and tokenizer as
src.run does, then times the three splits through `src.data.encode_cached` each way, `--repeats`
times (the median), and writes benchmarks/RESULTS_tokenize.md with this command.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, compose, use_shared_corpus
from src import data
from src.trainers.build import make

WAYS = ("tokenize_cache=null", "empty cache (tokenize, store)", "cache hit (read)")


def timed(corpus: data.Corpus, tokenizer, cut: tuple, cache: Path | None) -> float:
    start = time.perf_counter()
    for split in (corpus.train, corpus.eval, corpus.test):
        data.encode_cached(tokenizer, split, *cut, cache_dir=cache)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("overrides", nargs="*")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_tokenize.md")
    args = p.parse_args(argv)
    use_shared_corpus()
    cfg = compose(args.overrides)
    corpus = make(cfg.dataset).load()
    tokenizer = make(cfg.backbone).tokenizer()
    cut = (cfg.max_length, cfg.truncation, cfg.stride)
    seconds = {way: [] for way in WAYS}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            seconds[WAYS[0]].append(timed(corpus, tokenizer, cut, None))
            seconds[WAYS[1]].append(timed(corpus, tokenizer, cut, Path(cache)))
            seconds[WAYS[2]].append(timed(corpus, tokenizer, cut, Path(cache)))
    median = {way: statistics.median(s) for way, s in seconds.items()}
    texts = len(corpus.train) + len(corpus.eval) + len(corpus.test)
    command = " ".join(["python -m benchmarks.tokenize_cache", *sys.argv[1:]])
    lines = [
        "# What the tokenize cache saves",
        "",
        f"`{command}` on {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}: {texts} texts (train + {corpus.eval_split} + test), "
        f"{cfg.backbone.name}, max_length {cfg.max_length}, `{cfg.truncation}`; the median of "
        f"{args.repeats} repeats (range in brackets).",
        "",
        "| way | seconds | vs no cache |",
        "|---|---|---|",
        *(
            f"| {way} | {median[way]:.2f} [{min(s):.2f}-{max(s):.2f}] "
            f"| {median[WAYS[0]] / median[way]:.1f}x |"
            for way, s in seconds.items()
        ),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""How much of a batch is padding: movie_reviews' windows (truncation=chunks) at each stride,
batched at random and with trainer.group_by_length, as the manual loop batches an epoch.

    python -m benchmarks.padding                 # max_length 256, batch 16, strides 0 and 64

Prints a markdown table: windows per review, word pieces, and the share of padded positions
that are padding, for random batches and grouped ones (the mean over 3 epochs' orders).
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import MINILM
from src import data
from src.models.backbones import Backbone
from src.trainers.common import length_grouped


def padding_share(batches: list[list[int]], lengths: np.ndarray) -> float:
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1 - lengths.sum() / padded


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.padding", description=__doc__)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--strides", default="0,64")
    args = p.parse_args(argv)
    corpus = data.MovieReviews(val_size=0.0).load()
    texts = list(corpus.train.texts) + list(corpus.test.texts)
    tokenizer = Backbone(name="minilm", path=MINILM, lr=1e-4, max_length=256).tokenizer()
    size = args.batch_size
    print(f"{len(texts)} reviews, max_length {args.max_length}, batch {size}\n")
    print("| stride | windows (per review) | word pieces | padding, random | padding, grouped |")
    print("|---|---|---|---|---|")
    for stride in (int(s) for s in args.strides.split(",")):
        lengths = data.encode_texts(tokenizer, texts, args.max_length, "chunks", stride).lengths
        shares = {"random": [], "grouped": []}
        for epoch in range(3):
            order = np.random.default_rng(epoch).permutation(len(lengths)).tolist()
            grouped = length_grouped(order, lengths, size, np.random.default_rng(epoch))
            for name, seq in (("random", order), ("grouped", grouped)):
                batches = [seq[i : i + size] for i in range(0, len(seq), size)]
                shares[name].append(padding_share(batches, lengths))
        print(
            f"| {stride} | {len(lengths)} ({len(lengths) / len(texts):.2f}) | "
            f"{int(lengths.sum()):,} | {np.mean(shares['random']):.1%} | "
            f"{np.mean(shares['grouped']):.1%} |"
        )


if __name__ == "__main__":
    main()

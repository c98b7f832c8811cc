"""How building a run scales with the rows of a data file: build time and peak memory at 10k,
100k and 1M rows, this checkout's code beside an earlier commit's, in one run.

    python -m benchmarks.scale                                   # 10k, 100k, 1M rows (~20 min)
    python -m benchmarks.scale --rows 10000,100000 --before 535ccfe --before-rows 10000,100000

Each size is a CSV of reviews of about 3,000 characters (movie_reviews' texts, cycled), with a
test file of 1,000 rows. One fresh process per measurement runs `src.trainers.build.build` on it
(`dataset=files`, the tiny backbone, `tokenize_cache=null`, max_length 256, head_tail: one
example per row, the same at every commit): reading the file,
splitting off validation, tokenizing every split, building the model and trainer; its wall time
and peak RSS are what is reported. `--before REF` runs the same measurement on a git worktree
of REF (removed afterwards). The table goes to benchmarks/RESULTS_scale.md with this command.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench import machine
from benchmarks.common import ROOT, use_shared_corpus

TEXT_CHARS = 3000
MEASURE = """
import json, resource, sys, time
start = time.perf_counter()
from benchmarks.common import compose, use_shared_corpus
from src.trainers.build import build
from src.trainers.loggers import NullLogger
use_shared_corpus()
built = build(compose(sys.argv[2:]), NullLogger())
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
ids = sum(len(built.encoded[s]) for s in ("train", "eval", "test"))
json.dump({"seconds": seconds, "peak_rss_mb": rss, "examples": ids}, open(sys.argv[1], "w"))
"""


def write_rows(path: Path, n: int, texts: list[str], labels: list[str]) -> None:
    """n rows cycling through the reviews, each cut to TEXT_CHARS characters."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(n):
            j = i % len(texts)
            writer.writerow([texts[j][:TEXT_CHARS], labels[j]])


def measure(root: Path, train: Path, test: Path, out: Path) -> dict:
    overrides = [
        "dataset=files",
        f"dataset.train_file={train}",
        f"dataset.test_file={test}",
        "backbone=tiny",
        "tokenize_cache=null",
        "max_length=256",
        "truncation=head_tail",
        "device=cpu",
    ]  # one example per row
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(out), *overrides],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.exit(f"[scale] {root}: build failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="10000,100000,1000000", help="training rows per size")
    p.add_argument("--before", default=None, help="a git ref to measure beside this checkout")
    p.add_argument("--before-rows", default="10000,100000", help="the sizes measured at --before")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_scale.md")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",") if n]
    before_sizes = [int(n) for n in args.before_rows.split(",") if n] if args.before else []
    command = shlex.join(["python", "-m", "benchmarks.scale", *sys.argv[1:]])
    use_shared_corpus()
    from src import data

    corpus = data.MovieReviews(val_size=0).load()
    texts = [t for t in corpus.train.texts + corpus.test.texts if len(t) >= TEXT_CHARS]
    labels = ["neg", "pos"] * (len(texts) // 2 + 1)
    info, started, rows = machine(), time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        work = Path(tmp)
        test = work / "test.csv"
        write_rows(test, 1000, texts[::-1], labels)
        before = None
        if args.before:
            before = work / "before"
            subprocess.run(
                ["git", "worktree", "add", "-q", "--detach", str(before), args.before],
                cwd=ROOT,
                check=True,
            )
        try:
            for n in sorted(set(sizes) | set(before_sizes)):
                train = work / f"train-{n}.csv"
                write_rows(train, n, texts, labels)
                codes = (
                    ("this checkout", ROOT, sizes),
                    (f"before ({args.before})", before, before_sizes),
                )
                for label, root, wanted in codes:
                    if n not in wanted:
                        continue
                    print(f"[scale] {label}: {n} rows ...", flush=True)
                    result = measure(root, train, test, work / "out.json")
                    rows.append({"code": label, "rows": n, **result})
                    print(f"[scale] {label}: {n} rows: {result}", flush=True)
                train.unlink()
        finally:
            if before is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT)
    minutes = (time.perf_counter() - started) / 60
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Building a run from a large data file",
        "",
        f"Command: `{command}` ({date}, {minutes:.0f} min).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, CPU flags {' '.join(info['flags'])}, "
        f"{info['mem_gib']:.0f} GiB.",
        "",
        f"Rows of about {TEXT_CHARS} characters; `src.trainers.build.build` with `dataset=files "
        "backbone=tiny tokenize_cache=null max_length=256 truncation=head_tail`, in a fresh "
        "process each.",
        "",
        "| code | training rows | examples encoded | build s | s per 10k rows | peak RSS MiB "
        "| RSS KiB per row |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['code']} | {r['rows']:,} | {r['examples']:,} | {r['seconds']:.0f} | "
            f"{r['seconds'] / r['rows'] * 1e4:.1f} | {r['peak_rss_mb']:,.0f} | "
            f"{r['peak_rss_mb'] * 1024 / (r['rows'] + 1000):.1f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[scale] wrote {args.out}")


if __name__ == "__main__":
    main()

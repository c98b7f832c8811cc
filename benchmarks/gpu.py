"""The GPU job against the hardware's limit: model FLOP utilisation (MFU) of the notebook's
recipe, both trainers and each GPU lever on its own.

    python -m benchmarks.gpu        # on a GPU: BERT-base and DeBERTa-v3-base shapes, 256 and
                                    # 512 word pieces, the reviews and short texts ->
                                    # benchmarks/RESULTS_gpu.md
    python -m benchmarks.gpu --shapes bert-base --lengths 512 --corpora reviews   # the goal's row
    python -m benchmarks.gpu --device cpu --shapes tiny --lengths 64 --steps 4 --out /tmp/g.md
                                    # the same rows on a CPU (what tests/test_bench.py checks)

Random weights at each shape (speed does not depend on them): src.models.encoders'
random_encoder folders (config.json and the embedded WordPiece tokenizer) trained as
`backbone.path=<folder> backbone.init=random`, full fine-tuning, `model=hf_head`. Rows:

- notebook: every text padded to max_length up front, BertForSequenceClassification under a
  plain Trainer in fp32 (benchmarks.throughput.notebook; BERT shapes on the reviews only);
- trainer=hf and trainer=manual as a user gets them on this device (precision auto: bf16 on a
  GPU; batches padded to their own longest, grouped by length);
- trainer=manual with each lever alone: compile=true, trainer.padding_free=true,
  trainer.max_tokens (half the padded batch: the same step in forwards of half the memory),
  optimizer.fused=true, trainer.num_workers=4 (DataLoader workers, prefetching); and the first
  three together (`+ all three`: the candidate GPU defaults, kept where a row shows they pay).

Each row runs in a fresh process (benchmarks.encoders' cell: benchmarks.throughput.project, the
project's own build and loop), `--warmup` untimed then `--steps` timed optimizer steps in
`--windows` windows; rates are medians over windows. FLOPs (benchmarks.throughput): model FLOPs
count each example's real word pieces only, l of them: l * (6 N + 12 layers hidden l), N the
parameters outside the embeddings; MFU is model FLOP/s over the matmul peak measured in the same
run (8192-square on a GPU, 2048 on a CPU) in the row's precision. Short texts: a synthetic
corpus with the length distribution of a question-classification set (TREC-like: 3 to 40
words, median about 10), `dataset=files`. Peak memory: torch.cuda.max_memory_allocated on a GPU,
the process's peak RSS on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench import child_env, machine, pool_rounds, run_worker
from benchmarks.common import MINILM, ROOT
from benchmarks.encoders import measure, run_cell
from src.models import encoders

SHAPES = {
    "bert-base": ("bert", "base"),
    "deberta-v3-base": ("deberta-v2", "base"),
    "tiny": ("bert", "tiny"),
}
CORPORA = ("reviews", "short")
# row -> (trainer, overrides); {L} and {B} are max_length and batch size
LEVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "trainer=hf": ("hf", ()),
    "trainer=manual": ("manual", ()),
    "+ compile": ("manual", ("compile=true",)),
    "+ padding_free": ("manual", ("trainer.padding_free=true",)),
    "+ max_tokens": ("manual", ("trainer.max_tokens={half}",)),
    "+ fused AdamW": ("manual", ("optimizer.fused=true",)),
    "+ 4 workers": ("manual", ("trainer.num_workers=4",)),
    "+ all three": (
        "manual",
        ("compile=true", "trainer.padding_free=true", "optimizer.fused=true"),
    ),
}
ROWS = ("notebook", *LEVERS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--shapes", default="bert-base,deberta-v3-base")
    p.add_argument("--lengths", default="256,512")
    p.add_argument("--corpora", default="reviews,short")
    p.add_argument("--rows", default=",".join(ROWS), help=f"a subset of: {', '.join(ROWS)}")
    p.add_argument("--batch-size", type=int, default=8, help="the notebook's 8")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--in-process", action="store_true", help="no fresh process per row (tests)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_gpu.md")
    args = p.parse_args(argv)
    for name, given, known in (
        ("--shapes", args.shapes, SHAPES),
        ("--corpora", args.corpora, CORPORA),
        ("--rows", args.rows, ROWS),
    ):
        if unknown := set(given.split(",")) - set(known):
            p.error(f"{name}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    return args


def short_corpus(folder: Path, n: int = 20000, seed: int = 0) -> Path:
    """Question-like texts: 3 to 40 words (log-normal, median 10), two labels."""
    rng = random.Random(seed)
    words = [w.strip() for w in (ROOT / "README.md").read_text().split() if w.strip().isalpha()]
    path = folder / "short.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(("text", "label"))
        for i in range(n):
            length = min(40, max(3, round(rng.lognormvariate(2.3, 0.5))))
            out.writerow((" ".join(rng.choice(words) for _ in range(length)), i % 2))
    return path


def row_cells(
    args: argparse.Namespace, shape: str, length: int, corpus: str, folder: Path, short: Path | None
):
    """(label, worker kwargs) of every row asked for, at one shape, length and corpus."""
    model_type, _ = SHAPES[shape]
    shared = {
        "steps": args.steps,
        "warmup": args.warmup,
        "windows": args.windows,
        "max_length": length,
        "batch_size": args.batch_size,
        "eval_batch_size": args.batch_size,
        "eval_samples": args.batch_size,
        "device": args.device,
    }
    base = (
        "backbone.init=random",
        f"backbone.name={shape}-random",
        "backbone.hub_id=null",
        "tokenize_cache=null",
    )
    if corpus == "short":
        base += ("dataset=files", f"dataset.train_file={short}", "dataset.val_size=0.05")
    cells = []
    for row in args.rows.split(","):
        if row == "notebook":
            if model_type == "bert" and corpus == "reviews":
                bert = {"bert-base": "bert-base", "tiny": "tiny"}[shape]
                cells.append((row, "notebook", {**shared, "shape": bert}))
            continue
        trainer, overrides = LEVERS[row]
        overrides = tuple(o.format(half=args.batch_size * length // 2) for o in overrides)
        if row == "+ all three" and not encoders.ENCODERS[model_type].varlen:  # DeBERTa: refused
            overrides = tuple(o for o in overrides if not o.startswith("trainer.padding_free"))
        kwargs = {
            **shared,
            "trainer": trainer,
            "backbone_path": str(folder),
            "overrides": [*base, *overrides],
        }
        cells.append((row, "project", kwargs))
    return cells


def measure_cell(
    kind: str, label: str, work: Path, env: dict[str, str], in_process: bool, **kwargs: Any
) -> dict[str, Any]:
    kwargs["out_dir"] = str(work / label)
    if kind == "notebook":
        if in_process:
            from benchmarks.throughput import notebook

            result = {**notebook(**kwargs), "peak_rss_mb": 0.0}
        else:
            result = run_worker("notebook", label, work, env, **kwargs)
        return {**pool_rounds([result]), "precision": "fp32"}
    if in_process:
        try:
            result = {**measure(**kwargs), "peak_rss_mb": 0.0}
        except Exception as e:  # noqa: BLE001 - a row that fails is that row's result
            return {"error": str(e).splitlines()[0]}
    else:
        result = run_cell(label, work, env, **kwargs)
    if "error" in result:
        return result
    return {
        **pool_rounds([result]),
        "cuda_peak_mb": result["cuda_peak_mb"],
        "device_name": result["device_name"],
    }


def peak_of(peaks: dict[str, Any], precision: str) -> float | None:
    chosen = peaks.get(precision) or peaks.get("fp32")
    return chosen["best_gflops"] * 1e9 if chosen else None


def table_rows(rows: list[dict[str, Any]], peaks: dict[str, Any]) -> list[str]:
    columns = (
        "shape", "max_length", "corpus", "row", "precision", "samples/s", "real tokens/s",
        "model TFLOP/s", "MFU", "peak memory MB", "vs notebook",
    )  # fmt: skip
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    base: dict[tuple, float] = {}
    for r in rows:
        key = (r["shape"], r["max_length"], r["corpus"])
        run = r["run"]
        if "error" in run:
            out.append(
                f"| {key[0]} | {key[1]} | {key[2]} | {r['row']} | - | {run['error']} | | | | | |"
            )
            continue
        if r["row"] == "notebook":
            base[key] = run["samples_per_s"]
        peak = peak_of(peaks, run["precision"])
        mfu = f"{run['model_flops_per_s'] / peak:.1%}" if peak else "-"
        memory = run.get("cuda_peak_mb") or run["peak_rss_mb"]
        ratio = f"{run['samples_per_s'] / base[key]:.2f}x" if key in base else "-"
        out.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {r['row']} | {run['precision']} | "
            f"{run['samples_per_s']:.1f} | {run['real_tokens_per_s']:.0f} | "
            f"{run['model_flops_per_s'] / 1e12:.3f} | {mfu} | {memory:.0f} | {ratio} |"
        )
    return out


def commit() -> str:
    """HEAD's short hash; BENCH_COMMIT where the tree has no .git (benchmarks/gpu_lease.sh)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"].strip()
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


def write(
    args: argparse.Namespace, argv: list[str], peaks: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    m = machine()
    device = peaks.get("device_name", args.device)
    lines = [
        f"# MFU of the training job ({device})",
        "",
        f"`python -m benchmarks.gpu {shlex.join(argv)}` at commit {commit()}, "
        f"{datetime.date.today().isoformat()}; torch {peaks.get('torch')}, transformers "
        f"{peaks.get('transformers')}. Host CPU: {m['cpu']} ({m['cores']} cores; flags "
        f"{', '.join(m['flags']) or 'none of ' + 'avx512_bf16/amx'}).",
        "",
        "Matmul peak measured in this run ({size}-square): ".format(size=peaks.get("size"))
        + ", ".join(
            f"{p} {peaks[p]['best_gflops'] / 1e3:.1f} TFLOP/s"
            for p in ("fp32", "bf16")
            if p in peaks
        )
        + ". Model FLOPs per example of l real word pieces: l x (6 N + 12 layers x hidden x l),"
        " N the parameters outside the embeddings (padding is not counted as useful work). MFU ="
        " model FLOP/s / the peak of the row's precision. "
        f"{args.steps} timed optimizer steps in {args.windows} windows after {args.warmup} "
        f"warm-up steps, batch {args.batch_size}; rates are window medians.",
        "",
        *table_rows(rows, peaks),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"[gpu] wrote {args.out}", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from src.models.backbones import resolve_path

    env = child_env(None)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        if args.in_process:
            from benchmarks.peak import matmul_peak

            peaks = matmul_peak(args.device, repeats=2, rounds=1)
        else:
            peaks = run_worker("matmul_peak", "matmul", work, env, device=args.device)
        short = short_corpus(work) if "short" in args.corpora.split(",") else None
        rows: list[dict[str, Any]] = []
        for shape in args.shapes.split(","):
            model_type, size = SHAPES[shape]
            folder = encoders.random_encoder(
                work / shape, model_type, resolve_path(MINILM), size=size
            )
            for length in map(int, args.lengths.split(",")):
                for corpus in args.corpora.split(","):
                    for row, kind, kwargs in row_cells(args, shape, length, corpus, folder, short):
                        label = f"{shape}-{length}-{corpus}-{row}".replace(" ", "").replace("+", "")
                        run = measure_cell(kind, label, work, env, args.in_process, **kwargs)
                        rows.append(
                            {
                                "shape": shape,
                                "max_length": length,
                                "corpus": corpus,
                                "row": row,
                                "run": run,
                            }
                        )
                        write(args, argv, peaks, rows)  # a run stopped early keeps its rows
    json_out = args.out.with_suffix(".json")
    json_out.write_text(json.dumps({"peaks": peaks, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()

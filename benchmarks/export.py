"""A trained run served four ways, side by side in one run: torch fp32, torch bf16 (where the
CPU has it natively), ONNX fp32 and ONNX int8 (`python -m src.export`).

    NLTK_DATA=../shared/nltk_data python -m benchmarks.export [--run outputs/runs/default]

Each backend goes through the same code (src.predict's Predictor: tokenize, cut as the run
did, batch, pool windows), so the numbers compare the model's forward and nothing else moves:
- latency: one whole review at a time (batch 1; a review is several 256-piece windows), p50
  and p95 over `--reps` reviews of the test split;
- throughput: reviews per second at batch 32 (windows per forward), the median of 3 passes
  over `--texts` test reviews;
- size: the weights on disk (model.safetensors; model.onnx);
- accuracy on the run's whole test split.
Writes benchmarks/RESULTS_export.md (or --out) with the machine, its CPU flags and threads.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.bench import machine

OUT = Path("outputs/bench/export")


def variants(run: Path) -> dict[str, tuple[Path, str]]:
    """name -> (the folder Predictor loads, its precision)."""
    from src import export

    folders = {}
    for name, extra in (("onnx", []), ("onnx-int8", ["quantize=int8"])):
        folder = OUT / name
        shutil.rmtree(folder, ignore_errors=True)
        code = export.main([f"run_dir={run}", f"out={folder}", *extra])  # checks every test text
        if code:
            raise SystemExit(f"export {name} failed ({code})")
        folders[name] = folder
    out = {"torch fp32": (run, "fp32")}
    if bf16_native():
        out["torch bf16"] = (run, "bf16")
    out["ONNX fp32"] = (folders["onnx"], "fp32")
    out["ONNX int8"] = (folders["onnx-int8"], "int8 weights")
    return out


def bf16_native() -> bool:
    from src.config.devices import resolve_device, resolve_precision

    return resolve_precision("auto", resolve_device("cpu")) == "bf16"


def measure(
    folder: Path, precision: str, texts: list[str], labels: np.ndarray, reps: int, n_throughput: int
) -> dict:
    import torch

    from src.predict import Predictor

    predictor = Predictor.load(folder, "cpu")
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    with autocast:
        predictor.logits(texts[:4], 1)  # warm-up: first calls pay for allocation
        latencies = []
        for text in texts[:reps]:
            start = time.perf_counter()
            predictor.logits([text], 1)
            latencies.append(time.perf_counter() - start)
        passes = []
        for _ in range(3):
            start = time.perf_counter()
            predictor.logits(texts[:n_throughput], 32)
            passes.append(n_throughput / (time.perf_counter() - start))
        logits = predictor.logits(texts, 32)
    weights = folder / (
        "model.onnx" if (folder / "model.onnx").is_file() else "best_model/model.safetensors"
    )
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "per_s": statistics.median(passes),
        "mb": weights.stat().st_size / 2**20,
        "accuracy": float((logits.argmax(1) == labels).mean()),
    }


def main() -> None:
    import onnxruntime
    import torch

    from src import export
    from src.predict import Predictor

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("outputs/runs/default"))
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS_export.md"))
    args = parser.parse_args()
    info, date = machine(), datetime.date.today().isoformat()
    task = Predictor.load(args.run, "cpu").task
    texts, _ = export.test_texts(args.run, task, None)
    from omegaconf import OmegaConf

    from src.trainers.build import make

    cfg = OmegaConf.load(args.run / "config_resolved.yaml")
    labels = np.asarray(make(cfg.dataset).load(task).test.labels)
    rows = {
        name: measure(folder, precision, texts, labels, args.reps, args.texts)
        for name, (folder, precision) in variants(args.run).items()
    }
    base = rows["torch fp32"]
    lines = [
        "# Serving a trained run: torch, ONNX and int8 side by side",
        "",
        f"Command: `NLTK_DATA=../shared/nltk_data python -m benchmarks.export --run {args.run}` "
        f"({date}).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, CPU flags "
        f"{' '.join(info['flags']) or 'none of avx2/avx512'}, {info['mem_gib']:.0f} GiB, load "
        f"{info['load']:.2f} at the start; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} (its CPU "
        "provider's own thread choice).",
        "",
        f"The run: `{args.run}`, the default recipe (`python -m src.run`: all-MiniLM-L6-v2, "
        f"custom_head, every word piece in 256-piece windows), its {len(texts)} test reviews. "
        "Each backend through src.predict's Predictor (tokenize, cut, batch, pool), so only the "
        f"forward differs. Latency: one whole review at a time over {args.reps} test reviews "
        f"(several windows each); throughput: reviews per second at batch 32 over {args.texts} "
        "reviews, the median of 3 passes; accuracy on the whole test split.",
        "",
        "| backend | latency p50 | latency p95 | reviews/s at batch 32 | vs torch fp32 | "
        "weights on disk | test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | "
            f"{r['per_s']:.2f} | {r['per_s'] / base['per_s']:.2f}x | {r['mb']:.1f} MB | "
            f"{r['accuracy']:.4f} |"
        )
    if "torch bf16" not in rows:
        lines += [
            "",
            "No torch bf16 row: this CPU has no native bf16 (`precision=auto` picks fp32 here).",
        ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

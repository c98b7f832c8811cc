"""The levers of cheaper fine-tuning side by side, in one run: frozen layers, their outputs
cached, LoRA, and what the freed time buys.

    python -m benchmarks.levers                     # training samples/s of every lever (~15 min)
    python -m benchmarks.levers --quality --seeds 3 # + whole runs over seeds (hours on 2 cores)
    python -m benchmarks.levers --variants= --quality --quality-configs default \
        --seeds 3 --out benchmarks/RESULTS_default.md             # one row only

Throughput: the manual loop on the embedded MiniLM (the default model, custom_head) in fp32, the
precision of a CPU without native bf16, at the default's max_length and batch size, each lever
in its own process (benchmarks/worker.py), the variants interleaved over `--rounds`. With the
cache, the cache is filled first and timed apart: the rate is that of every epoch after the
first. Quality: `python -m src.run OVERRIDES` from start to exit, its test accuracy read from
metrics.json, the epoch chosen on validation: the default as it ships, then each lever on the
fast recipe of before (`experiment=cpu_quickstart`, full fine-tuning of one 256-word-piece cut),
then what the freed time buys. The runs go seed by seed and the table is rewritten after each,
so a run stopped early keeps the rows it finished. The table goes to benchmarks/RESULTS_levers.md
with the machine, its CPU flags and this command.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import quality as q
from benchmarks.bench import child_env, machine, pool_rounds, run_worker
from benchmarks.common import MINILM, ROOT

# Every lever is measured from full fine-tuning (the default freezes and caches the lower 3
# layers since issue 20, so each row says what it freezes), in fp32: the precision of a CPU
# without native bf16 (precision=auto would take bf16 where the CPU has it).
FULL = ("backbone.freeze_layers=0", "backbone.cache_frozen=false")
FP32 = ("model=custom_head", "trainer.precision=fp32", *FULL)
LEVERS = {
    "full": (),
    **{f"freeze{n}": (f"backbone.freeze_layers={n}",) for n in (2, 3, 4)},
    **{
        f"freeze{n}+cache": (f"backbone.freeze_layers={n}", "backbone.cache_frozen=true")
        for n in (2, 3, 4)
    },
    "lora8": ("model.peft=lora", "model.lora.r=8"),
    "lora16": ("model.peft=lora", "model.lora.r=16"),
}
# label -> overrides of the throughput row (on top of FP32)
THROUGHPUT = LEVERS
# The levers' whole runs start from the fast recipe of before (experiment=cpu_quickstart: one
# head_tail cut of 256 word pieces, full fine-tuning), so each row is one lever's change.
LEVER_BASE = ("experiment=cpu_quickstart", "trainer.precision=fp32")
# label -> overrides of a whole run (quality rows): the default as it ships (in fp32), the
# levers one by one, then what the freed time buys (whole reviews, longer cuts, more epochs)
QUALITY = {
    "default": ("trainer.precision=fp32",),
    **{
        f"quickstart+{name}" if name != "full" else "quickstart": (*LEVER_BASE, *overrides)
        for name, overrides in LEVERS.items()
    },
    # LoRA's adapters start at zero and take a larger step than full fine-tuning's 1e-4
    "quickstart+lora8+lr1e-3": (*LEVER_BASE, *LEVERS["lora8"], "lr=1e-3"),
    "freeze4+cache+chunks": ("trainer.precision=fp32", "backbone.freeze_layers=4"),
    "freeze4+cache+512": (
        *LEVER_BASE,
        "backbone.freeze_layers=4",
        "backbone.cache_frozen=true",
        "max_length=512",
    ),
    "freeze4+cache+512+epochs4": (
        *LEVER_BASE,
        "backbone.freeze_layers=4",
        "backbone.cache_frozen=true",
        "max_length=512",
        "epochs=4",
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    about = __doc__.split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m benchmarks.levers", description=about)
    p.add_argument("--steps", type=int, default=12, help="timed training steps per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="run the variants this many times")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--variants", default=",".join(THROUGHPUT), help="throughput rows")
    p.add_argument("--quality", action="store_true", help="whole runs over seeds")
    p.add_argument("--quality-configs", default=",".join(QUALITY), help="quality rows")
    p.add_argument("--seeds", type=int, default=1, help="seeds per quality row: 42, 1, 2, ...")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_levers.md")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.quality_configs = [c for c in args.quality_configs.split(",") if c]
    for given, known in ((args.variants, THROUGHPUT), (args.quality_configs, QUALITY)):
        if unknown := [v for v in given if v not in known]:
            p.error(f"unknown {', '.join(unknown)}; from {', '.join(known)}")
    return args


def throughput(args: argparse.Namespace, work: Path, env: dict[str, str]) -> dict[str, dict]:
    shared = {
        "trainer": "manual",
        "steps": args.steps,
        "warmup": args.warmup,
        "windows": args.windows,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "eval_batch_size": 32,
        "eval_samples": 64,
        "backbone_path": MINILM,
    }
    rounds: dict[str, list[dict]] = {label: [] for label in args.variants}
    for n in range(args.rounds):
        for label in args.variants:
            name = f"{label}-{n + 1}"
            overrides = [*FP32, *THROUGHPUT[label]]
            run = run_worker(
                "project", name, work, env, **shared, overrides=overrides, out_dir=str(work / name)
            )
            rounds[label].append(run)
    pooled = {}
    for label, runs in rounds.items():
        pooled[label] = {**pool_rounds(runs), "trainable_params": runs[0]["trainable_params"]}
        fills = [r["cache_fill_s"] for r in runs if r.get("cache_fill_s") is not None]
        pooled[label]["cache_fill_s"] = statistics.median(fills) if fills else None
    return pooled


def throughput_table(args: argparse.Namespace, runs: dict[str, dict]) -> list[str]:
    full = runs.get("full", {}).get("samples_per_s")
    lines = [
        "| lever | overrides | trainable parameters | samples/s (range) | vs full | cache fill s "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in runs.items():
        low, high = r["samples_per_s_range"]
        ratio = f"{r['samples_per_s'] / full:.2f}x" if full else "-"
        fill = f"{r['cache_fill_s']:.0f}" if r["cache_fill_s"] is not None else "-"
        over = " ".join(THROUGHPUT[label]) or "-"
        lines.append(
            f"| {label} | `{over}` | {r['trainable_params'] / 1e6:.2f}M | "
            f"{r['samples_per_s']:.2f} ({low:.2f}-{high:.2f}) | {ratio} | {fill} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return lines


def quality(
    args: argparse.Namespace, work: Path, env: dict[str, str], written: Callable[[list[str]], None]
) -> list[str]:
    """Whole runs, seed by seed (every row's seed 42, then every row's seed 1, ...), the table
    handed to `written` after each run: a long benchmark stopped early keeps what it ran."""
    runs: dict[str, dict[int, dict]] = {name: {} for name in args.quality_configs}
    rows: list[str] = []
    for seed in q.seeds(args.seeds):
        for name in args.quality_configs:
            out = work / f"quality-{name}-seed{seed}"
            run = runs[name][seed] = q.run_once([*QUALITY[name], f"seed={seed}"], out, env)
            print(
                f"[levers] {name} seed {seed}: {run['test']['accuracy']:.4f} "
                f"in {run['wall_s']:.0f} s",
                flush=True,
            )
            rows = quality_table(runs)
            written(rows)
    return rows


def quality_table(runs: dict[str, dict[int, dict]]) -> list[str]:
    lines = [
        "| row | overrides | seeds | test accuracy (mean ± std) | accuracy per seed [95% interval] "
        "| best epoch per seed | wall s (mean / max) | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_seed in runs.items():
        if not by_seed:
            continue
        acc = q.mean_std([r["test"]["accuracy"] for r in by_seed.values()])
        per_seed = "; ".join(
            f"{s}: {r['test']['accuracy']:.4f} [{r['test_ci95']['accuracy'][0]:.4f}, "
            f"{r['test_ci95']['accuracy'][1]:.4f}]"
            for s, r in by_seed.items()
        )
        epochs = ", ".join(str(r["best_epoch"]) for r in by_seed.values())
        walls = [r["wall_s"] for r in by_seed.values()]
        train = statistics.mean(r["train_s"] for r in by_seed.values())
        lines.append(
            f"| {name} | `{' '.join(QUALITY[name])}` | {len(by_seed)} | "
            f"{acc[0]:.4f} ± {acc[1]:.4f} | {per_seed} | {epochs} | "
            f"{statistics.mean(walls):.0f} / {max(walls):.0f} | {train:.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.levers", *sys.argv[1:]])
    env, info = child_env(None), machine()
    started = time.perf_counter()
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory(prefix="levers-") as tmp:
        work = Path(tmp)
        runs = throughput(args, work, env) if args.variants else {}
        head = [
            "# Cheaper fine-tuning: the levers side by side",
            "",
            f"Command: `{command}` (started {date}).",
            "",
            f"Machine: {info['cpu']}, {info['cores']} cores, CPU flags "
            f"{' '.join(info['flags']) or 'none of ' + 'avx2/avx512'}, {info['mem_gib']:.0f} "
            f"GiB, load {info['load']:.2f} at the start.",
            "",
        ]
        if runs:
            head += [
                "## Training throughput",
                "",
                f"The manual loop, custom_head on all-MiniLM-L6-v2, fp32, max_length "
                f"{args.max_length}, batch {args.batch_size}; {args.steps} timed steps after "
                f"{args.warmup} warm-up, median of {args.windows} windows x {args.rounds} "
                "round(s).",
                "",
                *throughput_table(args, runs),
                "",
            ]

        def written(rows: list[str], baseline: list[str] = ()) -> None:
            minutes = (time.perf_counter() - started) / 60
            lines = [*head]
            if rows:
                lines += [
                    "## Whole runs",
                    "",
                    "`python -m src.run OVERRIDES seed=S`, start to exit, in fp32.",
                    "",
                    *rows,
                    *baseline,
                    "",
                ]
            lines += [f"{minutes:.0f} min in all so far.", ""]
            args.out.write_text("\n".join(lines))

        written([])
        rows = quality(args, work, env, written) if args.quality else []
        if rows:
            svm = run_worker("tfidf_svm", "tfidf-svm", work, env)
            written(
                rows,
                [
                    "| TF-IDF + LinearSVC (1600 training reviews) | "
                    "`python -m benchmarks.worker tfidf_svm` | - "
                    f"| {svm['accuracy']:.4f} | - | - | {svm['wall_s']:.1f} | - |"
                ],
            )
    print(f"[levers] wrote {args.out}")


if __name__ == "__main__":
    main()

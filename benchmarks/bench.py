"""The benchmark: the notebook recipe vs this project's two trainers, side by side, in one run.

    python -m benchmarks.bench                # throughput, startup, TF-IDF baseline (~10 min)
    python -m benchmarks.bench --levers       # + the speed levers: precision x attention dropout
    python -m benchmarks.bench --quality --seeds 3   # + whole runs over seeds (hours on 2 cores)

Every measurement runs in its own process (benchmarks/worker.py), one after the other, on the
same backbone (the embedded MiniLM), max_length, batch size and number of steps, and the
results go to benchmarks/RESULTS.md with the machine, the versions and this command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import quality as q
from benchmarks.common import MINILM, ROOT

MODELS = {  # --shape
    "minilm": "all-MiniLM-L6-v2 (6 layers, hidden 384)",
    "bert-base": "bert-base's shape (12 layers, hidden 768, random weights: speed only)",
}
VARIANTS = {  # label -> (worker, extra arguments, description)
    "notebook": ("notebook", {}, "(a) notebook: every review padded to max_length, `Trainer`"),
    "hf": ("project", {"trainer": "hf"}, "(b) project `trainer=hf`"),
    "manual": ("project", {"trainer": "manual"}, "(c) project `trainer=manual`"),
}
COMPILED = {  # with --compile
    "manual_compile": (
        "project",
        {"trainer": "manual", "compile": True},
        "(d) project `trainer=manual compile=true`",
    ),
}


def lever(letter: str, precision: str, dropout: float) -> tuple[str, dict, str]:
    overrides = [f"trainer.precision={precision}", f"backbone.attention_dropout={dropout}"]
    return (
        "project",
        {"trainer": "manual", "overrides": overrides},
        f"({letter}) `trainer=manual {' '.join(overrides)}`",
    )


LEVERS = {  # with --levers: the manual loop with each speed lever alone and both together
    f"manual_{precision}_attn{dropout}": lever(letter, precision, dropout)
    for letter, (precision, dropout) in zip(
        "efgh", [("fp32", 0.1), ("fp32", 0.0), ("bf16", 0.1), ("bf16", 0.0)], strict=True
    )
}
STARTUP = {
    "python -c pass": ["-c", "pass"],
    "python -m src.run --cfg job": ["-m", "src.run", "--cfg", "job"],
}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them (>= 1)")
    p.add_argument("--windows", type=int, default=4, help="timed windows; rates are the median")
    p.add_argument(
        "--rounds", type=int, default=2, help="run the variants this many times, interleaved"
    )
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--eval-samples", type=int, default=128, help="test reviews for eval speed")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every run")
    p.add_argument("--startup-repeats", type=int, default=5)
    p.add_argument("--no-throughput", action="store_true", help="skip the training variants")
    p.add_argument(
        "--compile",
        action="store_true",
        help="add (d): trainer=manual compile=true (torch.compile)",
    )
    p.add_argument(
        "--levers",
        action="store_true",
        help="add the manual loop in fp32 and bf16, each with attention dropout 0.1 and 0",
    )
    p.add_argument(
        "--quality", action="store_true", help="whole `python -m src.run` runs over seeds"
    )
    p.add_argument(
        "--quality-configs",
        default=",".join(q.CONFIGS),
        help=f"comma-separated rows of the quality table, from: {', '.join(q.CONFIGS)}",
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds per quality row: 42, 1, 2, ...")
    p.add_argument(
        "--quality-cap", type=int, default=None, help="train/test reviews per quality run (a check)"
    )
    p.add_argument("--quality-backbone", default="minilm", choices=("minilm", "tiny"))
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda: (a) trains in fp32 as the notebook does, "
        "(b) and (c) in the project's default precision there (bf16 autocast)",
    )
    p.add_argument(
        "--backbone-path", default=MINILM, help="the MiniLM folder, where the package is absent"
    )
    p.add_argument(
        "--shape",
        default="minilm",
        choices=("minilm", "bert-base"),
        help="the model of the throughput variants: the embedded MiniLM, or bert-base's shape "
        "(12 layers, 768 wide) with random weights: its speed, offline",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < args.windows:
        p.error("need --warmup >= 1 and --steps >= --windows")
    if args.seeds < 1:
        p.error("need --seeds >= 1")
    args.quality_configs = [name for name in args.quality_configs.split(",") if name]
    if unknown := [name for name in args.quality_configs if name not in q.CONFIGS]:
        p.error(f"--quality-configs: unknown {', '.join(unknown)}; from {', '.join(q.CONFIGS)}")
    return args


# --- running the measurements --------------------------------------------------------------


def child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_worker(name: str, label: str, work: Path, env: dict[str, str], **kwargs: Any) -> dict:
    """`python -m benchmarks.worker` in a fresh process; its output goes to `work/<label>.log`."""
    out, log = work / f"{label}.json", work / f"{label}.log"
    print(f"[bench] {label} ...", flush=True)
    start = time.perf_counter()
    with log.open("w") as stream:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", name, str(out), json.dumps(kwargs)],
            cwd=ROOT,
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode:
        sys.exit(f"[bench] {label} failed (exit {proc.returncode}):\n{log.read_text()[-4000:]}")
    print(f"[bench] {label}: {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(out.read_text())


def time_startup(repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Median wall seconds of each STARTUP command, run from the project root."""
    medians = {}
    for label, args in STARTUP.items():
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True
            )
            seconds.append(time.perf_counter() - start)
        medians[label] = statistics.median(seconds)
    return medians


def first_fields(path: Path) -> dict[str, str]:
    """`key: value` lines of a /proc file, the first occurrence of each (empty off Linux)."""
    fields: dict[str, str] = {}
    for line in (path.read_text() if path.exists() else "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def machine() -> dict[str, Any]:
    """CPU model, usable cores, the SIMD flags that bound fp32 speed, memory, current load."""
    cpu = first_fields(Path("/proc/cpuinfo"))
    mem_kib = int(first_fields(Path("/proc/meminfo")).get("MemTotal", "0 kB").split()[0])
    flags = set(cpu.get("flags", "").split())
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
    return {
        "cpu": cpu.get("model name", "?"),
        "cores": len(cores),
        "flags": [f for f in CPU_FLAGS if f in flags],
        "mem_gib": mem_kib / 2**20,
        "load": os.getloadavg()[0],
    }


def pool_rounds(rounds: list[dict]) -> dict[str, Any]:
    """One variant over its rounds: each rate is the median of every window of every round."""
    windows = {k: [v for r in rounds for v in r["windows"][k]] for k in rounds[0]["windows"]}
    pooled = {k: statistics.median(v) for k, v in windows.items()}
    pooled["samples_per_s_range"] = (min(windows["samples_per_s"]), max(windows["samples_per_s"]))
    pooled["eval_samples_per_s"] = statistics.median(r["eval_samples_per_s"] for r in rounds)
    pooled["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    for key in (
        "truncation",
        "precision",
        "steps_per_window",
        "real_tokens_per_sample",
        "padded_tokens_per_sample",
        "non_embedding_params",
    ):
        pooled[key] = rounds[0][key]
    return pooled


# --- RESULTS.md -------------------------------------------------------------------------------


def peak_share(run: dict, peaks: dict[str, float]) -> float:
    """The share of the matmul peak of the precision the variant trains in."""
    return run["flops_per_s"] / (peaks[run["precision"]] * 1e9)


def throughput_section(
    args: argparse.Namespace, runs: dict[str, dict], peaks: dict[str, float]
) -> list[str]:
    base = runs["notebook"]["samples_per_s"]
    shape = runs["notebook"]
    lines = [
        "## Training throughput",
        "",
        f"{MODELS[args.shape]} ({shape['non_embedding_params'] / 1e6:.2f}M "
        f"non-embedding parameters), {args.device}, max_length "
        f"{args.max_length}, batch {args.batch_size}, {args.steps} timed steps "
        f"({args.windows} windows of {shape['steps_per_window']}) after {args.warmup} warm-up "
        f"steps, {args.rounds} round(s) of the variants in turn; eval on {args.eval_samples} "
        f"test reviews at batch {args.eval_batch_size}. Rates are the median window of all "
        "rounds; the range is the slowest and fastest window.",
        "",
        "| variant | truncation | precision | train samples/s (range) | vs (a) | real tokens/s "
        "| padded tokens/s | tokens/sample real / padded | eval samples/s | peak RSS MiB "
        "| % of matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    descriptions = {label: v[2] for label, v in {**VARIANTS, **COMPILED, **LEVERS}.items()}
    for label, r in runs.items():
        description = descriptions[label]
        slowest, fastest = r["samples_per_s_range"]
        lines.append(
            f"| {description} | {r['truncation']} | {r['precision']} | {r['samples_per_s']:.2f} "
            f"({slowest:.2f}-{fastest:.2f}) | {r['samples_per_s'] / base:.2f}x "
            f"| {r['real_tokens_per_s']:.0f} | {r['padded_tokens_per_s']:.0f} "
            f"| {r['real_tokens_per_sample']:.0f} / {r['padded_tokens_per_sample']:.0f} "
            f"| {r['eval_samples_per_s']:.2f} | {r['peak_rss_mb']:.0f} "
            f"| {100 * peak_share(r, peaks):.0f}% |"
        )
    return lines


def pm(stats: tuple[float, float]) -> str:
    return f"{stats[0]:.4f} ± {stats[1]:.4f}"


def quality_section(baseline: dict, rows: list[dict], note: str) -> list[str]:
    lines = [
        "## Quality on the notebook's split",
        "",
        note,
        "",
        "| row | overrides | precision | seeds | test accuracy | test F1 "
        "| accuracy per seed [95% interval] | wall s (mean / max) | train s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| TF-IDF (1-2 grams) + LinearSVC | - | - | - | {baseline['accuracy']:.4f} "
        f"| {baseline['f1']:.4f} | - | {baseline['wall_s']:.1f} | - |",
    ]
    for r in rows:
        config = r["config"]
        per_seed = "; ".join(
            f"{seed}: {run['test']['accuracy']:.4f} "
            + ("[{:.4f}, {:.4f}]".format(*run["test_ci95"]["accuracy"]) if run["test_ci95"] else "")
            for seed, run in r["runs"].items()
        )
        overrides = " ".join(config.overrides) or "-"
        lines.append(
            f"| {config.name} | `{overrides}` | {r['precision']} | {len(r['runs'])} "
            f"| {pm(r['accuracy'])} | {pm(r['f1'])} | {per_seed} "
            f"| {r['wall_s']:.0f} / {r['max_wall_s']:.0f} | {r['train_s']:.0f} |"
        )
    return lines


def targets_section(
    runs: dict[str, dict],
    peaks: dict[str, float],
    startup: dict[str, float],
    quality: list[dict],
    baseline: dict,
) -> list[str]:
    """The issue's targets, each as measured in this run."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = ["## Targets", ""]
    if runs:
        base = runs["notebook"]["samples_per_s"]
        ratios = {k: r["samples_per_s"] / base for k, r in runs.items() if k != "notebook"}
        best = max(ratios.values())
        mfu = max(peak_share(r, peaks) for r in runs.values())
        lines += [
            "- each project trainer >= 1.0x the notebook's training samples/s: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
            + f": {verdict(min(ratios['hf'], ratios['manual']) >= 1.0)}",
            f"- best configuration >= 1.3x: {best:.2f}x: {verdict(best >= 1.3)}",
            f"- >= 60% of the matmul peak: best {100 * mfu:.0f}%: {verdict(mfu >= 0.6)}",
        ]
    cfg_job = startup["python -m src.run --cfg job"]
    lines.append(
        f"- `python -m src.run --cfg job` under 2 s: {cfg_job:.2f} s: {verdict(cfg_job < 2)}"
    )
    default = next((r for r in quality if r["config"].name == "default"), None)
    if default:
        (acc, std), n = default["accuracy"], len(default["runs"])
        lines.append(
            f"- `python -m src.run` beats TF-IDF's test accuracy, mean of {n} seed(s): "
            f"{acc:.4f} ± {std:.4f} vs {baseline['accuracy']:.4f}: "
            f"{verdict(acc > baseline['accuracy'])}"
        )
        wall = default["max_wall_s"]
        lines.append(
            f"- ... within 12 minutes of wall time: slowest seed {wall:.0f} s: "
            f"{verdict(wall <= 720)}"
        )
    return lines


METHOD = """## Method

- Each variant runs in its own process, one after the other; peak RSS is that process's
  `ru_maxrss`. Torch threads: torch's default unless `--threads`.
- (a) is the notebook as written: `BertTokenizerFast(truncation=True, padding=True,
  max_length=L)` over the whole split (every review padded to L), a `Dataset` of those tensors,
  `BertForSequenceClassification` under a plain `Trainer` (notebook `TrainingArguments`, cut to
  `max_steps`). (b) and (c) build the objects as `src.run.train` does, from the composed config
  (`trainer=hf|manual`, `head_tail` truncation: one cut per review, per-batch padding), on exactly
  warm-up + timed batches.
- A step is timed from the end of the previous one: a `TrainerCallback` (`on_step_end`) in (a),
  the project's own `ScalarLogger` hook at `trainer.logging_steps=1` in (b) and (c). Real tokens
  are `attention_mask` ones; padded tokens are every position the model computes on.
- FLOPs per trained token: `6 * N + 12 * layers * hidden * seq_len` (N: parameters outside the
  embedding tables; seq_len: the batch's padded length; fwd + bwd), over padded tokens. The
  peak is the best of several rounds of 2048x2048 fp32 matmuls (2 * 2048^3 FLOPs each), measured
  before and after the training variants with the same threads; on a GPU, 8192x8192 matmuls in
  fp32 (no TF32) and in bf16, and each variant is compared with the peak of its own precision.
  Every time stamp waits for the GPU's queued work (`torch.cuda.synchronize`).
- Eval samples/s: one pass over the eval reviews after training (`Trainer.predict` in (a) and
  (b), the manual loop's `predict` in (c)).
- Startup: the median wall time of a fresh process, from the project root.
- Levers (`--levers`): (e)-(h) are (c) with `trainer.precision` fp32 or bf16 and the
  backbone's attention dropout 0.1 (the checkpoint's) or 0; bf16 rows run only where the CPU
  computes bf16 natively (`avx512_bf16` / `amx_bf16`), and are compared with the bf16 peak.
- Quality: each row is `python -m src.run <overrides> seed=S` in a fresh process, timed from
  start to exit, for `--seeds` seeds (42, 1, 2, ...); mean ± sample std over the seeds; the
  TF-IDF baseline is `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)` +
  `LinearSVC()` (C=1)."""


def write_results(
    args: argparse.Namespace,
    command: str,
    info: dict[str, Any],
    peaks: list[dict],
    runs: dict[str, dict],
    startup: dict[str, float],
    baseline: dict,
    quality: list[dict],
) -> str:
    best = {k: max(p[k]["best_gflops"] for p in peaks) for k in peaks[0] if k in ("fp32", "bf16")}
    versions = peaks[0]
    gpu = "" if args.device == "cpu" else f"- GPU: {versions['device_name']}"
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {info['date']}, in {info['minutes']:.0f} minutes.",
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores usable ({', '.join(info['flags'])}), "
        f"{info['mem_gib']:.0f} GiB RAM",
        *([gpu] if gpu else []),
        f"- Python {versions['python']}, torch {versions['torch']}, transformers "
        f"{versions['transformers']}, torch threads {versions['torch_threads']}",
        f"- 1-minute load average before the run: {info['load']:.2f} (other work on the "
        "machine slows every variant; the window ranges below show how steady it was)",
        *(
            f"- {kind} matmul {versions['size']}x{versions['size']} on {args.device}: "
            + "; ".join(
                f"{when} best {p[kind]['best_gflops']:.1f} GFLOP/s "
                f"(median {p[kind]['median_gflops']:.1f})"
                for when, p in zip(("before", "after"), peaks, strict=False)
            )
            + f"; peak used: {gflops:.1f} GFLOP/s"
            for kind, gflops in best.items()
        ),
        "",
    ]
    if runs:
        lines += [*throughput_section(args, runs, best), ""]
    lines += [
        "## Startup",
        "",
        f"| command | median s (of {args.startup_repeats}) |",
        "|---|---|",
        *(f"| `{k}` | {v:.2f} |" for k, v in startup.items()),
        "",
    ]
    if quality:
        first = quality[0]
        note = (
            f"Each row: `python -m src.run <overrides> seed=S` in a fresh process, for seeds "
            f"{', '.join(str(seed) for seed in first['runs'])}, on the default composition "
            "(custom_head, manual loop, the epoch picked on the validation split, the test "
            "split scored once); mean ± sample std over seeds; the interval of each seed is a "
            "95% percentile bootstrap over the test reviews; wall s is the whole command"
        )
        if args.quality_cap or args.quality_backbone != "minilm":
            note += (
                f", **capped at {args.quality_cap} reviews, backbone={args.quality_backbone}: "
                "a check of the harness, not a result**"
            )
        else:
            note += ", the embedded MiniLM"
        note += f"; device {first['device']}."
    else:
        note = "Fine-tuning rows: `--quality --seeds 3` (hours on 2 CPU cores)."
    lines += [*quality_section(baseline, quality, note), ""]
    lines += [*targets_section(runs, best, startup, quality, baseline), "", METHOD, ""]
    return "\n".join(lines)


def levers(device: str) -> dict[str, tuple[str, dict, str]]:
    """LEVERS, less bf16 on a CPU that only emulates it (hundreds of times slower)."""
    from src.config.devices import cpu_has_native_bf16

    if device != "cpu" or cpu_has_native_bf16():
        return LEVERS
    print("[bench] this CPU has no native bf16: the bf16 levers are left out", flush=True)
    return {k: v for k, v in LEVERS.items() if "bf16" not in k}


def quality_rows(args: argparse.Namespace, work: Path, env: dict[str, str]) -> list[dict]:
    """Each chosen row of the quality table over `--seeds` seeds, one whole run at a time."""
    extra = [f"device={args.device}"]
    if args.quality_backbone == "tiny":
        extra.append("backbone=tiny")
    elif args.backbone_path != MINILM:
        extra.append(f"backbone.path={args.backbone_path}")
    if args.quality_cap:
        cap = args.quality_cap
        extra += [
            f"dataset.max_train_samples={cap}",
            f"dataset.max_eval_samples={cap}",
            "trainer.min_steps=0",
        ]  # a check of the harness: the rows' epochs as given
    rows = []
    for name in args.quality_configs:
        config, runs = q.CONFIGS[name], {}
        for seed in q.seeds(args.seeds):
            label = f"quality-{name}-seed{seed}"
            print(f"[bench] {label} ...", flush=True)
            overrides = [*config.overrides, f"seed={seed}", *extra]
            runs[seed] = q.run_once(overrides, work / label, env)
            print(f"[bench] {label}: {runs[seed]['wall_s']:.0f} s", flush=True)
        rows.append(q.pool_seeds(config, runs))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.bench", *sys.argv[1:]])
    env = child_env(args.threads)
    started, info = time.perf_counter(), machine()
    info["date"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    shared = {
        "steps": args.steps,
        "warmup": args.warmup,
        "windows": args.windows,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "eval_samples": args.eval_samples,
        "device": args.device,
        "backbone_path": args.backbone_path,
        "shape": args.shape,
    }
    variants = {
        **VARIANTS,
        **(COMPILED if args.compile else {}),
        **(levers(args.device) if args.levers else {}),
    }
    rounds: dict[str, list[dict]] = {label: [] for label in variants}
    quality: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        rounds_of_peak = {"rounds": 0} if args.no_throughput else {}  # no variant to compare
        peaks = [
            run_worker(
                "matmul_peak", "matmul-before", work, env, device=args.device, **rounds_of_peak
            )
        ]
        if not args.no_throughput:
            for n in range(args.rounds):
                for label, (worker, extra, _) in variants.items():
                    name = f"{label}-{n + 1}"
                    rounds[label].append(
                        run_worker(
                            worker, name, work, env, **extra, **shared, out_dir=str(work / name)
                        )
                    )
            peaks.append(run_worker("matmul_peak", "matmul-after", work, env, device=args.device))
        print("[bench] startup ...", flush=True)
        startup = time_startup(args.startup_repeats, env)
        baseline = run_worker("tfidf_svm", "tfidf-svm", work, env)
        if args.quality:
            quality = quality_rows(args, work, env)
    info["minutes"] = (time.perf_counter() - started) / 60
    runs = {label: pool_rounds(r) for label, r in rounds.items() if r}
    text = write_results(args, command, info, peaks, runs, startup, baseline, quality)
    args.out.write_text(text)
    print(text)
    print(f"[bench] wrote {args.out}")


if __name__ == "__main__":
    main()

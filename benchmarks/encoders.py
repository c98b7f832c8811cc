"""Every encoder family at its base shape: full fine-tuning, freeze + cache and LoRA side by side.

Training samples/s and peak memory of each lever, random weights, in one run:

    python -m benchmarks.encoders         # CPU: 7 families x 3 levers, fp32, 4 steps (~30 min)
    python -m benchmarks.encoders --out benchmarks/RESULTS_encoders-gpu.md
                                          # GPU, unchanged (device=auto picks cuda): precision
                                          # auto (bf16 autocast), 20 timed steps in 4 windows
    python -m benchmarks.encoders --families bert,modernbert --steps 8   # some families

Every family gets a folder of config.json and the embedded WordPiece tokenizer
(src.models.encoders.random_encoder, size "base": the family's base checkpoint's shape) and
trains as
`backbone.path=<folder> backbone.init=random` with the family's own dropout
(`backbone.attention_dropout=null backbone.hidden_dropout=null`), model=custom_head, in the
manual loop, each lever in its own process: benchmarks.worker running
benchmarks.throughput.project (the project's own build and loop, exactly warm-up + timed batches
of `truncation=head_tail` reviews), which for freeze + cache fills the cache first and times it
apart, so the rate is that of every epoch after the first. Freeze + cache freezes half the
layers (src.models.encoders.layer_count of the saved config, rounded down); ALBERT shares one
layer's
weights at every depth and refuses it. LoRA is `model.peft=lora` at its defaults (r=8, every
Linear of the family's layers). Peak memory: the process's peak RSS (getrusage) on a CPU,
torch.cuda.max_memory_allocated on a GPU (both include filling the cache). The table goes to
benchmarks/RESULTS_encoders.md with the machine, its CPU flags, the device, the precision and
this command, rewritten after each family, so a run stopped early keeps the families it finished.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench import child_env, machine, pool_rounds
from benchmarks.common import MINILM, ROOT

# one representative per family of src.models.encoders.ENCODERS (xlm-roberta, camembert: roberta's
# code; deberta: v1, superseded by v2/v3)
FAMILIES = ("bert", "roberta", "distilbert", "deberta-v2", "electra", "albert", "modernbert")
LEVERS = ("full", "freeze+cache", "lora")
CELL = "--cell"  # `python -m benchmarks.encoders --cell OUT KWARGS`: one measurement (a child)


def lever_overrides(lever: str, frozen: int) -> tuple[str, ...]:
    """The lever's overrides on top of full fine-tuning (the worker's backbone.freeze_layers=0
    backbone.cache_frozen=false)."""
    if lever == "freeze+cache":
        return (f"backbone.freeze_layers={frozen}", "backbone.cache_frozen=true")
    if lever == "lora":
        return ("model.peft=lora",)
    return ()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    about = __doc__.split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m benchmarks.encoders", description=about)
    p.add_argument("--families", default=",".join(FAMILIES), help="model types, comma-separated")
    p.add_argument("--steps", type=int, default=None, help="timed steps (4 on CPU, 20 on GPU)")
    p.add_argument("--warmup", type=int, default=None, help=">= 1 (1 on CPU, 3 on GPU)")
    p.add_argument("--windows", type=int, default=None, help="rates: median window (1; GPU 4)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu), cpu, cuda")
    p.add_argument(
        "--precision", default=None, help="trainer.precision: fp32 on CPU, auto elsewhere"
    )
    p.add_argument("--size", default="base", choices=("base", "tiny"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_encoders.md")
    args = p.parse_args(argv)
    args.families = [f for f in args.families.split(",") if f]
    from src.models.encoders import ENCODERS

    if unknown := [f for f in args.families if f not in ENCODERS]:
        p.error(f"--families: unknown {', '.join(unknown)}; from {', '.join(ENCODERS)}")
    from src.config.devices import resolve_device

    args.device_type = resolve_device(args.device).type  # the children resolve it the same way
    cpu = args.device_type == "cpu"
    for name, on_cpu, elsewhere in (("steps", 4, 20), ("warmup", 1, 3), ("windows", 1, 4)):
        if getattr(args, name) is None:
            setattr(args, name, on_cpu if cpu else elsewhere)
    args.precision = args.precision or ("fp32" if cpu else "auto")
    if args.warmup < 1 or args.windows < 1 or args.steps < args.windows:
        p.error(
            "need --warmup >= 1 (a timed step starts at a warm-up's end), --windows >= 1 "
            "and --steps >= --windows"
        )
    return args


# --- one measurement, in its own process ----------------------------------------------------


def measure(**kwargs: Any) -> dict[str, Any]:
    """benchmarks.throughput.project, plus the GPU's peak memory (in the child process)."""
    import torch

    from benchmarks.throughput import project

    result = project(**kwargs)
    cuda = torch.cuda.is_initialized()
    result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    result["device_name"] = torch.cuda.get_device_name() if cuda else "cpu"
    return result


def cell_main(argv: list[str]) -> None:
    """benchmarks.worker's main (the shared corpus, the peak RSS, OUT_JSON) running `measure`."""
    from benchmarks import worker

    worker.WORKERS["encoder"] = "__main__:measure"
    sys.argv = [sys.argv[0], "encoder", *argv]
    worker.main()


def run_cell(label: str, work: Path, env: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """bench.run_worker's fresh process, running `measure`; a failure is this cell's result
    (`error`: the log's last line, a refusal's one line) rather than the end of the run."""
    out, log = work / f"{label}.json", work / f"{label}.log"
    print(f"[encoders] {label} ...", flush=True)
    start = time.perf_counter()
    command = [sys.executable, "-m", "benchmarks.encoders", CELL, str(out), json.dumps(kwargs)]
    with log.open("w") as stream:
        proc = subprocess.run(command, cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit {proc.returncode}"
        print(f"[encoders] {label} failed in {seconds:.0f} s: {last}", flush=True)
        return {
            "error": last.removeprefix("src.config.errors.UserError: "),
            "refused": last.startswith("src.config.errors.UserError"),
        }
    print(f"[encoders] {label}: {seconds:.0f} s", flush=True)
    return json.loads(out.read_text())


def family(
    args: argparse.Namespace, model_type: str, work: Path, env: dict[str, str]
) -> dict[str, Any]:
    """One family: its random folder, then each lever in its own process."""
    from src.models import encoders
    from src.models.backbones import resolve_path

    folder = encoders.random_encoder(
        work / f"{model_type}-{args.size}",
        model_type,
        tokenizer=resolve_path(MINILM),
        size=args.size,
    )
    config = json.loads((folder / "config.json").read_text())
    layers = encoders.layer_count(config) or 0
    shared = {
        "trainer": "manual",
        "steps": args.steps,
        "warmup": args.warmup,
        "windows": args.windows,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "eval_batch_size": args.batch_size,
        "eval_samples": args.batch_size,
        "device": args.device,
        "backbone_path": str(folder),
    }
    base = (
        "backbone.init=random",
        f"backbone.name={model_type}-{args.size}-random",
        "backbone.hub_id=null",
        "backbone.attention_dropout=null",
        "backbone.hidden_dropout=null",
        "model=custom_head",
        f"trainer.precision={args.precision}",
        "tokenize_cache=null",
    )
    row: dict[str, Any] = {
        "family": encoders.known(model_type).family,
        "layers": layers,
        "hidden": config.get("hidden_size", config.get("dim")),
        "frozen": layers // 2,
        "shared_layers": encoders.known(model_type).shared_layers,
        "levers": {},
    }
    for lever in LEVERS:
        label = f"{model_type}-{lever.replace('+', '-')}"
        overrides = [*base, *lever_overrides(lever, row["frozen"])]
        run = run_cell(label, work, env, **shared, overrides=overrides, out_dir=str(work / label))
        if "error" not in run:
            run = {
                **pool_rounds([run]),
                **{
                    k: run[k]
                    for k in ("trainable_params", "cache_fill_s", "cuda_peak_mb", "device_name")
                },
            }
        row["levers"][lever] = run
    return row


# --- RESULTS_encoders.md ----------------------------------------------------------------------


def rate(run: dict[str, Any], full: dict[str, Any] | None, windows: int) -> tuple[str, str]:
    """`samples/s (range)` and `vs full` of one measured lever."""
    text = f"{run['samples_per_s']:.2f}"
    if windows > 1:
        low, high = run["samples_per_s_range"]
        text += f" ({low:.2f}-{high:.2f})"
    ok = full and "error" not in full
    return text, f"{run['samples_per_s'] / full['samples_per_s']:.2f}x" if ok else "-"


def peak(run: dict[str, Any]) -> str:
    mb = run["cuda_peak_mb"] if run["cuda_peak_mb"] is not None else run["peak_rss_mb"]
    return f"{mb:.0f}"


def table(args: argparse.Namespace, rows: dict[str, dict]) -> tuple[list[str], list[str]]:
    """One row per family, the levers side by side; and the notes of the cells that failed."""
    lines = [
        "| family (model_type) | layers x hidden | non-embedding params | full: samples/s "
        "| full: peak MiB | freeze+cache: frozen layers | samples/s | vs full | cache fill s "
        "| peak MiB | LoRA: samples/s | vs full | trainable | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for model_type, row in rows.items():
        full = row["levers"]["full"]
        cells: list[str] = []
        for lever, width in (("full", 2), ("freeze+cache", 4), ("lora", 4)):
            run = row["levers"][lever]
            if "error" in run:
                notes.append(f"{len(notes) + 1}. {model_type}, {lever}: `{run['error']}`")
                if run["refused"] and lever == "freeze+cache" and row["shared_layers"]:
                    why = "refused (shared layers)"
                else:
                    why = f"{'refused' if run['refused'] else 'failed'} (note {len(notes)})"
                cells += [why, *["-"] * (width - 1)]
                continue
            samples, ratio = rate(run, full, args.windows)
            if lever == "full":
                cells += [samples, peak(run)]
            elif lever == "freeze+cache":
                fill = f"{run['cache_fill_s']:.1f}" if run["cache_fill_s"] is not None else "-"
                cells += [samples, ratio, fill, peak(run)]
            else:
                cells += [samples, ratio, f"{run['trainable_params'] / 1e6:.2f}M", peak(run)]
        measured = [r for r in row["levers"].values() if "error" not in r]
        params = f"{measured[0]['non_embedding_params'] / 1e6:.1f}M" if measured else "-"
        frozen = "-" if row["shared_layers"] else str(row["frozen"])
        lines.append(
            f"| {row['family']} ({model_type}) | {row['layers']} x {row['hidden']} | {params} "
            f"| {cells[0]} | {cells[1]} | {frozen} | {' | '.join(cells[2:])} |"
        )
    return lines, notes


def write(
    args: argparse.Namespace,
    command: str,
    info: dict[str, Any],
    date: str,
    started: float,
    rows: dict[str, dict],
) -> None:
    import torch
    import transformers

    runs = [r for row in rows.values() for r in row["levers"].values() if "error" not in r]
    precisions = sorted({r["precision"] for r in runs}) or ["-"]
    names = sorted({r["device_name"] for r in runs if r["device_name"] != "cpu"})
    device = args.device_type + (f" ({', '.join(names)})" if names else "")
    memory = "peak CUDA memory allocated" if names else "peak RSS of the process"
    lines, notes = table(args, rows)
    shape = (
        "each family's base checkpoint's shape"
        if args.size == "base"
        else "**size tiny (2 layers of 32): a check of the harness, not a result**"
    )
    minutes = (time.perf_counter() - started) / 60
    text = [
        "# Encoder families: full fine-tuning, freeze + cache and LoRA side by side",
        "",
        f"Command: `{command}` (started {date}, {minutes:.0f} min so far).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, CPU flags "
        f"{' '.join(info['flags']) or 'none of avx2/avx512'}, {info['mem_gib']:.0f} GiB, load "
        f"{info['load']:.2f} at the start; torch {torch.__version__}, transformers "
        f"{transformers.__version__}.",
        "",
        f"Device: {device} (`device={args.device}`); precision {', '.join(precisions)} "
        f"(`trainer.precision={args.precision}`).",
        "",
        f"Random weights at {shape}, the embedded WordPiece tokenizer (30522 pieces) for every "
        "family, `backbone.path=<folder> backbone.init=random backbone.attention_dropout=null "
        "backbone.hidden_dropout=null model=custom_head trainer=manual` in "
        f"{', '.join(precisions)}, max_length {args.max_length} (`truncation=head_tail`), batch "
        f"{args.batch_size}; {args.steps} timed optimizer steps (forward, backward, step) after "
        f"{args.warmup} warm-up, the median of {args.windows} window(s). Each lever in its own "
        "process. freeze+cache: `backbone.freeze_layers=<half the layers> "
        "backbone.cache_frozen=true`, the cache filled before the timed steps (its time: cache "
        "fill s), so the rate is that of every epoch after the first. LoRA: `model.peft=lora` "
        f"(r=8, every Linear of the family's layers). Peak MiB: the {memory}.",
        "",
        *lines,
        "",
    ]
    if notes:
        text += ["Cells that did not run, the run's own line:", "", *notes, ""]
    args.out.write_text("\n".join(text))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CELL]:
        cell_main(argv[1:])
        return
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.encoders", *argv])
    env, info = child_env(None), machine()
    started = time.perf_counter()
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="encoders-") as tmp:
        for model_type in args.families:
            rows[model_type] = family(args, model_type, Path(tmp), env)
            write(args, command, info, date, started, rows)
    print(Path(args.out).read_text())
    print(f"[encoders] wrote {args.out}")


if __name__ == "__main__":
    main()

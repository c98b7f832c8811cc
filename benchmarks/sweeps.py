"""The same Optuna search with and without a pruner, side by side in one run; and (--pareto) a
study of quality against cost over the levers that make a run cheaper.

    NLTK_DATA=../shared/nltk_data python -m benchmarks.sweeps [--trials 12] [--out FILE]
    NLTK_DATA=../shared/nltk_data python -m benchmarks.sweeps --pareto

Each variant is one `python -m src.run hparams_search=optuna ...` command (printed below its
table) on a movie_reviews subset sized to take a minute a trial on two CPU cores: the same
search space (lr, dropout, warm-up), the same seeded TPE sampler, a fresh study each. It
reports the wall time of each command, the best validation value found, and how many trials
were pruned. Nothing is chosen on the test split: a study maximises the best eval F1 of the
validation split. Writes benchmarks/RESULTS_sweeps.md (or --out) with the machine and flags;
--pareto writes its own section at the end of that file and leaves the rest as it is.

The Pareto study is one command too: a grid over the levers (benchmarks/conf/lever: every
layer trained, lower layers frozen, frozen and cached, LoRA) and `max_length`, with two
objectives, the best validation F1 and the training seconds; every run's other costs
(trainable parameters, peak memory, test latency) come from its metrics.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench import machine

OUT = Path("outputs/bench/sweeps")
SEARCH = [
    "hparams_search=optuna",
    "dataset.max_train_samples=240",
    "dataset.max_eval_samples=160",
    "max_length=128",
    "truncation=head",
    "epochs=4",
    "trainer.min_steps=0",
    "trainer.early_stopping_patience=null",
    "hydra.sweeper.sampler.seed=0",
    "hydra.sweeper.params.lr='tag(log, interval(1e-6, 1e-3))'",  # dropout, warm-up: the preset's
    "~hydra.sweeper.params.batch_size",
]
PRUNERS = {
    "no pruner": [],
    "MedianPruner": [
        "hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner, "
        "n_startup_trials: 3, n_warmup_steps: 1}"
    ],
}


def run(name: str, extra: list[str], trials: int) -> dict:
    folder = OUT / name.replace(" ", "_")
    shutil.rmtree(folder, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "src.run",
        *SEARCH,
        f"hydra.sweeper.n_trials={trials}",
        *extra,
        f"hydra.sweep.dir={folder}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
    with sqlite3.connect(folder / "optuna.db") as db:
        rows = db.execute(
            "SELECT t.state, v.value FROM trials t LEFT JOIN trial_values v "
            "ON v.trial_id = t.trial_id"
        ).fetchall()
        epochs = db.execute("SELECT COUNT(*) FROM trial_intermediate_values").fetchone()[0]
    values = [v for state, v in rows if state == "COMPLETE" and v is not None]
    shown = " ".join(shlex.quote(a) for a in command[3:])
    return {
        "name": name,
        "wall": wall,
        "best": max(values) if values else None,
        "complete": len(values),
        "pruned": sum(s == "PRUNED" for s, _ in rows),
        "epochs": epochs,
        "command": f"python -m src.run {shown}",
    }


PARETO_HEADING = "## Quality against cost: a Pareto study"
LEVERS = ("full", "frozen3", "cached3", "cached5", "lora")
PARETO = [
    "hparams_search=optuna",
    "hydra.searchpath=[file://benchmarks/conf]",  # the lever group
    "~hydra.sweeper.params",  # the space is the two sweeps below
    f"+lever=choice({','.join(LEVERS)})",
    "max_length=choice(64,128,256)",
    "hydra/sweeper/sampler=grid",
    "hydra.sweeper.objectives=[f1,train_seconds]",
    "dataset.max_train_samples=480",
    "dataset.max_eval_samples=240",
    "truncation=head",
    "epochs=2",
    "trainer.min_steps=0",
    "trainer.early_stopping_patience=null",
]


def machine_line(info: dict) -> str:
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, CPU flags "
        f"{' '.join(info['flags']) or 'none of avx2/avx512'}, {info['mem_gib']:.0f} GiB, load "
        f"{info['load']:.2f} at the start. Precision `auto` (bf16 where the CPU has it natively, "
        "else fp32)."
    )


def pareto(out: Path) -> None:
    """The grid study, its front from its summary, every run's costs; its section of `out`."""
    info, date = machine(), datetime.date.today().isoformat()
    folder = OUT / "pareto"
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "src.run", *PARETO, f"hydra.sweep.dir={folder}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"pareto: exit {done.returncode}\n{done.stderr[-3000:]}")
    summary = (folder / "summary.md").read_text()
    front = summary[summary.index("## Pareto front") :].split("\n\n", 2)[2].strip()
    on_front = {row.split(" | ")[0].lstrip("| ") for row in front.splitlines()[2:]}
    rows = []
    for path in folder.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        overrides = (path.parent / ".hydra" / "overrides.yaml").read_text()
        lever = next(x for x in LEVERS if f"+lever={x}" in overrides)
        length = next(o for o in overrides.split() if o.startswith("max_length="))
        rows.append(
            (
                lever,
                int(length.split("=")[1]),
                metrics["best_eval_f1"],
                metrics["train_seconds"],
                metrics["parameters"]["trainable"],
                metrics["peak_memory_mb"],
                metrics["latency_ms"],
                path.parent.name in on_front,
            )
        )
    rows.sort(key=lambda r: (LEVERS.index(r[0]), r[1]))
    shown = " ".join(shlex.quote(a) for a in command[3:])
    lines = [
        PARETO_HEADING,
        "",
        f"Command: `NLTK_DATA=../shared/nltk_data python -m benchmarks.sweeps --pareto` ({date}), "
        f"which runs the one study below ({wall:.0f} s in all).",
        "",
        machine_line(info) + " Nothing else running.",
        "",
        f"The study: a grid over {len(LEVERS)} levers x 3 `max_length`s ({len(rows)} trials) of "
        "the embedded MiniLM on 480 training and 240 validation reviews of movie_reviews (the "
        "head of each review), 2 epochs each; two objectives, the best validation F1 "
        "(maximize) and the training seconds (minimize). The levers (benchmarks/conf/lever): "
        "`full` every layer trains; `frozen3` the embeddings and lower 3 of 6 layers frozen; "
        "`cached3` the same with their output computed once per review (MiniLM's default); "
        "`cached5` 5 of 6 frozen and cached; `lora` LoRA r=8 adapters, nothing frozen, lr 5e-4 "
        "(the others: MiniLM's 1e-4). The test split chooses nothing; latency is measured "
        "on it (milliseconds per review, scored in batches of 32, eval_batch_size).",
        "",
        "| lever | max_length | best validation F1 | train seconds | trainable parameters | "
        "peak memory (MiB) | test latency (ms/review) | on the front |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lever, length, f1, seconds, trainable, memory, latency, best in rows:
        lines.append(
            f"| {lever} | {length} | {f1:.4f} | {seconds:.1f} | {trainable:,} | {memory:.0f} | "
            f"{latency:.2f} | {'yes' if best else ''} |"
        )
    lines += [
        "",
        "The front, as the study's summary.md draws it (cheapest first):",
        "",
        front,
        "",
        "The command:",
        "",
        "```bash",
        f"python -m src.run {shown}",
        "```",
        "",
    ]
    text = out.read_text() if out.is_file() else ""
    kept = text.split(PARETO_HEADING, 1)[0].rstrip("\n")
    out.write_text((kept + "\n\n" if kept else "") + "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS_sweeps.md"))
    parser.add_argument("--pareto", action="store_true", help="the quality-against-cost study")
    args = parser.parse_args()
    if args.pareto:
        pareto(args.out)
        return
    info, date = machine(), datetime.date.today().isoformat()
    results = [run(name, extra, args.trials) for name, extra in PRUNERS.items()]
    base = results[0]
    lines = [
        "# Sweeps: the same Optuna search with and without pruning",
        "",
        f"Command: `NLTK_DATA=../shared/nltk_data python -m benchmarks.sweeps --trials "
        f"{args.trials}` ({date}).",
        "",
        machine_line(info) + " One variant after the other, nothing else running.",
        "",
        f"The search: {args.trials} trials of the embedded MiniLM on 240 training and 160 "
        "validation reviews (head 128 word pieces), 4 epochs each, over lr (log, 1e-6 to 1e-3), "
        "dropout (0 to 0.5) and warm-up (0 to 0.2), TPE seeded 0, maximising the best "
        "validation F1. The test split chooses nothing here.",
        "",
        "| variant | wall | best validation F1 | trials complete | trials pruned | epochs "
        "trained | time saved |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        saved = 1 - r["wall"] / base["wall"]
        best = f"{r['best']:.4f}" if r["best"] is not None else "-"
        lines.append(
            f"| {r['name']} | {r['wall']:.0f} s | {best} | {r['complete']} | "
            f"{r['pruned']} | {r['epochs']} of {args.trials * 4} | "
            f"{saved:.0%} |"
        )
    lines += ["", "The commands:", "", "```bash", *(r["command"] for r in results), "```", ""]
    text = args.out.read_text() if args.out.is_file() else ""
    kept = PARETO_HEADING + text.split(PARETO_HEADING, 1)[1] if PARETO_HEADING in text else ""
    args.out.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

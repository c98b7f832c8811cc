"""The same Optuna search with and without a pruner, side by side in one run.

    NLTK_DATA=../shared/nltk_data python -m benchmarks.sweeps [--trials 12] [--out FILE]

Each variant is one `python -m src.run hparams_search=optuna ...` command (printed below its
table) on a movie_reviews subset sized to take a minute a trial on two CPU cores: the same
search space (lr, dropout, warm-up), the same seeded TPE sampler, a fresh study each. It
reports the wall time of each command, the best validation value found, and how many trials
were pruned. Nothing is chosen on the test split: a study maximises the best eval F1 of the
validation split. Writes benchmarks/RESULTS_sweeps.md (or --out) with the machine and flags.
"""

from __future__ import annotations

import argparse
import datetime
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS_sweeps.md"))
    args = parser.parse_args()
    info, date = machine(), datetime.date.today().isoformat()
    results = [run(name, extra, args.trials) for name, extra in PRUNERS.items()]
    base = results[0]
    lines = [
        "# Sweeps: the same Optuna search with and without pruning",
        "",
        f"Command: `NLTK_DATA=../shared/nltk_data python -m benchmarks.sweeps --trials "
        f"{args.trials}` ({date}).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, CPU flags "
        f"{' '.join(info['flags']) or 'none of avx2/avx512'}, {info['mem_gib']:.0f} GiB, load "
        f"{info['load']:.2f} at the start. Precision `auto` (bf16 where the CPU has it natively, "
        "else fp32). One variant after the other, nothing else running.",
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
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

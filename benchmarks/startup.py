"""What the lazy imports save: each heavy library's import time, and our commands' start.

    python -m benchmarks.startup [--repeats 5]

pyproject.toml lists the libraries a module imports where it uses them, never at its top
(ruff TID253). This times, each in a fresh process and as the median of `--repeats`: the bare
interpreter, importing each listed library alone, importing all of them at once (what a
command would pay with every import at the top), and the commands that must answer without
them: `--help`, `--cfg job`, a mistake's one line. Writes benchmarks/RESULTS_startup.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench import machine
from benchmarks.common import ROOT

OUT = ROOT / "benchmarks" / "RESULTS_startup.md"


def libraries() -> list[str]:
    """pyproject.toml's banned-module-level-imports, the third-party ones."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest's dependency
        import tomli as tomllib
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    names = ruff["flake8-tidy-imports"]["banned-module-level-imports"]
    return [name for name in names if not name.startswith("src.")]


COMMANDS = {
    "python -m src.run --help": ["-m", "src.run", "--help"],
    "python -m src.run --cfg job": ["-m", "src.run", "--cfg", "job"],
    "python -m src.run dropout=2 (a mistake: one line, exit 2)": ["-m", "src.run", "dropout=2"],
    "python -m src.summarize --help": ["-m", "src.summarize", "--help"],
}


def median_seconds(args: list[str], repeats: int, ok: tuple[int, ...] = (0,)) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if proc.returncode not in ok:
            sys.exit(f"[startup] {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return statistics.median(seconds)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    info = machine()
    installed = [m for m in libraries() if importlib.util.find_spec(m)]
    bare = median_seconds(["-c", "pass"], args.repeats)
    rows = []
    for name in installed:
        seconds = median_seconds(["-c", f"import {name}"], args.repeats)
        rows.append((f"`import {name}`", seconds))
        print(f"[startup] import {name}: {seconds:.2f} s", flush=True)
    together = median_seconds(["-c", "import " + ", ".join(installed)], args.repeats)
    commands = []
    for label, command in COMMANDS.items():
        seconds = median_seconds(command, args.repeats, ok=(0, 2))
        commands.append((f"`{label}`", seconds))
        print(f"[startup] {label}: {seconds:.2f} s", flush=True)
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Start-up: what the lazy imports save",
        "",
        f"Command: `python -m benchmarks.startup --repeats {args.repeats}` ({date}).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, CPU flags "
        f"{' '.join(info['flags']) or 'none of avx2/avx512'}, {info['mem_gib']:.0f} GiB, load "
        f"{info['load']:.2f} at the start; Python {platform.python_version()}.",
        "",
        f"Wall seconds, each in a fresh process, the median of {args.repeats}. The bare "
        f"interpreter (`python -c pass`) takes {bare:.2f} s and is included in every row.",
        "",
        "| what | seconds |",
        "|---|---:|",
        *(f"| {label} | {s:.2f} |" for label, s in sorted(rows, key=lambda r: -r[1])),
        f"| **all {len(installed)} at once** (every import at a module's top) | "
        f"**{together:.2f}** |",
        *(f"| {label} | {s:.2f} |" for label, s in commands),
        "",
        "The libraries share dependencies, so the rows do not add up to the one that imports them "
        "all. A command below pays none of them: only Hydra and OmegaConf load before a run "
        "starts (docs/architecture.md#heavy-imports).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"[startup] wrote {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()

"""python -m tests.snapshots [--update]: list the resolved keys that changed, or rewrite them."""

from __future__ import annotations

import argparse
import sys

from tests.snapshots import ROOT, changes, load, presets, render, resolve, snapshot_path, stale


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.snapshots", description=__doc__)
    parser.add_argument("--update", action="store_true", help="rewrite every snapshot")
    update = parser.parse_args().update
    changed = 0
    for name, overrides in presets().items():
        path, plain = snapshot_path(name), resolve(overrides)
        diff = changes(load(path), plain) if path.is_file() else ["(new snapshot)"]
        if diff:
            changed += 1
            print(f"{path.relative_to(ROOT)}:", *diff, sep="\n  ")
        text = render(overrides, plain)
        if update and (not path.is_file() or path.read_text() != text):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale():
        changed += 1
        print(f"{path.relative_to(ROOT)}: no preset produces it")
        if update:
            path.unlink()
    if update or not changed:
        print(f"{changed} snapshot(s) {'updated' if update else 'changed'}")
        return 0
    print("run `python -m tests.snapshots --update` if these changes are intended")
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Review a config change: what every preset resolves to at two git revisions, key by key,
which presets each changed file reaches, whether the new side validates, and, given runs of
both sides, whether the change mattered.

    python -m src.review BASE [HEAD]                       # HEAD: the working tree; Markdown
    python -m src.review origin/main HEAD --format json    # | text
    python -m src.review main --runs outputs/runs/before outputs/runs/after
    python -m src.review main --runs outputs/multirun/old outputs/multirun/new   # two sweeps

The presets: the default composition, each conf/experiment/*, conf/debug/* and
conf/hparams_search/* (with its search space, `hydra.sweeper`). Each revision's tree is read
from git (`git archive`), never checked out over your files; the working tree's is read as it
is. Each side's presets are composed and validated in a process of their own by that side's
code (src/config/presets.py), so nothing of one revision is loaded into the other's process.

Exit status: 0; 1 when a preset does not validate at HEAD, or with --fail-on-change when any
resolved key changed; 2 for a mistake (no such revision, not a git repository, a folder that
holds no finished run or sweep). No torch loads.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from src import compare
from src.config import cli
from src.config.errors import UserError, run_command
from src.config.presets import PRESET_GROUPS
from src.config.rundir import flatten
from src.config.schema import show
from src.outputs.trained import open_folder, open_scored, open_sweep

HERE = Path(__file__).resolve().parents[1]  # this checkout: it composes a revision from before
# src/config/presets.py

ABSENT = "<absent>"
PRESETS = "src/config/presets.py"  # a revision that has it composes its presets with it
# a revision from before it: its declarations, printed by its own code, where it has them
OLD_DECLARED = ("src/config/declared.py", "src/declared.py")
FORMATS = ("md", "json", "text")
COMMENT_MARKER = "<!-- src.review -->"
NOT_SETTINGS = (
    "resume",
    "tokenize_cache",
)  # where a run was, not what it ran  # the one PR comment .github/scripts/pr-comment.sh edits


@dataclass
class Preset:
    """One preset composed at one revision."""

    name: str  # default | <group>/<option>
    config: dict[str, Any] | None = None  # dotted keys, resolved; None: it did not compose
    error: str = ""  # why it did not compose
    files: list[str] = field(default_factory=list)  # conf/ files its composition reads
    invalid: str = ""  # the line `python -m src.run` prints for it ('' : it validates)


@dataclass
class Revision:
    label: str  # `main (1a2b3c4)` | `the working tree`
    presets: dict[str, Preset]


@dataclass
class Change:
    preset: str
    status: str  # changed | unchanged | added | removed | broken (does not compose on a side)
    keys: list[tuple[str, Any, Any]] = field(default_factory=list)  # (key, base, head)
    note: str = ""


# --- git ----------------------------------------------------------------------------------------


def git(repo: Path, *args: str, data: bool = False) -> Any:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=not data)
    if done.returncode:
        raise UserError(str(done.stderr).strip().splitlines()[-1] if done.stderr else "git failed")
    return done.stdout


def repo_root(path: Path) -> Path:
    try:
        return Path(git(path, "rev-parse", "--show-toplevel").strip())
    except (UserError, FileNotFoundError):
        raise UserError(
            f"{path}: not a git repository; run python -m src.review inside a clone (or pass "
            "--repo)"
        ) from None


def commit_of(repo: Path, rev: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except UserError:
        raise UserError(
            f"{rev}: no such revision in {repo} (a branch, tag or commit; for a remote branch "
            "fetch it first: git fetch origin)"
        ) from None


def changed_files(repo: Path, base: str, head: str | None) -> dict[str, str]:
    """conf/ path -> A (added), M or D, BASE against HEAD (or the working tree, untracked
    files included). A declaration's change is `changed_declarations`'."""
    out = git(
        repo, "diff", "--name-status", "--no-renames", base, *([head] if head else []), "--", "conf"
    )
    found = {line.split("\t", 1)[1]: line[0] for line in out.splitlines() if "\t" in line}
    if head is None:
        untracked = git(repo, "ls-files", "--others", "--exclude-standard", "--", "conf")
        found.update(dict.fromkeys(untracked.split(), "A"))
    return dict(sorted(found.items()))


# --- composing every preset, each revision in its own process ---------------------------------


def portable(value: Any, roots: tuple[Path, ...]) -> Any:
    """Checkout folders as <root> and the home folder as ~ (resolved configs compare on any
    machine and at any revision)."""
    if isinstance(value, dict):
        return {k: portable(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(str(root), "<root>")
        return value.replace(str(Path.home()), "~")
    return value


def _json_of(command: list[str], cwd: Path, label: str) -> Any:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{label}: its presets do not compose ({' '.join(command[1:])}: {last})")
    return json.loads(done.stdout)


def read_revision(label: str, tree: Path, roots: tuple[Path, ...]) -> Revision:
    """Every preset of the revision in `tree`, composed, resolved and validated in a process
    of its own by its own code (src/config/presets.py run in its tree). A revision from before
    that file has its conf/ composed by this checkout's code, with the declarations of its own
    (its declared.py run in its tree), or none."""
    if not (tree / "conf").is_dir():
        return Revision(label, {})
    command = [sys.executable, "-m", "src.config.presets"]
    if (tree / PRESETS).is_file():
        found = _json_of(command, tree, label)
    else:
        module = next(
            (m.removesuffix(".py").replace("/", ".") for m in OLD_DECLARED if (tree / m).is_file()),
            None,
        )
        old = _json_of([sys.executable, "-m", module], tree, label) if module else {}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as nodes:
            json.dump(old, nodes)
            nodes.flush()
            found = _json_of(
                [*command, "--conf", str(tree / "conf"), "--declared", nodes.name], HERE, label
            )
    presets = {
        name: Preset(
            name,
            flatten(portable(p["config"], (tree, *roots))),
            files=p["files"],
            invalid=p["invalid"],
        )
        if "config" in p
        else Preset(name, error=p["error"])
        for name, p in found["presets"].items()
    }
    return Revision(label, presets)


def committed(repo: Path, rev: str, commit: str, into: Path) -> Revision:
    """A commit's presets: its tree (git archive, never checked out over your files) under
    `into`, composed there."""
    label = commit[:7] if commit.startswith(rev) else f"{rev} ({commit[:7]})"
    archive = git(repo, "archive", "--format=tar", commit, data=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # 3.10.12+
        tar.extractall(into, **safe)
    return read_revision(label, into, (repo,))


# --- what changed ------------------------------------------------------------------------------


def preset_changes(base: Revision, head: Revision) -> list[Change]:
    out = []
    for name in dict.fromkeys([*base.presets, *head.presets]):
        old, new = base.presets.get(name), head.presets.get(name)
        if old is None or new is None:
            out.append(Change(name, "added" if old is None else "removed"))
        elif old.config is None or new.config is None:
            side = "BASE" if old.config is None else "HEAD"
            out.append(
                Change(name, "broken", note=f"does not compose at {side}: {old.error or new.error}")
            )
        else:
            keys = list(old.config) + [k for k in new.config if k not in old.config]
            diff = [
                (k, old.config.get(k, ABSENT), new.config.get(k, ABSENT))
                for k in keys
                if old.config.get(k, ABSENT) != new.config.get(k, ABSENT)
            ]
            out.append(Change(name, "changed" if diff else "unchanged", diff))
    return out


def reach(files: dict[str, str], base: Revision, head: Revision) -> dict[str, list[str]]:
    """Changed conf/ file -> the presets whose composition reads it (at HEAD, or at BASE for
    a file HEAD no longer has)."""
    out = {}
    for path in files:
        names = [p.name for side in (head, base) for p in side.presets.values() if path in p.files]
        out[path] = list(dict.fromkeys(names))
    return out


# --- evidence: runs of both sides --------------------------------------------------------------


@dataclass
class Evidence:
    label: str  # the preset, or a sweep job's override set
    base: str
    head: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # metric, base, head
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)  # resolved keys differing
    paired: list[str] = field(default_factory=list)  # compare.verdict lines
    note: str = ""  # why there is no paired test


def evidence(old: Path, new: Path) -> list[Evidence]:
    """Two finished runs (paired by the preset their runs name), or two sweeps (their jobs
    paired by override set); a run beside a sweep is one line."""

    kinds = [open_folder(folder).kind for folder in (old, new)]
    if (kinds[0] == "sweep") != (kinds[1] == "sweep"):
        sweep, run = (old, new) if kinds[0] == "sweep" else (new, old)
        raise UserError(
            f"--runs {old} {new}: {sweep} is a sweep and {run} is not; give two run folders "
            "(one run of each side) or two sweep folders (jobs paired by their overrides)"
        )
    if kinds[0] != "sweep":
        runs = [open_scored(folder, "review") for folder in (old, new)]
        return [_pair(_preset_of(runs[1].path), runs[0].path, runs[1].path)]
    jobs = [open_sweep(folder, "--runs") for folder in (old, new)]
    by_overrides = {frozenset(j.overrides.items()): j for j in jobs[0]}
    out = []
    for job in sorted(jobs[1], key=lambda j: j.name):
        match = by_overrides.get(frozenset(job.overrides.items()))
        label = " ".join(f"{k}={v}" for k, v in sorted(job.overrides.items())) or job.name
        if match is None:
            out.append(
                Evidence(
                    label,
                    "-",
                    str(new / job.name),
                    note="no job of the same overrides in the base sweep",
                )
            )
        elif job.status != "finished" or match.status != "finished":
            out.append(
                Evidence(
                    label,
                    str(old / match.name),
                    str(new / job.name),
                    note=f"not finished ({match.status}, {job.status})",
                )
            )
        else:
            out.append(_pair(label, old / match.name, new / job.name))
    return out


def _preset_of(run: Path) -> str:
    """`experiment/x`, or `default`; with the run's other overrides after it."""

    given = open_folder(run).overrides
    chosen = [o.replace("=", "/") for o in given if o.split("=", 1)[0] in PRESET_GROUPS]
    rest = [o for o in given if o.split("=", 1)[0] not in (*PRESET_GROUPS, "hydra.run.dir")]
    return " ".join([*(chosen or ["default"]), *rest])


def _pair(label: str, old: Path, new: Path) -> Evidence:

    runs = [compare.Run.read(old), compare.Run.read(new)]
    found = Evidence(label, str(old), str(new))
    found.settings = [
        (k, a, b) for k, (a, b) in compare.differences(runs).items() if k not in NOT_SETTINGS
    ]
    tested = [f"test {name}" for name in runs[1].metrics.get("test", {})]
    found.rows = [(name, a, b) for name, (a, b) in compare.metric_rows(runs) if name in tested]
    result = compare.paired(*runs)
    if isinstance(result, str):
        found.note = f"no paired test: {result}"
    else:
        n = runs[1].metrics.get("n_test")
        found.note = f"paired on the same {n} test texts"
        found.paired = [compare.verdict(d, "HEAD") for d in result]
    return found


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Report:
    base: str
    head: str
    changes: list[Change]
    files: dict[str, str]  # path -> A | M | D
    reaches: dict[str, list[str]]
    invalid: dict[str, str]  # preset -> its line (the valid ones left out)
    presets: list[str]  # every preset at HEAD
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.status != "unchanged"]


def _cell(value: Any) -> str:
    text = (
        ABSENT
        if value == ABSENT
        else json.dumps(value)
        if isinstance(value, list | dict)
        else show(value)
    )
    return "`" + text.replace("|", "\\|") + "`"


def verdict(r: Report, conf: str = "`conf/`", bold: str = "**") -> str:
    """The review in a sentence, as every format opens with it."""
    valid = (
        "every preset validates at HEAD"
        if not r.invalid
        else f"{bold}{len(r.invalid)} preset(s) do not validate at HEAD{bold}"
    )
    return (
        f"{len(r.changed)} of {len(r.changes)} presets changed; {len(r.files)} file(s) in "
        f"{conf} changed; {valid}."
    )


def markdown(r: Report) -> str:
    lines = [COMMENT_MARKER, f"## Config review: `{r.base}` -> `{r.head}`", ""]
    lines += [verdict(r), ""]
    if r.files:
        lines += [
            "### Changed files and the presets they reach",
            "",
            "| file | | reaches |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{path}` | {status} | "
            + (", ".join(f"`{p}`" for p in r.reaches[path]) or _unreached(path))
            + " |"
            for path, status in r.files.items()
        ]
        lines.append("")
    lines += ["### Presets, key by key", ""]
    groups: dict[tuple, list[str]] = {}  # presets with the same changes share one table
    for change in r.changed:
        groups.setdefault((change.status, change.note, repr(change.keys)), []).append(change.preset)
    for change in r.changed:
        names = groups.pop((change.status, change.note, repr(change.keys)), None)
        if names is None:
            continue
        lines.append(f"#### {', '.join(f'`{n}`' for n in names)}: {change.status}")
        if change.note:
            lines.append(change.note)
        if change.keys:
            lines += ["", "| key | BASE | HEAD |", "|---|---|---|"]
            lines += [f"| `{k}` | {_cell(a)} | {_cell(b)} |" for k, a, b in change.keys]
        lines.append("")
    same = [c.preset for c in r.changes if c.status == "unchanged"]
    lines += [
        f"Unchanged: {', '.join(f'`{p}`' for p in same)}." if same else "Every preset changed.",
        "",
    ]
    lines += ["### Validation at HEAD", ""]
    lines += [f"- `{p}`: **invalid**: `{line}`" for p, line in r.invalid.items()]
    valid = [f"`{p}`" for p in r.presets if p not in r.invalid]
    lines += [f"- valid: {', '.join(valid)}" if valid else "- no preset is valid"]
    if r.evidence:
        lines += ["", "### Evidence: runs of both sides", ""]
        for e in r.evidence:
            lines += [f"#### `{e.label}`", "", f"BASE `{e.base}`, HEAD `{e.head}`: {e.note}."]
            if e.settings:
                lines += [
                    "",
                    "Settings that differ: "
                    + ", ".join(f"`{k}` {_cell(a)} -> {_cell(b)}" for k, a, b in e.settings)
                    + ".",
                ]
            if e.rows:
                lines += ["", "| test metric [95% interval] | BASE | HEAD |", "|---|---|---|"]
                lines += [f"| {m.removeprefix('test ')} | {a} | {b} |" for m, a, b in e.rows]
            lines += ["", *(f"- HEAD - BASE: {v}" for v in e.paired), ""]
    return "\n".join(lines).rstrip() + "\n"


def _unreached(path: str) -> str:
    parts = Path(path).with_suffix("").parts[1:]  # conf/<group>/<option>.yaml
    if len(parts) == 2 and not parts[1].startswith("_"):
        return f"no preset (runs that choose `{parts[0]}={parts[1]}`)"
    return "no preset"


def text(r: Report) -> str:
    lines = [f"config review: {r.base} -> {r.head}", verdict(r, "conf/", "")]
    lines += [
        f"{path} ({status}) reaches: {', '.join(r.reaches[path]) or 'no preset'}"
        for path, status in r.files.items()
    ]
    for change in r.changed:
        lines.append(
            f"{change.preset}: {change.status}" + (f" ({change.note})" if change.note else "")
        )
        lines += [
            f"  {k}: {_cell(a).strip('`')} -> {_cell(b).strip('`')}" for k, a, b in change.keys
        ]
    lines += [f"invalid at HEAD: {p}: {line}" for p, line in r.invalid.items()]
    for e in r.evidence:
        lines.append(f"evidence {e.label}: {e.note}")
        lines += [f"  {v}" for v in e.paired]
    return "\n".join(lines) + "\n"


def to_json(r: Report) -> str:
    out = asdict(r)
    keys = [[{"key": k, "base": a, "head": b} for k, a, b in c.keys] for c in r.changes]
    out["changes"] = [{**asdict(c), "keys": k} for c, k in zip(r.changes, keys, strict=True)]
    out["valid"] = not r.invalid
    return json.dumps(out, indent=2, default=str) + "\n"


# --- the command --------------------------------------------------------------------------------


def review(repo: Path, base: str, head: str | None, runs: list[tuple[Path, Path]]) -> Report:
    repo = repo_root(repo)
    base_commit = commit_of(repo, base)
    head_commit = commit_of(repo, head) if head else None
    evidence_found = [e for old, new in runs for e in evidence(old, new)]  # a bad path: first
    with tempfile.TemporaryDirectory(prefix="review-") as tmp:
        base_side = committed(repo, base, base_commit, Path(tmp) / "base")
        if head_commit:
            head_side = committed(repo, head, head_commit, Path(tmp) / "head")
        else:
            head_side = read_revision("the working tree", repo, ())
    files = changed_files(repo, base_commit, head_commit)  # conf/declared/ too: a default
    invalid = {
        name: (p.invalid if p.config is not None else f"error: does not compose: {p.error}")
        for name, p in head_side.presets.items()
        if p.invalid or p.config is None
    }
    return Report(
        base_side.label,
        head_side.label,
        preset_changes(base_side, head_side),
        files,
        reach(files, base_side, head_side),
        invalid,
        list(head_side.presets),
        evidence_found,
    )


def main(argv: list[str]) -> int:
    parser = cli.ArgumentParser(
        prog="python -m src.review",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "base",
        help="the revision the change is reviewed against (main, origin/main, a tag or a commit)",
    )
    parser.add_argument("head", nargs="?", help="the changed revision (default: the working tree)")
    parser.add_argument("--format", choices=FORMATS, default="md", help="md (default), json, text")
    parser.add_argument(
        "--runs",
        nargs=2,
        action="append",
        type=Path,
        default=[],
        metavar=("BASE_RUN", "HEAD_RUN"),
        help="a run (or sweep) of each side: their metrics, intervals and "
        "paired tests; repeat for more presets",
    )
    parser.add_argument(
        "--fail-on-change",
        action="store_true",
        help="exit 1 when any preset's resolved config changed",
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="a clone (default: here)")
    args = parser.parse_args(argv)
    report = review(args.repo, args.base, args.head, [tuple(p) for p in args.runs])
    sys.stdout.write({"md": markdown, "json": to_json, "text": text}[args.format](report))
    if report.invalid:
        return 1
    return 1 if args.fail_on_change and report.changed else 0


if __name__ == "__main__":
    run_command(main)

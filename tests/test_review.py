"""`python -m src.review`: a config change reviewed preset by preset in a throwaway git repo
(a shared default, one preset, a new preset, an invalid value, a conf/ that does not compose),
its exit codes and one-line mistakes, the evidence of runs, and the CI workflow that posts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from src import review
from tests.conftest import CONF, ROOT, command_exit, run_cli

WORKFLOW = ROOT / ".github" / "workflows" / "review.yml"
COMMENT = ROOT / ".github" / "scripts" / "pr-comment.sh"


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Iterator[Path]:
    """This project's conf/ and src/ in a new repo, then one commit per kind of change:
    `shared` (AdamW's declared weight_decay in src/trainers/optim.py, which every preset
    reads), `one` (a key of one preset's YAML), `added` (a new preset); the working tree puts
    an invalid value into that new preset."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(CONF, repo / "conf")
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "tag", "base")
    edit(
        repo / "src/trainers/optim.py",
        'param(0.01, "decoupled weight decay',
        'param(0.05, "decoupled weight decay',
    )
    subprocess.run(
        [sys.executable, "-m", "src.config.declared"], cwd=repo, check=True, capture_output=True
    )  # the declaration written again, as its file says
    git(repo, "commit", "-qam", "a shared default")
    git(repo, "tag", "shared")
    edit(repo / "conf/debug/smoke.yaml", "max_length: 64", "max_length: 48")
    git(repo, "commit", "-qam", "one preset")
    git(repo, "tag", "one")
    (repo / "conf/experiment/short.yaml").write_text(
        "# @package _global_\nepochs: 1\nmax_length: 128\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a preset added")
    git(repo, "tag", "added")
    edit(repo / "conf/experiment/short.yaml", "epochs: 1", "epochs: 1\nlr: -1")
    # Each commit is composed once for this module's tests (in its own process, as a review
    # does), however many reviews compare it: they differ in what they compare, not in how a
    # commit composes. The working tree is composed on every call; so is everything in
    # test_a_default_changed_in_the_code_shows_in_a_fresh_process, a process of its own.
    composed: dict[tuple[str, str], review.Revision] = {}
    compose_commit = review.committed

    def committed_once(repo: Path, rev: str, commit: str, into: Path) -> review.Revision:
        if (rev, commit) not in composed:  # a commit's content is its hash, in any clone
            composed[rev, commit] = compose_commit(repo, rev, commit, into)
        return composed[rev, commit]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(review, "committed", committed_once)
        yield repo


def by_preset(report: review.Report) -> dict[str, review.Change]:
    return {c.preset: c for c in report.changes}


def test_a_shared_default_is_shown_in_every_preset_it_reaches(repo):
    report = review.review(repo, "base", "shared", [])
    changes = by_preset(report)
    reached = [p for p, c in changes.items() if c.status == "changed"]
    pinned = {"experiment/seed_notebook", "experiment/seed_notebook_manual"}  # the notebook's 0.01
    assert set(reached) == set(changes) - pinned and len(reached) == 5  # the search space's too
    for name in reached:
        assert changes[name].keys == [("optimizer.weight_decay", 0.01, 0.05)], name
    # a default changed in the code: its written declaration, read by every preset
    assert report.files == {"conf/declared/AdamW.yaml": "M"}
    assert set(report.reaches["conf/declared/AdamW.yaml"]) == set(changes)
    assert report.invalid == {}


def test_one_preset_and_an_added_preset(repo):
    report = review.review(repo, "shared", "added", [])
    changes = by_preset(report)
    assert changes["debug/smoke"].keys == [("max_length", 64, 48)]
    assert changes["experiment/short"].status == "added"
    assert {
        c.status for p, c in changes.items() if p not in ("debug/smoke", "experiment/short")
    } == {"unchanged"}
    assert report.files == {"conf/debug/smoke.yaml": "M", "conf/experiment/short.yaml": "A"}
    assert report.reaches == {
        "conf/debug/smoke.yaml": ["debug/smoke"],
        "conf/experiment/short.yaml": ["experiment/short"],
    }
    removed = by_preset(review.review(repo, "added", "shared", []))["experiment/short"]
    assert removed.status == "removed"


def test_an_invalid_value_at_head_is_named_and_exits_1(repo, capsys):
    """The working tree (HEAD omitted): the new preset's lr=-1 is the line src.run prints."""
    assert review.main(["added", "--repo", str(repo), "--format", "text"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1].endswith("changed; 1 preset(s) do not validate at HEAD.")
    assert "invalid at HEAD: experiment/short: error: lr=-1: a number > 0" in out
    assert "experiment/short: changed\n  optimizer.lr: 0.0001 -> -1\n  lr: 0.0001 -> -1" in out
    assert review.main(["base", "added", "--repo", str(repo)]) == 0
    capsys.readouterr()
    assert review.main(["base", "added", "--repo", str(repo), "--fail-on-change"]) == 1
    md = capsys.readouterr().out
    assert md.startswith(review.COMMENT_MARKER)
    assert "| `optimizer.weight_decay` | `0.01` | `0.05` |" in md
    assert "every preset validates at HEAD" in md


def test_markdown_and_json_carry_the_same_rows(repo, capsys):
    assert review.main(["shared", "one", "--repo", str(repo), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    smoke = next(c for c in found["changes"] if c["preset"] == "debug/smoke")
    assert smoke["keys"] == [{"key": "max_length", "base": 64, "head": 48}]
    assert found["valid"] is True and found["reaches"] == {"conf/debug/smoke.yaml": ["debug/smoke"]}
    md = review.markdown(review.review(repo, "shared", "one", []))
    assert "#### `debug/smoke`: changed" in md and "| `max_length` | `64` | `48` |" in md
    assert "| `conf/debug/smoke.yaml` | M | `debug/smoke` |" in md


def test_a_conf_that_does_not_compose_is_reported_not_raised(repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    git(broken, "checkout", "-q", "-f", "added")
    (broken / "conf/debug/smoke.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /backbone: nope\n"
    )
    report = review.review(broken, "added", None, [])
    change = by_preset(report)["debug/smoke"]
    assert change.status == "broken" and "does not compose at HEAD" in change.note
    assert "nope" in change.note and "\n" not in change.note
    assert report.invalid["debug/smoke"].startswith("error: does not compose:")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope"], "error: nope: no such revision in"),
        (["base", "nope"], "error: nope: no such revision in"),
    ],
)
def test_mistakes_are_one_line_exit_2(repo, capsys, args, expected):
    code, err = command_exit(review.main, *args, "--repo", str(repo), capsys=capsys)
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1


def test_a_default_changed_in_the_code_shows_in_a_fresh_process(repo):
    """The process is what is tested: each revision composes with its own declarations, in a
    process of its own, whatever this checkout declares."""
    proc = run_cli("shared", "base", "--repo", str(repo), "--format", "text", module="src.review")
    assert proc.returncode == 0, proc.stderr[-2000:]  # BASE first: its 0.05 is not this checkout's
    assert "conf/declared/AdamW.yaml (M) reaches: default," in proc.stdout
    assert "default: changed\n  optimizer.weight_decay: 0.05 -> 0.01\n" in proc.stdout


def test_outside_a_repository_the_cli_says_so(tmp_path):
    proc = run_cli("main", module="src.review", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {tmp_path}: not a git repository; run python -m src.review inside a clone "
        "(or pass --repo)"
    )


def test_evidence_of_two_runs_and_of_two_sweeps(repo, trained_runs, tmp_path):
    """Runs of both sides: test metrics with intervals and the paired verdicts of src.compare;
    two sweeps pair their jobs by override set."""
    base, head = trained_runs["hf_head"], trained_runs["custom_head"]
    (found,) = review.evidence(base, head)
    assert found.label == "default" and found.note.startswith("paired on the same")
    assert [m for m, _, _ in found.rows][:2] == ["test accuracy", "test precision"]
    assert found.paired and found.paired[0].startswith("accuracy ")
    sweeps = []
    for side, run in (("old", base), ("new", head)):
        for job in ("0_lr=1e-4", "1_lr=1e-3"):
            folder = tmp_path / side / job
            shutil.copytree(run, folder, ignore=shutil.ignore_patterns(".hydra"))
            (folder / ".hydra").mkdir()
            (folder / ".hydra" / "overrides.yaml").write_text(f"- {job.split('_', 1)[1]}\n")
        sweeps.append(tmp_path / side)
    pairs = review.evidence(*sweeps)
    assert [e.label for e in pairs] == ["lr=1e-4", "lr=1e-3"] and all(e.paired for e in pairs)
    md = review.markdown(review.review(repo, "base", "shared", [tuple(sweeps)]))
    assert "### Evidence: runs of both sides" in md and "#### `lr=1e-4`" in md
    assert "- HEAD - BASE: accuracy " in md
    with pytest.raises(review.UserError, match="not a folder any command of this project wrote"):
        review.evidence(tmp_path, head)
    with pytest.raises(
        review.UserError, match=f"{sweeps[0]} is a sweep and {head} is not; give two run folders"
    ):
        review.evidence(sweeps[0], head)


def test_the_workflow_runs_the_commands_the_tests_run():
    """The PR workflow's steps are the README's test command, `make review` and the comment
    script (each exercised here); it asks only for the permission a comment needs."""
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert flow[True] == {"pull_request": None} or "pull_request" in flow[True]  # `on:`
    steps = [s.get("run", "") for job in flow["jobs"].values() for s in job["steps"]]
    assert "make test" in steps
    assert any('make review BASE="origin/$BASE_REF" HEAD=HEAD > review.md' in s for s in steps)
    (step,) = [s for s in flow["jobs"]["review"]["steps"] if s.get("id") == "review"]
    assert step["env"] == {"BASE_REF": "${{ github.base_ref }}"}  # no ${{ }} inside a script
    assert any(".github/scripts/pr-comment.sh review.md" in s for s in steps)
    assert flow["jobs"]["review"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    checkout = next(s for s in flow["jobs"]["review"]["steps"] if "checkout" in s.get("uses", ""))
    assert checkout["with"]["fetch-depth"] == 0  # the base branch's history for git archive
    makefile = (ROOT / "Makefile").read_text()
    assert "review: $(VENV)/.installed" in makefile and "-m src.review $(BASE) $(HEAD)" in makefile


def test_the_workflow_is_valid_for_github():
    """check-jsonschema against its bundled GitHub workflow schema (offline)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_comment_is_posted_once_then_updated(tmp_path):
    """pr-comment.sh against a stand-in `gh` that keeps the PR's comments in a file: the first
    push creates the comment, later pushes edit that one comment."""
    state = tmp_path / "comments.json"
    state.write_text("[]")
    fake = tmp_path / "bin" / "gh"
    fake.parent.mkdir()
    fake.write_text(FAKE_GH)
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "GH_STATE": str(state),
        "PR": "7",
        "GITHUB_REPOSITORY": "me/proj",
    }
    for push in ("first", "second", "third"):
        body = tmp_path / "review.md"
        body.write_text(f"{review.COMMENT_MARKER}\n## Config review {push}\n")
        subprocess.run(["bash", str(COMMENT), str(body)], check=True, env=env)
    comments = json.loads(state.read_text())
    assert [c["body"].splitlines()[1] for c in comments] == ["## Config review third"]
    assert comments[0]["id"] == 1  # created once, edited twice


FAKE_GH = r"""#!/usr/bin/env python3
# A stand-in for `gh api`: a PR's comments in $GH_STATE (list, create, edit).
import json, os, sys
args, state = sys.argv[1:], os.environ["GH_STATE"]
comments = json.load(open(state))
assert args[0] == "api", args
method = args[args.index("--method") + 1] if "--method" in args else "GET"
path = next(a for a in args[1:] if a.startswith("repos/"))
fields = dict(a.split("=", 1) for i, a in enumerate(args) if i and args[i - 1] in ("-f", "-F"))
body = fields.get("body", "")
if body.startswith("@"):
    body = open(body[1:]).read()
if method == "GET":
    assert path == "repos/me/proj/issues/7/comments", path
    print(json.dumps([comments] if "--slurp" in args else comments))  # one page
elif method == "POST":
    comments.append({"id": len(comments) + 1, "body": body})
elif method == "PATCH":
    cid = int(path.rsplit("/", 1)[1])
    next(c for c in comments if c["id"] == cid)["body"] = body
json.dump(comments, open(state, "w"))
"""

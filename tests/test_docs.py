"""The documentation: a README a newcomer reads in five minutes, a site that builds strictly,
and a configuration reference that is the composed config's, generated, never edited."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from src import spec

ROOT = Path(__file__).resolve().parents[1]


def test_the_reference_page_is_what_src_spec_prints_now():
    """docs/reference.md is `python -m src.spec --markdown`: a default or a rule changed in the
    declarations or in conf/ without regenerating it fails here."""
    page = (ROOT / "docs" / "reference.md").read_text()
    groups = ["knobs", *spec.Knobs.NODES]
    assert page == spec.reference(groups), (
        "docs/reference.md is stale: python -m src.spec --markdown > docs/reference.md"
    )


def test_the_reference_shows_each_options_own_value():
    """An option's own value, not the declaration's: trainer=hf keeps batches in order."""

    def values(option: str) -> dict[str, str]:
        _, cls = spec.options("trainer")[option]
        return {key: value for key, value, _, _ in spec.rows("trainer", [option], cls)}

    hf, manual = values("trainer=hf"), values("trainer=manual")
    assert hf["group_by_length"] == "false" and manual["group_by_length"] == "true"
    assert hf["epochs"] == "${epochs} = 2"


def test_the_site_builds_strictly(tmp_path):
    """mkdocs with --strict: a missing page, a broken link or anchor fails the build."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").is_file()


def test_the_readme_is_short_and_starts_with_what_a_newcomer_needs():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:100])
    for needed in ("make run", "make test", "outputs/", "dataset=files", "src.predict"):
        assert needed in first, needed

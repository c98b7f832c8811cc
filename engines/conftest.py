"""The real engines `make test-engines` (engines/run.sh) starts: a one-node SLURM cluster and a
PostgreSQL server. These tests run there only; elsewhere the run ends with one line."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not (os.environ.get("ENGINES_SLURM") and os.environ.get("ENGINES_POSTGRES")):
        raise pytest.UsageError(
            "engines/: these tests run against the cluster and server `make test-engines` starts; "
            "run that (as root)"
        )


@pytest.fixture
def postgres() -> str:
    """The server's URL without a database (engines/run.sh made `optuna` and `mlflow`)."""
    return os.environ["ENGINES_POSTGRES"]

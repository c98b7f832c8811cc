"""The exceptions a run ends with on purpose, and the one place a command reports them.

Every `python -m src.<command>` runs its body inside `reported()`: a user's mistake (a
UserError, also when a library wrapped it) is one line on stderr and its exit code (2; 1 for a
check that failed), Ctrl-C is one line and 130, anything else is a bug and keeps its traceback.
HYDRA_FULL_ERROR=1 shows a mistake's traceback too, as Hydra does for its own errors.

Imports only the standard library: every layer of src/ may raise these.
"""

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL, "try again later": a SLURM wrapper requeues on it
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command
USER_ERROR_EXIT_CODE = 2
# Ctrl-C before training began or after it ended (mid-training, `Interrupted` says more)
INTERRUPTED = "interrupted (Ctrl-C); rerun with resume=auto to continue from the newest checkpoint"


class UserError(Exception):
    """A bad config value, file or row. The entry point prints it as one line and exits 2."""

    exit_code = USER_ERROR_EXIT_CODE


class CheckFailed(UserError):
    """A command did what it was asked and its own check refused the result (an export that
    disagrees with its model, a review that finds an invalid preset): one line, exit 1."""

    exit_code = 1


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGUSR1 after saving a checkpoint; rerun with resume=auto."""

    def __init__(self, checkpoint: str | None, why: str = "preempted"):
        self.stopped = f"{why}: " + (f"saved {checkpoint}" if checkpoint else "no checkpoint yet")
        super().__init__(f"{self.stopped}; rerun with resume=auto to continue")
        self.checkpoint = checkpoint


class Interrupted(Preempted):
    """Ctrl-C (SIGINT): the same checkpoint-and-stop, recorded as `interrupted`, exit 130."""

    def __init__(self, checkpoint: str | None):
        super().__init__(checkpoint, "interrupted")


def one_line(error: BaseException) -> str:
    """What every command prints for a mistake: `error: ` and the message, on one line."""
    return f"error: {error}"


def user_error(error: BaseException | None) -> UserError | None:
    """The UserError behind `error`, also when a library (Hydra's instantiate) wrapped it."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__cause__
    return None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """The edge of every command: a user's mistake in the block is one line on stderr and its
    exit code; Ctrl-C is one line and 130; any other exception is raised as it is."""
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)
    except Exception as e:
        mistake = user_error(e)
        if mistake is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(one_line(mistake), file=sys.stderr)
        sys.exit(mistake.exit_code)


def run_command(
    main: Callable[[list[str]], int | None],
    argv: Sequence[str] | None = None,
) -> NoReturn:
    """`python -m src.<command>`: `main(argv)` inside `reported()`, its return the exit code."""
    with reported():
        code = main(list(sys.argv[1:] if argv is None else argv))
    sys.exit(code or 0)

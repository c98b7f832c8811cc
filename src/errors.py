"""The exceptions a run ends with on purpose, and how the command line reports them.

Imports nothing: every layer of src/ may raise these.
"""

REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL, "try again later": a SLURM wrapper requeues on it
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command
USER_ERROR_EXIT_CODE = 2
# Ctrl-C before training began or after it ended (mid-training, `Interrupted` says more)
INTERRUPTED = "interrupted (Ctrl-C); rerun with resume=auto to continue from the newest checkpoint"


class UserError(Exception):
    """A bad config value, file or row. The entry point prints it as one line and exits 2."""


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGUSR1 after saving a checkpoint; rerun with resume=auto."""

    def __init__(self, checkpoint: str | None, why: str = "preempted"):
        saved = f"saved {checkpoint}" if checkpoint else "no checkpoint yet"
        super().__init__(f"{why}: {saved}; rerun with resume=auto to continue")
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

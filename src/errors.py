"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A bad config value, file or row. The entry point prints it as one line and exits 2."""


REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL, "try again later": a SLURM wrapper requeues on it


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGUSR1 after saving a checkpoint; rerun with resume=auto."""

    def __init__(self, checkpoint: str):
        super().__init__(f"preempted: saved {checkpoint}; rerun with resume=auto to continue")
        self.checkpoint = checkpoint

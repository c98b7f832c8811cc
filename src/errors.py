"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A bad config value, file or row. The entry point prints it as one line and exits 2."""

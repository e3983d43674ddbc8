"""The one error type users see: the CLI prints its message as one line and exits non-zero."""


class Edge4KError(Exception):
    """A problem with the user's input or environment, explained in one line."""

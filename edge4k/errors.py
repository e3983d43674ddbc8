"""The one error type users see: the CLI prints its message as one line and exits non-zero."""


class Edge4KError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1


class RawInputError(Edge4KError):
    """A RAW file or in-memory frame that cannot be rendered: unreadable, not a 2x2 Bayer
    mosaic, or metadata that contradicts the data (size, CFA, levels)."""


class BuildMismatch(Edge4KError):
    """A compiled build that does not fit the request: another preset or tiling than asked
    for, or a frame smaller than its fixed tile."""


class DeviceNotFound(Edge4KError):
    """No device to run on (no phone connected, no adb, not a Mac): exit status 2,
    so scripts and `make android-*` can tell "connect a phone" from a failure."""

    exit_code = 2


class Edge4KWarning(UserWarning):
    """A decision Edge4K made for the user (a colour fallback, a suspicious CFA): the CLI prints
    it as one line."""

"""Atomic output files: write beside the target, rename on success, never leave a partial file."""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import tempfile
from pathlib import Path

from edge4k.errors import Edge4KError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path in the target's folder; rename it onto `path` only if
    the block succeeds. The temp name keeps the suffix so writers can pick a format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())   # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError) and e.strerror and (e.filename is None or str(e.filename) == str(tmp)
                                                      or os.path.dirname(str(e.filename)) == str(path.parent)):
            # the user named `path`, never the temporary file beside it
            raise OSError(e.errno, e.strerror, os.fspath(path)) from None
        raise


@contextlib.contextmanager
def _interrupts_held():
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done (they arrive right after it), so
    a signal cannot fall between two renames of files that belong together."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike):
    """atomic_output for files that belong together (an image and its profile): yields their
    temporary paths; every one is written before any is renamed into place (the last first),
    and a failure while writing leaves every old file as it was. An OSError names the user's
    path of the file it concerns."""
    finals: list[Path] = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=final.suffix or ".tmp", dir=final.parent)
            os.close(fd)
            tmps.append(Path(name))
        yield list(tmps)
        with _interrupts_held():
            for tmp, final in reversed(list(zip(tmps, finals))):
                os.chmod(tmp, 0o666 & ~umask())
                os.replace(tmp, final)
    except BaseException as e:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        name = os.path.basename(str(getattr(e, "filename", None) or ""))
        for tmp, final in zip(tmps, finals):   # the temporary, or a writer's own temporary inside it
            if isinstance(e, OSError) and e.strerror and (name == tmp.name or name.startswith(f".{tmp.name}.")):
                raise OSError(e.errno, e.strerror, os.fspath(final)) from None
        raise


def check_output(path: str | os.PathLike, *, mkdir: bool = False) -> Path:
    """Before any work: the output is a file name in a writable folder. A missing folder is
    created with mkdir (`--mkdir`), else refused in one line."""
    path = Path(path)
    if path.is_dir():
        raise Edge4KError(f"output {path} is a folder; give a file name such as {path / 'image.png'}")
    parent = path.parent
    if not parent.exists():
        if not mkdir:
            raise Edge4KError(f"output folder {parent} does not exist; create it or pass --mkdir (mkdir=True)")
        parent.mkdir(parents=True, exist_ok=True)
    if not parent.is_dir():
        raise Edge4KError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise Edge4KError(f"cannot write {path}: folder {parent} is not writable")
    return path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sample_path() -> str:
    """The embedded sample DNG (the default input)."""
    return str(Path(__file__).with_name("data") / "sample.dng")

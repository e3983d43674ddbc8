"""Native libraries (LibRaw, ExecuTorch's cpuinfo, torchao's loader) write notes
straight to the C stderr. Capture them around such calls so a user sees one clean
line on error and nothing on success."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_native_stderr():
    """Redirect file descriptor 2 while the block runs; yields a function that
    returns what was written so far."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield lambda: (buf.seek(0), buf.read().decode(errors="replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def captured_native_output():
    """Like captured_native_stderr, for libraries that also print to the C stdout
    (Qualcomm's QAIRT libraries do): descriptors 1 and 2 go to one buffer."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with captured_native_stderr() as notes:
            os.dup2(2, 1)
            try:
                yield notes
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)

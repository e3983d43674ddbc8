"""The `edge4k` command: parse the arguments, call the library, print. Every error is one line on
stderr with a non-zero exit, never a traceback.

This module is the wiring: the top-level parser, the signals, the error lines, and COMMANDS,
which names the module (edge4k/cli/<module>.py) that holds each command. A command module adds
its command's arguments and runs it (its COMMANDS: name -> (add_arguments, run)); it imports the
library at module level, torch included, so it is imported here, by command_module(), once the
command is known, and only that one: `edge4k --help` and `edge4k --version` load no torch. That
is the one deferred import of our own code in the CLI; nothing below edge4k/cli imports it."""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import warnings

from edge4k import __version__
from edge4k.errors import Edge4KError, Edge4KWarning

EXIT_ERROR = 1

# command -> (module in edge4k/cli, the line `edge4k --help` shows), in the order it shows them
COMMANDS = {
    "run": ("run", "RAW file(s) -> RGB image(s) (+ per-stage profile JSON)"),
    "compile": ("compile", "lower the network for a target: artifacts + manifest.json"),
    "analyze": ("compile", "per-layer int8 sensitivity (XNNPACK): which layers to keep in fp32"),
    "check": ("compile", "accuracy pre-flight of a compiled build against eager fp32 (per stage + whole image)"),
    "sample": ("data", "unprocess an sRGB image into a synthetic RAW DNG"),
    "thumb": ("info", "the camera's embedded preview (rawpy's extract_thumb), no rendering"),
    "info": ("info", "what the RAW frontend sees in a file"),
    "presets": ("info", "list model presets with parameters and MACs per output megapixel"),
    "profile": ("profile", "compile for a target, run it on a device (this host, an adb phone, a Mac for iOS) and "
                           "bring the per-stage profile back"),
    "build-runner": ("profile", "build the native runner (edge4k_runner) for this host or a phone"),
    "train": ("train", "train a preset on synthetic RAW made from photos (torchrun for data parallel)"),
    "train-teacher": ("train", "train a multi-step flow teacher in a one-step model's latent space"),
    "distill": ("train", "distil a flow teacher into the one-step network (consistency + adversarial)"),
    "eval": ("eval", "image quality vs classical and learned converters, each finished like the ground truth "
                     "(PSNR, SSIM, CIEDE2000); --sweep: the robustness grid"),
    "data": ("data", "training data: the source manifest, extraction and training shards"),
    "study": ("study", "answer a research question of DESIGN.md with data: JSON + plots + a Markdown section "
                       "(`all`: every study, then docs/RESEARCH.md)"),
}


def command_module(command: str):
    """The module that holds `command` (see the module's docstring for why it is imported here)."""
    return importlib.import_module(f"edge4k.cli.{COMMANDS[command][0]}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for argv: every command listed, the arguments of argv's command added (the
    top-level options, -h and --version, take no value, so the first other word is the command)."""
    p = argparse.ArgumentParser(prog="edge4k", description="One-step RAW-to-RGB on device: run, profile, compile.")
    p.add_argument("--version", action="version", version=f"edge4k {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=text) for name, (_, text) in COMMANDS.items()}
    command = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    if command in COMMANDS:
        add_arguments, _ = command_module(command).COMMANDS[command]
        add_arguments(parsers[command])
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser(argv).parse_args(argv)


_PYTHON_FORMATWARNING = warnings.formatwarning


def _format_warning(message, category, *rest, **kw) -> str:
    if issubclass(category, Edge4KWarning):
        return f"edge4k: warning: {message}\n"
    return _PYTHON_FORMATWARNING(message, category, *rest, **kw)


def _one_line_warnings() -> None:
    """Edge4K's own warnings (a colour fallback, a suspicious CFA) print as one line."""
    warnings.formatwarning = _format_warning


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Python is, as Ctrl-C's KeyboardInterrupt is: the same
    clean-up runs (atomic outputs remove their temporaries, old outputs stay)."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = signum


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def _handle_signals() -> dict:
    """SIGTERM and SIGHUP handled like SIGINT; returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}


def main(argv: list[str] | None = None) -> int:
    previous = _handle_signals()
    try:
        return _main(argv)
    except KeyboardInterrupt as e:   # Ctrl-C, SIGTERM or SIGHUP
        print("edge4k: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            # As the program (argv=None: the command line), the run is over and its outputs are
            # published: a signal while Python shuts down must not turn it into a killed run.
            signal.signal(sig, signal.SIG_IGN if argv is None else handler)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # training runs record their command line
    # torch.export's internals warn about their own deprecations; not the user's business.
    warnings.filterwarnings("ignore", category=FutureWarning)
    _one_line_warnings()
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    _, run = command_module(args.command).COMMANDS[args.command]
    try:
        return run(args)
    except Edge4KError as e:
        print(f"edge4k: error: {e}", file=sys.stderr)
        return e.exit_code
    except MemoryError:
        print("edge4k: error: out of memory; use tiled mode or a smaller --batch", file=sys.stderr)
    except OSError as e:   # the file system said no (disk full, permissions): one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        print(f"edge4k: error: {e.strerror or e}{where}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

"""Folders of files (darktable-cli's and RawTherapee-cli's batch mode): many RAW files through
one Renderer (one model load, only once a file needs the network), one output file each in an
output folder. A file that fails is reported and the batch goes on; the caller counts the failures.

With workers, the next files are decoded (LibRaw) and the previous images encoded and written
on other threads while the network renders the current one: the network runs one frame at a
time (a Renderer is not re-entrant), so the parallel part is everything around it.
"""
from __future__ import annotations

import glob
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from edge4k.errors import Edge4KError

# File extensions LibRaw reads that a folder is searched for (files named one by one, or by a
# glob, are taken whatever their extension).
RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .bay .cap .cr2 .cr3 .crw .dcr .dcs .dng .eip .erf .fff .iiq .k25 .kdc .mdc .mef .mfw .mos "
    ".mrw .nef .nrw .orf .pef .ptx .qtk .raf .raw .rdc .rw2 .rwl .rwz .sr2 .srf .srw .sti .x3f".split())
FORMATS = {"png": ".png", "tif": ".tif", "jpg": ".jpg"}
GLOB_CHARS = "*?["


class Renders(Protocol):
    """What a batch needs of a renderer (edge4k.api.Renderer, which is above this module)."""

    def render(self, source: Any, **options: Any) -> Any: ...

    def load(self) -> Any: ...


@dataclass
class BatchResult:
    """One input's outcome: `output` written (or already there, `skipped`), or `error` (one line)."""
    source: Path
    output: Path
    error: str | None = None
    skipped: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders: the RAW files directly in them (by extension, sorted); globs
    (`*.CR2`, `shoot/**/*.dng`): what they match. Each file once, in the order given. A name
    that is none of these raises Edge4KError before anything runs."""
    found: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        if os.path.isdir(text):
            found += sorted(p for p in Path(text).iterdir() if p.is_file() and p.suffix.lower() in RAW_EXTENSIONS)
        elif os.path.isfile(text):
            found.append(Path(text))
        elif any(c in text for c in GLOB_CHARS):
            matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matches:
                raise Edge4KError(f"no file matches {text}")
            found += map(Path, matches)
        else:
            raise Edge4KError(f"input not found: {text}")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise Edge4KError(f"no RAW files in {', '.join(str(os.fspath(i)) for i in inputs)} "
                          f"(folders are searched for {', '.join(sorted(RAW_EXTENSIONS)[:6])}, ...)")
    return unique


def is_batch(inputs: list[str], output: str) -> bool:
    """Whether `edge4k run` was given several files: more than one input, a folder, a glob, or
    an output that is a folder."""
    return (len(inputs) > 1 or any(os.path.isdir(i) or (not os.path.exists(i) and any(c in i for c in GLOB_CHARS))
                                   for i in inputs)
            or os.path.isdir(output) or output.endswith(("/", os.sep)))


def plan_outputs(sources: list[Path], output_dir: str | os.PathLike, extension: str) -> list[Path]:
    """DIR/<name>.<ext> for each source; two sources with one output name are refused up front."""
    out = Path(output_dir)
    outputs = [out / (s.stem + extension) for s in sources]
    seen: dict[Path, Path] = {}
    for source, target in zip(sources, outputs):
        if target in seen:
            raise Edge4KError(f"{seen[target]} and {source} would both be written to {target}; "
                              "render them into different output folders")
        seen[target] = source
    return outputs


def check_output_dir(output_dir: str | os.PathLike, *, mkdir: bool = False) -> Path:
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise Edge4KError(f"output {out} is a file; several inputs need an output folder")
    if not out.exists():
        if not mkdir:
            raise Edge4KError(f"output folder {out} does not exist; create it or pass --mkdir (mkdir=True)")
        out.mkdir(parents=True)
    if not os.access(out, os.W_OK):
        raise Edge4KError(f"cannot write to output folder {out}")
    return out


def default_workers() -> int:
    """Threads decoding ahead and writing behind the network: one when a core is free beside the
    run's threads, else none (measured on 2 cores: README, "Folders of files")."""
    from edge4k.kernels.threads import run_threads
    return 1 if (os.cpu_count() or 1) > run_threads() else 0


def plan_batch(inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike, *, format: str = "png",
               look: str = "natural", bits: int | None = None, output_space: str = "srgb",
               quality: int | None = None, mkdir: bool = False) -> tuple[list[Path], list[Path], int]:
    """(sources, outputs, bits): everything a batch can check before a model loads (format, look,
    bits for the format and space, quality, inputs, output names, the output folder), each
    failure one Edge4KError; with mkdir the output folder is made."""
    from edge4k.kernels.colourspace import check_bits
    from edge4k.kernels.postprocess import bit_depth_for, check_look, check_quality

    if format not in FORMATS:
        raise Edge4KError(f"unknown output format '{format}'; valid: {', '.join(FORMATS)}")
    extension = FORMATS[format]
    check_look(look)
    bits = bit_depth_for("x" + extension, bits)
    check_bits(output_space, bits)
    check_quality("x" + extension, quality)
    sources = expand_inputs(inputs)
    outputs = plan_outputs(sources, output_dir, extension)
    check_output_dir(output_dir, mkdir=mkdir)
    return sources, outputs, bits


def render_many(renderer: Renders, inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike, *,
                format: str = "png", look: str = "natural", bits: int | None = None, output_space: str = "srgb",
                quality: int | None = None, half_size: bool = False, skip_existing: bool = False,
                mkdir: bool = False, workers: int | None = None, **render_options) -> Iterator[BatchResult]:
    """Render every input into output_dir/<name>.<format>, yielding a BatchResult per input in
    order. Everything that can be checked before rendering (inputs, output folder, format, bits,
    space, quality) raises Edge4KError first; a file that then fails is a result with its error.
    The renderer loads its model (renderer.load()) for the first file that runs the network, so a
    batch whose files are all skipped, unreadable or half-size loads none; a model that cannot
    load raises its error and ends the batch (every file would fail the same way).
    render_options: further keyword arguments of Renderer.render() (the colour controls)."""
    from edge4k.kernels.postprocess import write_image

    sources, outputs, bits = plan_batch(inputs, output_dir, format=format, look=look, bits=bits,
                                        output_space=output_space, quality=quality, mkdir=mkdir)
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise Edge4KError(f"workers must be >= 0, got {workers}")
    from edge4k.kernels.colourspace import icc_profile
    from edge4k.kernels.raw import read_raw
    icc = icc_profile(output_space)

    def read(i: int):
        return None if skip_existing and outputs[i].exists() else read_raw(sources[i])

    def write(i: int, pixels, exif, started: float) -> BatchResult:
        write_image(outputs[i], pixels, exif=exif, icc=icc, quality=quality)
        return BatchResult(sources[i], outputs[i], seconds=time.perf_counter() - started)

    def failed(i: int, error: BaseException, started: float) -> BatchResult:
        return BatchResult(sources[i], outputs[i], error=describe_error(error, sources[i]),
                           seconds=time.perf_counter() - started)

    pool = ThreadPoolExecutor(max_workers=workers) if workers else None
    reads: deque[Future] = deque()
    writing: tuple[int, Future, float] | None = None
    try:
        if pool:
            reads.extend(pool.submit(read, i) for i in range(min(workers, len(sources))))
        for i in range(len(sources)):
            started = time.perf_counter()
            result = None
            try:
                if pool:
                    if i + workers < len(sources):   # before waiting: a failed read must not stop the read-ahead
                        reads.append(pool.submit(read, i + workers))
                    frame = reads.popleft().result()
                else:
                    frame = read(i)
            except Exception as e:   # noqa: BLE001  one file's failure never stops the batch
                result = failed(i, e, started)
            else:
                if frame is None:
                    result = BatchResult(sources[i], outputs[i], skipped=True)
            if result is None:
                if not half_size:
                    renderer.load()   # outside the per-file catch: a model that cannot load ends the batch
                try:
                    pixels = renderer.render(frame, look=look, bits=bits, output_space=output_space,
                                             half_size=half_size, **render_options)
                except Exception as e:   # noqa: BLE001
                    result = failed(i, e, started)
            if result is None:
                if pool:
                    future = pool.submit(write, i, pixels, frame.exif, started)
                else:
                    try:
                        result = write(i, pixels, frame.exif, started)
                    except Exception as e:   # noqa: BLE001
                        result = failed(i, e, started)
            if writing is not None:
                yield _collect(writing, sources, outputs)
                writing = None
            if result is None:
                writing = (i, future, started)
            else:
                yield result
        if writing is not None:
            yield _collect(writing, sources, outputs)
    finally:
        if pool:
            for f in reads:
                f.cancel()
            pool.shutdown(wait=True)


def _collect(writing, sources, outputs) -> BatchResult:
    i, future, started = writing
    try:
        return future.result()
    except Exception as e:   # noqa: BLE001
        return BatchResult(sources[i], outputs[i], error=describe_error(e, sources[i]),
                           seconds=time.perf_counter() - started)


def describe_error(error: BaseException, source: Path) -> str:
    """One line naming the input (the message may already)."""
    if isinstance(error, Edge4KError):
        text = str(error)
    elif isinstance(error, OSError):
        text = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    else:
        text = f"{type(error).__name__}: {error}"
    return text if os.fspath(source) in text else f"{source}: {text}"

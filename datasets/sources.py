"""The training-data manifest (datasets/sources.csv) and the content hashes that guard it.

One row per file that Edge4K's data comes from: training and validation
photographs, the evaluation sets (Kodak24, McMaster18, copies of USC-SIPI
"misc" images: split "test", never trained on) and real camera RAW samples
(kind "raw"). Each row says where the file lives (public repository, commit,
path), its licence as the source states it, its size and three hashes:

- ``sha256``: of the file's bytes, what `edge4k data build` checks every input against;
- ``pixels_sha256``: of the decoded RGB pixels, so a lossless re-encode (PNG -> BMP) is the same image;
- ``phash``: a 64-bit DCT perceptual hash of the decoded image (see ``perceptual_hash``), so a
  resized or JPEG re-encoded copy is caught too (Hamming distance <= ``PHASH_NEAR``).

CSV rather than JSON: one flat record per file, one line per record, so a
review of the manifest is a line diff, and a spreadsheet or ``grep`` reads it.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output, sha256_file

KINDS = ("photo", "eval", "raw")
SPLITS = ("train", "validation", "test", "raw")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

# Hamming distance (of 64 bits) at or under which two perceptual hashes are the same picture.
# Measured on this project's photographs (datasets/DATA.md, `python -m
# edge4k.benchmarks.data phash`): re-encoded, resized or slightly cropped copies stay
# within a few bits; distinct photographs are rarely this close.
PHASH_NEAR = 10


@dataclass(frozen=True)
class SourceFile:
    kind: str          # photo | eval | raw
    source: str        # collection name, e.g. bsds500
    set: str           # eval set (kodak24, mcmaster18, usc-sipi-misc) for test rows, else ""
    split: str         # train | validation | test | raw
    file: str          # where `edge4k data extract` puts it, relative to the data root
    repository: str    # owner/name on GitHub
    commit: str
    path: str          # path in the repository at that commit
    licence: str       # as the source states it
    width: int
    height: int
    megapixels: float
    sha256: str
    pixels_sha256: str
    phash: str         # 16 hex digits; "" for RAW files
    notes: str = ""


COLUMNS = tuple(f.name for f in fields(SourceFile))


def default_manifest() -> Path:
    return Path(str(resources.files("edge4k.datasets").joinpath("sources.csv")))


def load_manifest(path: str | os.PathLike | None = None) -> list[SourceFile]:
    path = Path(path) if path else default_manifest()
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS[:-1]) - set(reader.fieldnames or ())
            if missing:
                raise Edge4KError(f"manifest {path} lacks columns: {', '.join(sorted(missing))}")
            rows = [_row(r, path, i + 2) for i, r in enumerate(reader)]
    except FileNotFoundError:
        raise Edge4KError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise Edge4KError(f"cannot read manifest {path}: {e}") from None
    seen: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r.sha256 in seen:
            raise Edge4KError(f"manifest {path}: {r.file} repeats the sha256 of {rows[seen[r.sha256]].file}")
        seen[r.sha256] = i
    return rows


def _row(r: dict, path: Path, line: int) -> SourceFile:
    try:
        row = SourceFile(**{**{c: r.get(c) or "" for c in COLUMNS}, "width": int(r["width"]),
                            "height": int(r["height"]), "megapixels": float(r["megapixels"])})
    except (TypeError, ValueError) as e:
        raise Edge4KError(f"manifest {path} line {line}: {e}") from None
    if row.kind not in KINDS or row.split not in SPLITS:
        raise Edge4KError(f"manifest {path} line {line}: kind '{row.kind}' / split '{row.split}' "
                          f"not in {KINDS} / {SPLITS}")
    if (row.split == "test") != (row.kind == "eval") or (row.split == "raw") != (row.kind == "raw"):
        raise Edge4KError(f"manifest {path} line {line}: kind {row.kind} cannot have split {row.split}")
    # These values reach git's command line and the file system (extract): nothing that git could
    # read as an option, and no path that leaves its root.
    if not re.fullmatch(r"[0-9a-f]{40}", row.commit):
        raise Edge4KError(f"manifest {path} line {line}: commit {row.commit!r} is not 40 hex digits")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+", row.repository) or ".." in row.repository:
        raise Edge4KError(f"manifest {path} line {line}: repository {row.repository!r} is not owner/name")
    for column in ("path", "file"):
        value = getattr(row, column)
        parts = value.replace("\\", "/").split("/")
        if not value or value.startswith(("/", "-")) or ".." in parts or "\0" in value:
            raise Edge4KError(f"manifest {path} line {line}: {column} {value!r} must be a relative path inside "
                              "its root, not starting with '-'")
    return row


def eval_set_files(set_name: str, rows: list[SourceFile] | None = None) -> dict[str, str]:
    """{file name: sha256} of an evaluation set (kodak24, mcmaster18, ...), as `edge4k data extract`
    names the files under ROOT/eval/<set>; empty if the manifest does not list the set."""
    rows = load_manifest() if rows is None else rows
    return {Path(r.file).name: r.sha256 for r in rows if r.split == "test" and r.set == set_name}


def write_manifest(rows: list[SourceFile], path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))


def summary(rows: list[SourceFile]) -> dict:
    """What `edge4k data list` prints: counts and megapixels per source, licence and split."""
    def group(key):
        out: dict[str, dict] = defaultdict(lambda: {"files": 0, "megapixels": 0.0})
        for r in rows:
            out[key(r)]["files"] += 1
            out[key(r)]["megapixels"] += r.megapixels
        return {k: {"files": v["files"], "megapixels": round(v["megapixels"], 2)} for k, v in sorted(out.items())}
    photos = [r for r in rows if r.kind == "photo"]
    return {
        "files": len(rows),
        "photographs": len(photos),
        "photo_megapixels": round(sum(r.megapixels for r in photos), 2),
        "by_kind": group(lambda r: r.kind),
        "by_source": group(lambda r: f"{r.kind}/{r.source}"),
        "by_split": group(lambda r: r.split if r.split != "test" else f"test/{r.set}"),
        "by_licence": group(lambda r: r.licence),
        "repositories": dict(sorted(Counter(f"{r.repository}@{r.commit[:12]}" for r in rows).items())),
    }


def format_summary(s: dict) -> str:
    lines = [f"{s['files']} files; {s['photographs']} photographs, {s['photo_megapixels']:.1f} MP"]
    for title, key in (("source", "by_source"), ("split", "by_split"), ("licence", "by_licence")):
        lines.append(f"\nby {title}:")
        width = max(len(k) for k in s[key]) if s[key] else 0
        lines += [f"  {k:<{width}}  {v['files']:>5} files  {v['megapixels']:>8.1f} MP" for k, v in s[key].items()]
    return "\n".join(lines)


# --- content hashes -------------------------------------------------------------------------

class DecodeError(Edge4KError):
    """An image file that cannot be decoded; ``reason`` says why without the path."""

    def __init__(self, path, reason: str):
        super().__init__(f"cannot decode {path}: {reason}")
        self.reason = reason


def decode_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file -> uint8 (H, W, 3). Raises Edge4KError naming the file if it cannot be read."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I"):   # 16/32-bit greyscale: keep the top 8 of 16 bits
                grey = (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DecodeError(path, "file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DecodeError(path, str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def pixels_sha256(rgb: np.ndarray) -> str:
    h = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x3:".encode())
    h.update(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return h.hexdigest()


_HASH_SIDE = 32
_k = np.arange(_HASH_SIDE)
# Orthonormal DCT-II basis: row k holds cos(pi (2n+1) k / 2N).
_DCT = np.sqrt(2 / _HASH_SIDE) * np.cos(np.pi * (2 * _k[None, :] + 1) * _k[:, None] / (2 * _HASH_SIDE))
_DCT[0] /= np.sqrt(2)


def _thumb(rgb: np.ndarray) -> np.ndarray:
    luma = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).convert("L")
    # BOX averages every source pixel (no aliasing whatever the size); reducing_gap keeps big images fast.
    return np.asarray(luma.resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX, reducing_gap=4.0),
                      dtype=np.float64)


def _hash_of_thumb(t: np.ndarray) -> int:
    low = (_DCT @ t @ _DCT.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])        # the DC term only sets the brightness; leave it out of the median
    return int(np.packbits(bits).view(">u8")[0])


def perceptual_hash(rgb: np.ndarray) -> int:
    """64-bit DCT hash (the 8x8 lowest frequencies of a 32x32 luma thumbnail against their median):
    the same for an image and its resized, re-compressed or lightly retouched copies."""
    return _hash_of_thumb(_thumb(rgb))


def perceptual_hashes_dihedral(rgb: np.ndarray) -> list[int]:
    """The hash of the image under all 8 flips/rotations, for the test-set guard (training flips
    and rotates crops, so a flipped copy of a test image must not slip through)."""
    t = _thumb(rgb)
    variants = [np.rot90(t, k) for k in range(4)]
    return [_hash_of_thumb(v) for v in variants + [np.fliplr(v) for v in variants]]


def hamming(a: int, b: int | np.ndarray) -> int | np.ndarray:
    if isinstance(b, np.ndarray):
        x = np.bitwise_xor(np.uint64(a), b.astype(np.uint64))
        return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
    return (a ^ b).bit_count()


def phash_hex(h: int) -> str:
    return f"{h:016x}"


class EvalSetGuard:
    """Knows every evaluation image (split "test" rows) by file hash, pixel hash and perceptual
    hash; ``match`` says which one a candidate is, or None."""

    def __init__(self, rows: list[SourceFile], near: int = PHASH_NEAR):
        test = [r for r in rows if r.split == "test"]
        self.by_sha = {r.sha256: r for r in test}
        self.by_pixels = {r.pixels_sha256: r for r in test if r.pixels_sha256}
        hashed = [r for r in test if r.phash]
        self.phash_rows = hashed
        self.phashes = np.array([int(r.phash, 16) for r in hashed], dtype=np.uint64)
        self.near = near

    def match_file(self, sha256: str) -> SourceFile | None:
        return self.by_sha.get(sha256)

    def match_pixels(self, rgb: np.ndarray) -> tuple[SourceFile, str] | None:
        r = self.by_pixels.get(pixels_sha256(rgb))
        if r is not None:
            return r, "identical pixels"
        if not len(self.phashes):
            return None
        best = None
        for h in perceptual_hashes_dihedral(rgb):
            d = hamming(h, self.phashes)
            i = int(np.argmin(d))
            if d[i] <= self.near and (best is None or d[i] < best[1]):
                best = (self.phash_rows[i], int(d[i]))
        return None if best is None else (best[0], f"perceptual hash {best[1]} bits away")


# --- extraction from git ----------------------------------------------------------------------

def find_clone(clones: Path, repository: str) -> Path | None:
    """The git directory of ``repository`` (owner/name) under ``clones``: owner+name/repo (a fetched
    mirror), owner+name/.git, name/.git (a plain `git clone`), or a bare owner+name / name."""
    owner, name = repository.split("/", 1)
    for cand in (clones / f"{owner}+{name}" / "repo", clones / f"{owner}+{name}" / ".git", clones / name / ".git",
                 clones / f"{owner}+{name}", clones / name):
        if (cand / "objects").is_dir():
            return cand
    return None


def extract(rows: list[SourceFile], clones: str | os.PathLike, out: str | os.PathLike, *,
            progress=None) -> dict:
    """Write every row's file (``git show COMMIT:PATH`` from the local clones) to ``out``/row.file,
    checking its sha256. Returns {"written": n, "present": n, "missing": [...]}; never raises on
    one bad row."""
    clones, out = Path(clones), Path(out)
    written = present = 0
    missing: list[str] = []
    for r in (progress(rows) if progress else rows):
        dest = out / r.file
        if dest.is_file() and sha256_file(dest) == r.sha256:
            present += 1
            continue
        git = find_clone(clones, r.repository)
        if git is None:
            missing.append(f"{r.file}: no clone of {r.repository} under {clones}")
            continue
        # --end-of-options and --: the object name is neither an option nor a path, whatever it holds.
        blob = subprocess.run(["git", "--git-dir", str(git), "show", "--end-of-options", f"{r.commit}:{r.path}", "--"],
                              capture_output=True)
        if blob.returncode:
            missing.append(f"{r.file}: {_why_not_in_clone(git, r)}")
            continue
        if hashlib.sha256(blob.stdout).hexdigest() != r.sha256:
            missing.append(f"{r.file}: {r.repository}@{r.commit[:12]}:{r.path} does not match its sha256")
            continue
        with atomic_output(dest) as tmp:
            tmp.write_bytes(blob.stdout)
        written += 1
    return {"written": written, "present": present, "missing": missing}


def _why_not_in_clone(git: Path, r: SourceFile) -> str:
    """Why ``git show COMMIT:PATH`` failed, in words: the commit, the path or only the file's
    content is absent (fetched snapshots leave out files of 4 MiB and more)."""
    def has(obj: str) -> bool:
        return subprocess.run(["git", "--git-dir", str(git), "rev-parse", "--verify", "--quiet", "--end-of-options",
                               obj], capture_output=True).returncode == 0
    where = f"{r.repository}@{r.commit[:12]}"
    if not has(f"{r.commit}^{{commit}}"):
        return f"commit {where} is not in the clone {git} (a shallow clone or snapshot without it?)"
    if not has(f"{r.commit}:{r.path}"):
        return f"{where} has no {r.path}"
    return f"{where}:{r.path} is listed but its content is absent from the clone {git} (a snapshot without files " \
           "of 4 MiB and more, or a partial clone)"

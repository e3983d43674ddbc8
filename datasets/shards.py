"""Training shards: photographs cut into fixed-size encoded tiles, packed into a few large files.

Layout of a shard folder (``edge4k data build -o DATA`` writes it):

    DATA/shard-00000.bin ...   encoded tiles back to back (PNG or WebP lossless, or JPEG 4:4:4)
    DATA/tiles.npy             int64 (n_tiles, 3): shard number, byte offset, byte length
    DATA/index.json            format, codec, tile size, one record per image (name, source, split,
                               height, width, first tile) and the build record; written last, so a
                               folder without it is not a finished build

Image i is a grid of ceil(H/T) x ceil(W/T) tiles in row-major order starting at its first
tile (edge tiles are smaller). Reading one image or one crop decodes only the tiles it
covers, straight from the file with ``os.pread``: no file position is shared, so threads and
DataLoader worker processes read the same ShardSet safely (forked workers keep the open
descriptors; a pickled ShardSet, as spawned workers get it, carries the index and reopens).

    s = open_shards("DATA")
    train = s.split("train")
    img = train[0]                              # uint8 (H, W, 3)
    patch = train.crop(0, top, left, 192, 192)  # decodes only the tiles under the crop
"""
from __future__ import annotations

import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge4k.errors import Edge4KError

FORMAT = "edge4k.shards/1"
CODECS = ("png", "webp", "jpeg")
LOSSLESS = ("png", "webp")
DEFAULT_TILE = 256
SHARD_BYTES = 256 << 20


def encode_tile(rgb: np.ndarray, codec: str, quality: int | None) -> bytes:
    im, buf = Image.fromarray(np.ascontiguousarray(rgb)), io.BytesIO()
    if codec == "png":
        im.save(buf, "PNG", compress_level=6)
    elif codec == "webp":
        im.save(buf, "WEBP", lossless=True, quality=80, method=4)
    elif codec == "jpeg":
        # 4:4:4: chroma at full resolution, since colour detail is what demosaicing must learn.
        im.save(buf, "JPEG", quality=int(quality or 95), subsampling=0, optimize=True)
    else:
        raise Edge4KError(f"unknown codec '{codec}'; valid: {', '.join(CODECS)}")
    return buf.getvalue()


def decode_tile(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


class ShardWriter:
    """Appends images as tiles to shard files in ``root`` (an empty folder); ``close`` writes
    tiles.npy and then index.json."""

    def __init__(self, root: str | os.PathLike, *, codec: str = "png", quality: int | None = None,
                 tile: int = DEFAULT_TILE, shard_bytes: int = SHARD_BYTES):
        if codec not in CODECS:
            raise Edge4KError(f"unknown codec '{codec}'; valid: {', '.join(CODECS)}")
        if tile < 16:
            raise Edge4KError(f"tile size must be >= 16, got {tile}")
        self.root, self.codec, self.quality, self.tile = Path(root), codec, quality, tile
        self.shard_bytes = shard_bytes
        self.images: list[dict] = []
        self.tiles: list[tuple[int, int, int]] = []
        self._shard, self._file, self._offset = -1, None, 0
        self.bytes = 0

    def _next_shard(self):
        if self._file:
            self._file.close()
        self._shard += 1
        self._file = open(self.root / f"shard-{self._shard:05d}.bin", "wb")
        self._offset = 0

    def add(self, rgb: np.ndarray, *, name: str, source: str, split: str) -> dict:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"{name}: expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        t = self.tile
        record = {"name": name, "source": source, "split": split, "height": h, "width": w,
                  "first_tile": len(self.tiles)}
        for y in range(0, h, t):
            for x in range(0, w, t):
                data = encode_tile(rgb[y:y + t, x:x + t], self.codec, self.quality)
                if self._file is None or (self._offset and self._offset + len(data) > self.shard_bytes):
                    self._next_shard()
                self._file.write(data)
                self.tiles.append((self._shard, self._offset, len(data)))
                self._offset += len(data)
                self.bytes += len(data)
        self.images.append(record)
        return record

    def close(self, info: dict) -> None:
        if self._file:
            self._file.close()
        np.save(self.root / "tiles.npy", np.asarray(self.tiles, dtype=np.int64).reshape(-1, 3))
        index = {"format": FORMAT, "codec": self.codec, "quality": self.quality, "tile": self.tile,
                 "shards": self._shard + 1, "images": self.images, "info": info}
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, self.root / "index.json")   # the marker of a finished build: last


@dataclass(frozen=True)
class _Store:
    """What every view of one shard folder shares: the index and the open files."""
    root: Path
    tile: int
    codec: str
    images: tuple
    tiles: np.ndarray
    info: dict
    index: dict


class ShardSet:
    """Random access to the images of a shard folder (see the module docstring). Views made by
    ``split`` / ``subset`` share the files; indices are positions in the view."""

    def __init__(self, store: _Store, ids: np.ndarray):
        self._store, self._ids = store, ids
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    # pickling (DataLoader with spawn) carries the index, not the open files
    def __getstate__(self):
        return {"store": self._store, "ids": self._ids}

    def __setstate__(self, state):
        self.__init__(state["store"], state["ids"])

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def info(self) -> dict:
        """The build record: sources, options, counts, megapixels."""
        return self._store.info

    @property
    def codec(self) -> str:
        return self._store.codec

    @property
    def tile(self) -> int:
        return self._store.tile

    def record(self, i: int) -> dict:
        return self._store.images[self._ids[i]]

    @property
    def names(self) -> list[str]:
        return [self._store.images[j]["name"] for j in self._ids]

    @property
    def sources(self) -> list[str]:
        return [self._store.images[j]["source"] for j in self._ids]

    @property
    def splits(self) -> list[str]:
        return [self._store.images[j]["split"] for j in self._ids]

    @property
    def sizes(self) -> np.ndarray:
        """(n, 2) int array of (height, width), so a sampler can place crops without decoding."""
        return np.array([(self._store.images[j]["height"], self._store.images[j]["width"]) for j in self._ids],
                        dtype=np.int64).reshape(-1, 2)

    def split(self, name: str) -> "ShardSet":
        """The images of one split ("train", "validation")."""
        return self.subset([i for i, s in enumerate(self.splits) if s == name])

    def subset(self, indices) -> "ShardSet":
        return ShardSet(self._store, self._ids[np.asarray(indices, dtype=np.int64)])

    def __getitem__(self, i: int) -> np.ndarray:
        h, w = self.size(i)
        return self.crop(i, 0, 0, h, w)

    def size(self, i: int) -> tuple[int, int]:
        r = self.record(i)
        return r["height"], r["width"]

    def crop(self, i: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """uint8 (height, width, 3) window of image i, decoding only the tiles it covers."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} out of range for {len(self)} images")
        r = self.record(i)
        H, W, T = r["height"], r["width"], self._store.tile
        if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= H and left + width <= W):
            raise ValueError(f"crop ({top}, {left}, {height}, {width}) outside {r['name']} ({H}x{W})")
        cols = -(-W // T)
        out = np.empty((height, width, 3), dtype=np.uint8)
        for ty in range(top // T, (top + height - 1) // T + 1):
            for tx in range(left // T, (left + width - 1) // T + 1):
                tile = self._decode(r["first_tile"] + ty * cols + tx)
                y0, x0 = ty * T, tx * T
                ys, ye = max(top, y0), min(top + height, y0 + tile.shape[0])
                xs, xe = max(left, x0), min(left + width, x0 + tile.shape[1])
                out[ys - top:ye - top, xs - left:xe - left] = tile[ys - y0:ye - y0, xs - x0:xe - x0]
        return out

    def random_crop(self, i: int, size: int, rng: np.random.Generator, *, even: bool = True) -> np.ndarray:
        """A size x size crop at a random place (even offsets by default, to keep a Bayer phase)."""
        H, W = self.size(i)
        if size > min(H, W):
            raise ValueError(f"crop {size} larger than {self.record(i)['name']} ({H}x{W})")
        step = 2 if even else 1
        top = int(rng.integers(0, (H - size) // step + 1)) * step
        left = int(rng.integers(0, (W - size) // step + 1)) * step
        return self.crop(i, top, left, size, size)

    def _decode(self, k: int) -> np.ndarray:
        shard, offset, length = (int(v) for v in self._store.tiles[k])
        data = os.pread(self._fd(shard), length, offset)
        if len(data) != length:
            raise Edge4KError(f"{self._store.root}: shard {shard} is truncated (tile {k})")
        return decode_tile(data)

    def _fd(self, shard: int) -> int:
        # pread never moves a file position, so one descriptor serves every thread, and a forked
        # DataLoader worker can keep using the descriptors it inherited.
        fd = self._fds.get(shard)
        if fd is None:
            with self._lock:
                fd = self._fds.get(shard)
                if fd is None:
                    path = self._store.root / f"shard-{shard:05d}.bin"
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except OSError as e:
                        raise Edge4KError(f"cannot open {path}: {e.strerror}") from None
                    self._fds[shard] = fd
        return fd


def open_shards(root: str | os.PathLike) -> ShardSet:
    """The images of a shard folder written by `edge4k data build`."""
    root = Path(root)
    index_path = root / "index.json"
    if not index_path.is_file():
        raise Edge4KError(f"{root} is not a finished shard folder (no index.json); run `edge4k data build`")
    try:
        index = json.loads(index_path.read_text())
        tiles = np.load(root / "tiles.npy")
    except (OSError, ValueError) as e:
        raise Edge4KError(f"cannot read the shard index in {root}: {e}") from None
    if index.get("format") != FORMAT:
        raise Edge4KError(f"{root}: unknown shard format {index.get('format')!r}, expected {FORMAT}")
    store = _Store(root=root, tile=int(index["tile"]), codec=index["codec"], images=tuple(index["images"]),
                   tiles=tiles, info=index.get("info", {}), index=index)
    return ShardSet(store, np.arange(len(store.images), dtype=np.int64))

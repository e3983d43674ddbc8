"""The natural photographs Edge4K trains and evaluates on, and their fixed split.

All of them ship inside wheels that the project installs from PyPI
(scikit-image's ``skimage/data`` and matplotlib's ``mpl-data/sample_data``);
nothing is downloaded at run time. The split is fixed here and nowhere else:

- held-out (evaluation only): astronaut (the embedded sample is made from it),
  chelsea, grace_hopper;
- train: everything else. The stereo pair motorcycle_left/right is one scene, so
  both halves sit on the same side of the split.

Images are returned as float32 HxWx3 sRGB in [0, 1], cropped to even height and
width (a Bayer mosaic needs both).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge4k.errors import Edge4KError

SPLITS = ("train", "held-out")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Photo:
    name: str
    package: str      # the wheel that ships it
    path: str         # path inside that package
    split: str
    credit: str


# Credits as the shipping packages' own docstrings state them.
PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "skimage", "data/astronaut.png", "held-out", "NASA, Eileen Collins; public domain"),
    Photo("chelsea", "skimage", "data/chelsea.png", "held-out", "Stefan van der Walt; CC0"),
    Photo("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "held-out",
          "matplotlib sample data (US Navy portrait of Grace Hopper)"),
    Photo("coffee", "skimage", "data/coffee.png", "train", "Rachel Michetti; CC0"),
    Photo("rocket", "skimage", "data/rocket.jpg", "train", "SpaceX; public domain"),
    Photo("motorcycle_left", "skimage", "data/motorcycle_left.png", "train", "Middlebury 2014 stereo benchmark"),
    Photo("motorcycle_right", "skimage", "data/motorcycle_right.png", "train", "Middlebury 2014 stereo benchmark"),
    Photo("retina", "skimage", "data/retina.jpg", "train", "Mikael Haggstrom; CC0"),
    Photo("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg", "train", "NASA; public domain"),
)


def photo_names(split: str) -> list[str]:
    if split not in SPLITS:
        raise Edge4KError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
    return [p.name for p in PHOTOS if p.split == split]


def _photo(name: str) -> Photo:
    for p in PHOTOS:
        if p.name == name:
            return p
    raise Edge4KError(f"unknown photo '{name}'; valid photos: {', '.join(p.name for p in PHOTOS)}")


def photo_path(name: str) -> Path:
    p = _photo(name)
    spec = importlib.util.find_spec(p.package)
    if spec is None or not spec.submodule_search_locations:
        raise Edge4KError(f"photo '{name}' ships with the {p.package} package, which is not installed "
                          "(pip install 'edge4k[train]')")
    path = Path(list(spec.submodule_search_locations)[0]) / p.path
    if not path.is_file():
        raise Edge4KError(f"photo '{name}' not found at {path} (a different {p.package} version?)")
    return path


def read_srgb(path: str | os.PathLike, dtype=np.float32) -> np.ndarray:
    """Any RGB image file -> HxWx3, cropped to even size: float32 in [0, 1], or (dtype=np.uint8) as stored."""
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
            img = img if dtype == np.uint8 else img.astype(np.float32) / 255.0
    except FileNotFoundError:
        raise Edge4KError(f"image not found: {path}") from None
    except OSError as e:
        raise Edge4KError(f"cannot read image {path}: {e}") from None
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return np.ascontiguousarray(img[:h, :w])


def load_photo(name: str) -> np.ndarray:
    return read_srgb(photo_path(name))


def load_split(split: str, dtype=np.float32) -> dict[str, np.ndarray]:
    return {n: read_srgb(photo_path(n), dtype) for n in photo_names(split)}


def load_folder(folder: str | os.PathLike, dtype=np.float32) -> dict[str, np.ndarray]:
    """Every image file directly inside ``folder`` (sorted by name), for training on your own photos."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Edge4KError(f"data folder not found: {folder}")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise Edge4KError(f"data folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return {f.name: read_srgb(f, dtype) for f in files}

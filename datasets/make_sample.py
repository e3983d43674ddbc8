"""Regenerate the SDK's embedded sample RAW, ``edge4k/data/sample.dng``.

Source image: scikit-image's bundled ``astronaut`` (NASA photograph of Eileen
Collins, public domain), unprocessed into a 512x512 RGGB capture (Canon EOS 5D Mark II
matrix, daylight, mid-grey exposure, ISO 200, 14 bits over a black level of 512).

    python -m edge4k.datasets.make_sample edge4k/data/sample.dng
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import unprocess

SAMPLE_SEED = 4000
SAMPLE_CAMERA = "Canon EOS 5D Mark II"
SAMPLE_ISO = 200.0
SAMPLE_CFA = "RGGB"


def make_sample(out_path: str | Path) -> Path:
    """Write the sample DNG to ``out_path`` (needs scikit-image for the photo)."""
    from skimage import data  # bundled in the wheel; nothing is downloaded

    srgb = data.astronaut().astype(np.float32) / 255.0
    capture = unprocess(srgb, cfa=SAMPLE_CFA, camera=SAMPLE_CAMERA, iso=SAMPLE_ISO, ev=0.0, illuminant="D65",
                        bits=14, black_level=512, jitter=False, rng=np.random.default_rng(SAMPLE_SEED))
    return write_dng(out_path, capture)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m edge4k.datasets.make_sample OUT.dng")
    print(make_sample(sys.argv[1]))

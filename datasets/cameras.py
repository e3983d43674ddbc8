"""Regenerate kernels/cameras.json: real cameras' colour matrices, read from LibRaw.

LibRaw (inside the pinned rawpy wheel) carries Adobe DNG Converter's XYZ->camera
matrices for hundreds of cameras and applies them to any RAW whose Make/Model it
recognises. This script writes a tiny DNG without a ColorMatrix for each camera
below, lets LibRaw fill in the matrix, and stores what it reports. Nothing is
downloaded; the JSON is committed so that training machines need no rawpy.

    python -m edge4k.datasets.cameras kernels/cameras.json
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rawpy
import tifffile

# (make, model, is a phone). Phones are what LibRaw's table has (Samsung Galaxy S7-S9).
CAMERAS = [
    ("Canon", m, False) for m in (
        "EOS 5D Mark II", "EOS 5D Mark III", "EOS 6D", "EOS 7D", "EOS 80D", "EOS 90D", "EOS R", "EOS R5",
        "EOS R6", "EOS M50", "PowerShot G7 X", "EOS 1200D", "EOS 5DS R", "EOS-1D X Mark II")
] + [
    ("Nikon", m, False) for m in (
        "D700", "D750", "D810", "D850", "D7000", "D7200", "D5300", "D3400", "Z 6", "Z 7", "D90", "D3X",
        "Coolpix P7000")
] + [
    ("Sony", m, False) for m in (
        "ILCE-7M2", "ILCE-7M3", "ILCE-7RM2", "ILCE-6000", "ILCE-6500", "DSC-RX100M3", "DSC-RX100M5", "SLT-A77",
        "NEX-5N", "ILCE-7SM2", "DSC-RX10M4")
] + [
    ("Olympus", "E-M5MarkII", False), ("Olympus", "E-M1MarkII", False), ("Olympus", "E-M10", False),
    ("Olympus", "E-PL5", False), ("Panasonic", "DMC-GH4", False), ("Panasonic", "DC-GH5", False),
    ("Panasonic", "DMC-G7", False), ("Panasonic", "DMC-LX100", False), ("Panasonic", "DC-S1", False),
    ("Panasonic", "DMC-FZ1000", False), ("Pentax", "K-5", False), ("Pentax", "K-1", False),
    ("Pentax", "K-3", False), ("Pentax", "K-70", False), ("Ricoh", "GR II", False), ("Ricoh", "GR III", False),
    ("Leica", "M (Typ 240)", False), ("Leica", "Q (Typ 116)", False), ("Leica", "M10", False),
    ("Leica", "SL (Typ 601)", False), ("Samsung", "NX500", False), ("Samsung", "NX1", False),
    ("Samsung", "Galaxy S7", True), ("Samsung", "Galaxy S8", True), ("Samsung", "Galaxy S9", True),
    ("Samsung", "EK-GN120", False), ("Yi", "M1", False), ("GoPro", "HERO5 Black", False),
    ("Fujifilm", "X100F", False), ("Fujifilm", "GFX 50S", False), ("Fujifilm", "X-A3", False),
    ("Fujifilm", "X-T3", False), ("Fujifilm", "X100S", False), ("Phase One", "IQ180", False),
    ("Minolta", "DiMAGE A2", False), ("Kodak", "DCS Pro 14N", False), ("Epson", "R-D1", False),
    ("Leaf", "Aptus 75", False), ("Casio", "EX-F1", False), ("Mamiya", "ZD", False),
]


def libraw_matrix(make: str, model: str) -> np.ndarray:
    """The XYZ->camera matrix LibRaw applies to a DNG from this camera (zeros if it has none)."""
    tags = [(50706, 1, 4, (1, 4, 0, 0), True), (50707, 1, 4, (1, 1, 0, 0), True), (271, 2, 0, make, True),
            (272, 2, 0, model, True), (50708, 2, 0, f"{make} {model}", True), (50714, 4, 1, 0, True),
            (50717, 4, 1, 4095, True), (33421, 3, 2, (2, 2), True), (33422, 1, 4, (0, 1, 1, 2), True),
            (50710, 1, 3, (0, 1, 2), True), (50711, 3, 1, 1, True)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.dng"
        tifffile.imwrite(path, np.full((64, 64), 1000, np.uint16), photometric=32803, subfiletype=0,
                         compression=None, metadata=None, extratags=tags)
        with rawpy.imread(str(path)) as raw:
            return np.array(raw.rgb_xyz_matrix[:3], dtype=np.float64)


def table() -> dict:
    cameras = []
    for make, model, phone in CAMERAS:
        m = libraw_matrix(make, model)
        if not np.abs(m).sum():
            raise SystemExit(f"LibRaw {rawpy.libraw_version} has no colour matrix for {make} {model}")
        cameras.append({"name": f"{make} {model}", "make": make, "model": model, "phone": phone,
                        "xyz_to_cam": np.round(m, 4).tolist()})
    return {"source": "LibRaw built-in colour table (Adobe DNG Converter ColorMatrix, D65), read through rawpy "
                      f"{rawpy.__version__} (LibRaw {'.'.join(map(str, rawpy.libraw_version))})",
            "cameras": cameras}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m edge4k.datasets.cameras OUT.json")
    from edge4k.files import atomic_output
    with atomic_output(sys.argv[1]) as tmp:
        tmp.write_text(json.dumps(table(), indent=1) + "\n")
    print(sys.argv[1])

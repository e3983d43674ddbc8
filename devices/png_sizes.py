"""How big the native runner's images are for a 4K frame, against the PNG the runner
wrote before it used zlib (stored deflate blocks: every byte of every row kept).

    python -m edge4k.devices.png_sizes --artifacts BUILD [--runner PATH] [-o DIR]

BUILD is any tiled build the runner can run (e.g. host-xnnpack of e4k-t-f16); the
frame is benchmarks/frame4k.py's synthetic 3840x2160 RAW of the astronaut photo."""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from edge4k.benchmarks.frame4k import make_input
from edge4k.kernels.raw import read_raw, write_bayer

WIDTH, HEIGHT = 3840, 2160


def stored_png_bytes(width: int, height: int, bits: int) -> int:
    """The size of the former encoder's PNG: signature, IHDR, IEND, and an IDAT of the
    filter-byte-prefixed rows in stored blocks of at most 65535 bytes (5 bytes each)
    plus the zlib header and Adler-32."""
    raw = height * (width * 3 * bits // 8 + 1)
    blocks = -(-raw // 65535)
    return 8 + 25 + 12 + (12 + 2 + raw + 5 * blocks + 4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", required=True)
    p.add_argument("--runner", default="build/native-host/edge4k_runner")
    p.add_argument("-o", "--out", default="out/png-sizes")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = make_input(out / f"input_{WIDTH}x{HEIGHT}.dng", WIDTH, HEIGHT)
    sidecar = write_bayer(read_raw(raw), out / "frame.json", source=raw)
    rows = []
    for name, bits in (("output8.png", 8), ("output16.png", 16), ("output16.tif", 16)):
        subprocess.run([args.runner, "--artifacts", args.artifacts, "--input", str(sidecar), "-o", str(out / name),
                        "--bits", str(bits), "--idle-seconds", "0"], check=True, capture_output=True)
        size = (out / name).stat().st_size
        before = stored_png_bytes(WIDTH, HEIGHT, bits)
        rows.append({"file": name, "bits": bits, "bytes": size, "uncompressed_png_bytes": before,
                     "ratio": round(size / before, 3)})
        print(f"{name}: {size / 1e6:.1f} MB (stored-deflate PNG: {before / 1e6:.1f} MB, {size / before:.0%})")
    (out / "png_sizes.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

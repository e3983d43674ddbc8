"""The phone's binary at full size, under emulation: the arm64 runner (qemu-aarch64) against
the x86 runner on the same android-xnnpack builds of a preset at a resolution (default: the
shipped model at 4K), image for image. Too slow for the test suite, which checks the tiny preset
(tests/test_arm64.py); emulated time says nothing about a phone, the images are what count.

    python -P -m edge4k.devices.arm64_check -o reports/arm64 [--preset e4k-s-f16]
        [--resolution 3840x2160] [--quant fp32,int8] [--tile 512] [--overlap 32]

Writes OUT/arm64.json and OUT/arm64.md: per precision, the largest 16-bit difference, the
PSNR, and each side's wall time. Builds, runners and the input are kept in OUT for a rerun.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge4k.benchmarks.frame4k import edge4k, make_input
from edge4k.devices.native import RUNNER, build_aarch64_linux, build_host, check_cross_toolchain, qemu_command
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import read_raw, write_bayer
from edge4k.kernels.tiling import DEFAULT_OVERLAP, DEFAULT_TILE
from edge4k.runtime.manifest import MANIFEST


def read_ppm16(path: Path) -> np.ndarray:
    magic, size, maxval, pixels = path.read_bytes().split(b"\n", 3)
    if magic != b"P6" or maxval != b"65535":
        raise Edge4KError(f"{path}: not a 16-bit PPM")
    width, height = map(int, size.split())
    return np.frombuffer(pixels, ">u2").reshape(height, width, 3)


def render(command: list[str], build: Path, frame: Path, out: Path) -> float:
    """Run one runner once; its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([*command, "--artifacts", str(build), "--input", str(frame), "-o", str(out),
                           "--runs", "1", "--warmup", "0", "--idle-seconds", "0"], capture_output=True, text=True)
    if done.returncode != 0:
        raise Edge4KError(f"{command[-1]}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge4k.devices.arm64_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for builds, images and the report")
    parser.add_argument("--preset", default="e4k-s-f16")
    parser.add_argument("--resolution", default="3840x2160", help="WIDTHxHEIGHT of the synthetic RAW frame")
    parser.add_argument("--quant", default="fp32,int8", help="comma-separated android-xnnpack precisions")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE)
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    args = parser.parse_args(argv)
    try:
        check_cross_toolchain()
        width, height = (int(v) for v in args.resolution.lower().split("x"))
        out = args.output
        out.mkdir(parents=True, exist_ok=True)
        arm64 = out / "native-aarch64" / RUNNER
        if not arm64.exists():
            build_aarch64_linux(out / "native-aarch64")
        x86 = out / "native-host" / RUNNER
        if not x86.exists():
            build_host(out / "native-host")
        raw = make_input(out / f"input-{width}x{height}.dng", width, height)
        frame = write_bayer(read_raw(raw), out / "frame" / "frame.json", source=raw)
        rows = []
        for precision in args.quant.split(","):
            build = out / f"build-{args.preset}-{precision}"
            if not (build / MANIFEST).exists():
                edge4k("compile", "--target", "android-xnnpack", "--preset", args.preset, "--resolution",
                       f"{width}x{height}", "--tile", str(args.tile), "--overlap", str(args.overlap), "--quant",
                       precision, "-o", str(build), "--force")
            print(f"{precision}: x86 runner ...", file=sys.stderr)
            x86_s = render([str(x86)], build, frame, out / f"x86-{precision}.ppm")
            print(f"{precision}: arm64 runner under qemu (slow) ...", file=sys.stderr)
            arm64_s = render([*qemu_command(), str(arm64)], build, frame, out / f"arm64-{precision}.ppm")
            ours, theirs = (read_ppm16(out / f"{side}-{precision}.ppm").astype(np.float64) for side in ("arm64", "x86"))
            mse = float(np.mean((ours - theirs) ** 2))
            rows.append({"precision": precision, "max_diff_16bit": int(np.abs(ours - theirs).max()),
                         "psnr_db": None if mse == 0 else round(10 * np.log10(65535.0 ** 2 / mse), 2),
                         "x86_seconds": round(x86_s, 2), "arm64_qemu_seconds": round(arm64_s, 2)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    except (Edge4KError, OSError, ValueError) as e:
        print(f"arm64_check: error: {e}", file=sys.stderr)
        return 1
    report = {"preset": args.preset, "resolution": [width, height], "tile": args.tile, "overlap": args.overlap,
              "qemu": " ".join(qemu_command()), "results": rows}
    (out / "arm64.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"arm64 runner under `{report['qemu']}` against the x86 runner, {args.preset} at {width}x{height} "
          f"(tile {args.tile}, overlap {args.overlap}); PSNR '-' means identical images.", "",
          "| precision | max 16-bit difference | PSNR dB | x86 s | arm64 under qemu s |", "|---|---|---|---|---|"]
    md += [f"| {r['precision']} | {r['max_diff_16bit']} | {r['psnr_db'] if r['psnr_db'] is not None else '-'} | "
           f"{r['x86_seconds']} | {r['arm64_qemu_seconds']} |" for r in rows]
    (out / "arm64.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

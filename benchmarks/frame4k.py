"""4K benchmark: eager PyTorch against the compiled ExecuTorch/XNNPACK builds, tiled
and native, next to LibRaw's own rendering, this CPU's matrix-multiply rate and what
XNNPACK's int8 kernels gain over fp32 here at the network's layer shapes.

    python -m edge4k.benchmarks.frame4k -o reports/bench [--preset P] [--resolution 3840x2160]
        [--tile 512 --overlap 32] [--precisions fp32,int8,w4a8] [--native [--native-precisions fp32,int8]]
        [--runs 3]

Each configuration runs in its own process (`edge4k run ... --profile`), so its peak
resident memory is its own. The tiled fp32 build runs twice: with the C++ CPU stages
(kernels/cpp.py) and, as `python-cpu-stages`, with their Python twins (EDGE4K_CPP_KERNELS=0).
Writes bench.json, bench.md and a stacked-bar bench.png.
Numbers are host numbers on a shared machine: read ratios, not absolutes."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rawpy
import torch
from PIL import Image
from torch import nn

from edge4k.backends.xnnpack.quantize import int8_recipe, quantize_stage
from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import unprocess
from edge4k.files import atomic_output
from edge4k.kernels.raw import read_raw
from edge4k.kernels.tiling import DEFAULT_OVERLAP, DEFAULT_TILE
from edge4k.models import build_model, get_preset
from edge4k.models.cost import stage_macs

STAGES = ("raw_preprocess", "global", "encoder", "backbone", "decoder", "postprocess")


def make_input(path: Path, width: int, height: int) -> Path:
    """A synthetic RAW at the benchmark resolution: the bundled astronaut photo,
    resized to cover the frame, unprocessed to RGGB at ISO 400."""
    if path.exists():
        return path

    from skimage import data
    img = Image.fromarray(data.astronaut())
    scale = max(width / img.width, height / img.height)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - width) // 2, (img.height - height) // 2
    srgb = np.asarray(img.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0
    cap = unprocess(srgb, cfa="RGGB", camera="Canon EOS 5D Mark II", iso=400.0, rng=np.random.default_rng(0))
    write_dng(path, cap)
    read_raw(path)   # fail here, not mid-benchmark, if the file is unreadable
    return path


def edge4k(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-P", "-m", "edge4k", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"edge4k {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc


def libraw_seconds(path: Path, runs: int) -> float:
    """LibRaw's own pipeline (AHD demosaic, camera WB, sRGB, 8-bit), as rawpy exposes it."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with rawpy.imread(str(path)) as raw:
            raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, runs: int = 5) -> float:
    """This CPU's fp32 matrix-multiply rate with torch's default threads."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


# (channels, side) of this network's layers in a 512-pixel tile: the decoder's half-resolution
# layers, the encoder's first level, the backbone's latent grid.
INT8_PROBE_SHAPES = ((24, 256), (32, 128), (128, 32))


def separable_chain(channels: int, blocks: int = 3) -> torch.nn.Sequential:
    """Depthwise 3x3, then 1x1 + ReLU, repeated: the shape of the network's separable blocks with
    an activation that XNNPACK runs in int8, so the quantised chain is integer from end to end."""
    layers = []
    for _ in range(blocks):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                   nn.Conv2d(channels, channels, 1), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def chain_program(channels: int, side: int, precision: str):
    """separable_chain exported at one shape, fp32 or int8 (the compiler's int8 recipe, q/dq form)."""
    torch.manual_seed(0)
    example = (torch.rand(1, channels, side, side),)
    module = separable_chain(channels)
    if precision == "int8":
        module = quantize_stage(module, example, [example], int8_recipe("minmax"))
    return torch.export.export(module, example), example


def int8_kernel_speedup(shapes=INT8_PROBE_SHAPES, rounds: int = 6, calls: int = 4) -> dict[str, float]:
    """fp32 time over int8 time of the same all-integer separable chain per layer shape, on this
    CPU through XNNPACK (best of rounds x calls, the two precisions interleaved): what XNNPACK's
    int8 kernels gain by themselves on this CPU at the network's layer shapes, with no fp32
    island in the graph. It tells a graph problem (int8 builds well below it) from a CPU whose
    integer kernels are not much faster than its float ones (builds near it)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    methods = {}
    for channels, side in shapes:
        for precision in ("fp32", "int8"):
            exported, example = chain_program(channels, side, precision)
            edge = to_edge_transform_and_lower({"forward": exported}, partitioner=[XnnpackPartitioner()])
            program = Runtime.get().load_program(edge.to_executorch().buffer)
            methods[(channels, side, precision)] = (program, program.load_method("forward"), list(example))
    best = {key: float("inf") for key in methods}
    for _ in range(rounds):
        for key, (_, method, example) in methods.items():
            method.execute(example)
            for _ in range(calls):
                t0 = time.perf_counter()
                method.execute(example)
                best[key] = min(best[key], time.perf_counter() - t0)
    return {f"{c}x{s}x{s}": round(best[(c, s, "fp32")] / best[(c, s, "int8")], 2) for c, s in shapes}


def frame_gmacs(preset: str, width: int, height: int) -> float:
    model = build_model(get_preset(preset))
    macs = stage_macs(model, 512)
    per_pixel = (macs["encoder"] + macs["backbone"] + macs["decoder"]) / 512 ** 2
    return (per_pixel * width * height + macs["global"]) / 1e9


def image_psnr(reference: Path, test: Path) -> float:
    """PSNR (dB) between two 8-bit renderings of the same frame."""
    a = np.asarray(Image.open(reference), dtype=np.float64)
    b = np.asarray(Image.open(test), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(results) + 1.5))
    labels = [r["name"] for r in results]
    left = np.zeros(len(results))
    for stage in STAGES:
        ms = np.array([r["latency_ms"][stage]["median"] for r in results])
        ax.barh(labels, ms / 1e3, left=left, label=stage)
        left += ms / 1e3
    ax.set_xlabel("seconds per frame (median)")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge4k.benchmarks.frame4k", description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", default="reports/bench")
    p.add_argument("--preset", default="e4k-s-f16")
    p.add_argument("--resolution", default="3840x2160")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE)
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    p.add_argument("--precisions", default="fp32,int8,w4a8")
    p.add_argument("--native", action="store_true", help="also compile and run one-tile native builds")
    p.add_argument("--native-precisions", default="fp32,int8")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--calib", type=int, default=8)
    p.add_argument("--calib-source", default="photos",
                   help="tiled builds' calibration: photos (the bundled training photos, default), sample (the "
                        "embedded sample DNG, edge4k compile's default) or a RAW file")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.resolution.split("x"))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    raw = make_input(out / f"input_{width}x{height}.dng", width, height)
    tiling = ["--tile", str(args.tile), "--overlap", str(args.overlap)]
    modes = [("tiled", tiling)] + ([("native", ["--native"])] if args.native else [])

    configs = []
    # Tiled builds calibrate on tiles of --calib-source (default: the bundled training photos); a native build's
    # one tile is the whole frame, which only the benchmark's own 4K RAW covers.
    calibration = {"tiled": ["--calib", str(args.calib)] + ([] if args.calib_source == "sample" else
                                                           ["--calib-source", args.calib_source]),
                   "native": ["--calib", "2", "--calib-source", str(raw)]}
    for mode, flags in modes:
        configs.append((f"eager fp32 {mode}", ["--preset", args.preset, *flags]))
        for precision in (args.precisions if mode == "tiled" else args.native_precisions).split(","):
            build = out / f"build-{precision}-{mode}"
            print(f"compiling {precision} {mode} ...", file=sys.stderr, flush=True)
            edge4k("compile", "--target", "host-xnnpack", "--preset", args.preset, "--resolution",
                   args.resolution, *flags, "--quant", precision, *calibration[mode], "-o", str(build))
            configs.append((f"xnnpack {precision} {mode}", ["--backend", "executorch", "--artifacts", str(build)]))
            if mode == "tiled" and precision == "fp32":   # the same build with the CPU stages in Python
                configs.append((f"xnnpack {precision} {mode} python-cpu-stages",
                                ["--backend", "executorch", "--artifacts", str(build)]))

    results = []
    for name, flags in configs:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        # LibRaw is timed right before each configuration and each ratio is to that time: on a
        # shared machine the speed drifts (2x between runs of this script was seen).
        libraw_s = libraw_seconds(raw, args.runs)
        prof = out / f"{name.replace(' ', '_')}.profile.json"
        edge4k("run", str(raw), "-o", str(out / f"{name.replace(' ', '_')}.png"), "--profile", str(prof),
               "--runs", str(args.runs), "--warmup", "1", *flags,
               env={"EDGE4K_CPP_KERNELS": "0"} if name.endswith("python-cpu-stages") else None)
        results.append({"name": name, "image": out / f"{name.replace(' ', '_')}.png", "libraw_s": libraw_s,
                        **json.loads(prof.read_text())})

    gmacs = frame_gmacs(args.preset, width, height)
    libraw_times = [r["libraw_s"] for r in results]
    mm = matmul_gflops()
    int8_gain = int8_kernel_speedup()
    mp = width * height / 1e6
    rows, summary = [], []
    eager_image = {r["name"].split()[2]: r["image"] for r in results if r["name"].startswith("eager")}
    for r in results:
        total_s = r["latency_ms"]["total"]["median"] / 1e3
        net_s = sum(r["latency_ms"][s]["median"] for s in ("global", "encoder", "backbone", "decoder")) / 1e3
        entry = {"name": r["name"], "total_s": round(total_s, 3), "megapixels_per_s": round(mp / total_s, 3),
                 "network_gflops": round(2 * gmacs / net_s, 2), "peak_rss_mib": round(r["memory"]["peak_rss_bytes"] / 2**20),
                 "libraw_s": round(r["libraw_s"], 3), "vs_libraw": round(total_s / r["libraw_s"], 2),
                 "psnr_vs_eager_db": round(image_psnr(eager_image[r["name"].split()[2]], r["image"]), 2),
                 "stages_ms": {s: r["latency_ms"][s]["median"] for s in STAGES}}
        summary.append(entry)
        rows.append(f"| {r['name']} | {total_s:.2f} | {entry['megapixels_per_s']:.2f} | {entry['network_gflops']:.1f} | "
                    f"{entry['peak_rss_mib']} | {entry['libraw_s']:.2f} | {entry['vs_libraw']:.1f}x | "
                    f"{entry['psnr_vs_eager_db']:.1f} | "
                    + " | ".join(f"{r['latency_ms'][s]['median']:.0f}" for s in STAGES) + " |")
    eager = {e["name"].split()[2]: e["total_s"] for e in summary if e["name"].startswith("eager")}
    report = {"preset": args.preset, "resolution": [width, height], "tile": args.tile, "overlap": args.overlap,
              "runs": args.runs, "calibration": {"tiles": args.calib, "source": args.calib_source},
              "frame_gmac": round(gmacs, 2),
              "libraw_postprocess_s": round(statistics.median(libraw_times), 3),
              "cpu_fp32_matmul_gflops": round(mm, 1), "xnnpack_int8_kernel_speedup": int8_gain,
              "threads": torch.get_num_threads(),
              "speedup_vs_eager": {e["name"]: round(eager[e["name"].split()[2]] / e["total_s"], 2) for e in summary},
              "results": summary, "versions": results[0]["versions"], "device": results[0]["device"]["soc"]}
    md = [f"{args.preset}, {width}x{height}, tiles {args.tile}/{args.overlap} (int8 calibrated on {args.calib} tiles "
          f"of {args.calib_source}), {args.runs} runs after 1 warm-up, "
          f"{report['device']}, {report['threads']} threads. Frame: {gmacs:.1f} GMAC. LibRaw (rawpy AHD "
          f"postprocess), timed just before each configuration: {min(libraw_times):.2f}-{max(libraw_times):.2f} s; "
          f"each row's ratio is to its own. CPU fp32 matmul: {mm:.0f} GFLOP/s. XNNPACK int8 over fp32 on "
          f"all-integer separable conv chains (channels x height x width): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in int8_gain.items()) + ".", "",
          "| configuration | total s | MP/s | network GFLOP/s | peak RSS MiB | LibRaw s | vs LibRaw | PSNR vs eager dB | "
          + " | ".join(f"{s} ms" for s in STAGES) + " |",
          "|---" * (8 + len(STAGES)) + "|", *rows]
    with atomic_output(out / "bench.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_output(out / "bench.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    plot(results, out / "bench.png")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

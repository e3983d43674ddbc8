"""`edge4k data` (the training photographs: manifest, extraction, shards, what the RAW synthesis
draws) and `edge4k sample` (an sRGB image unprocessed into a synthetic RAW DNG)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from edge4k.cli.common import check_flag
from edge4k.datasets.databuild import BuildOptions, build
from edge4k.datasets.dng import write_dng
from edge4k.datasets.sources import extract, format_summary, load_manifest, summary
from edge4k.datasets.unprocess import unprocess
from edge4k.errors import Edge4KError
from edge4k.training.data import write_coverage
from edge4k.training.train import training_images


def add_data_arguments(d: argparse.ArgumentParser) -> None:
    """`edge4k data build|report|list|extract`: the training photographs (datasets/sources.csv)."""
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="photographs -> training shards (checked against the manifest)")
    b.add_argument("--from", dest="src", required=True, metavar="DIR",
                   help="folder of photographs (searched recursively)")
    b.add_argument("-o", "--output", required=True, metavar="DATA", help="shard folder to write (replaced if it holds "
                                                                         "an older build)")
    b.add_argument("--manifest", metavar="CSV", help="source manifest (default: datasets/sources.csv)")
    b.add_argument("--downscale", type=float, default=2.0,
                   help="reduce photographs by this factor, in linear light with a Lanczos filter (default 2; "
                        "less where the shorter side would fall under --min-size; 1: keep the size)")
    b.add_argument("--min-size", type=int, default=256,
                   help="shorter side in pixels after downscaling; smaller photographs are dropped (default 256)")
    b.add_argument("--max-megapixels", type=float, help="reduce further any image above this size after downscaling")
    b.add_argument("--codec", choices=["png", "webp", "jpeg"], default="png",
                   help="tile encoding: png or webp (lossless) or jpeg (lossy, 4:4:4; see --quality) (default png)")
    b.add_argument("--quality", type=int, help="jpeg quality 1-100 (default 95)")
    b.add_argument("--tile", type=int, default=256, help="tile side in pixels (default 256)")
    b.add_argument("--max-mb", type=float, help="stop adding photographs once the shards reach this many MiB "
                                                "(a random sample across the collections is kept)")
    b.add_argument("--allow-unlisted", action="store_true",
                   help="include images whose sha256 is not in the manifest (still checked against the test sets)")
    r = dsub.add_parser("report", help="what the RAW synthesis draws: histograms of white balance, exposure, ISO, "
                                       "clipping and camera over many training scenes (JSON + PNG)")
    r.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for coverage.json and coverage.png")
    r.add_argument("--data", metavar="DATA", help="shard folder or image folder (default: the bundled training photos)")
    r.add_argument("--samples", type=int, default=10000, help="scenes to draw (default 10000)")
    r.add_argument("--seed", type=int, default=0)
    li = dsub.add_parser("list", help="counts and megapixels per source, licence and split of the manifest")
    li.add_argument("--manifest", metavar="CSV", help="source manifest (default: datasets/sources.csv)")
    li.add_argument("--json", action="store_true", help="print JSON")
    x = dsub.add_parser("extract", help="write the manifest's files from local git clones of their repositories")
    x.add_argument("--clones", required=True, metavar="DIR",
                   help="folder holding the clones (NAME/.git, OWNER+NAME/.git or fetched OWNER+NAME/repo)")
    x.add_argument("-o", "--output", required=True, metavar="ROOT",
                   help="data root: files land in ROOT/photos, ROOT/eval and ROOT/raw")
    x.add_argument("--manifest", metavar="CSV", help="source manifest (default: datasets/sources.csv)")
    x.add_argument("--kind", choices=["photo", "eval", "raw"], action="append",
                   help="only these kinds of file (repeatable; default all)")


def add_sample_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("image", help="sRGB image (PNG/JPEG/TIFF)")
    s.add_argument("-o", "--output", required=True, help="output .dng")
    s.add_argument("--cfa", default="RGGB", choices=["RGGB", "BGGR", "GRBG", "GBRG"])
    s.add_argument("--camera", help="camera colour matrix to use, e.g. 'Nikon D850' (default: random from the "
                                    "built-in list, kernels/cameras.json)")
    s.add_argument("--ev", type=float, default=0.0, help="exposure in EV around mid-grey (default 0)")
    s.add_argument("--illuminant", default="D65", help="D65 (default), a colour temperature in kelvin, FL1..FL12, "
                                                       "or daylight / planckian / fluorescent (drawn)")
    s.add_argument("--iso", type=float, default=200.0, help="noise level as ISO (default 200)")
    s.add_argument("--no-noise", action="store_true", help="write a noise-free RAW")
    s.add_argument("--seed", type=int, default=0)


def run_data(args) -> int:
    if args.data_command == "report":
        check_flag("samples", args.samples)
        report = write_coverage(training_images(args.data), args.samples, args.output, seed=args.seed,
                                progress=sys.stderr.isatty(), data=args.data or "bundled training photos")
        out = Path(args.output)
        s = report["summary"]
        print(f"{args.samples} scenes, {s['cameras']} cameras; gain R {s['gain_r'][1]:.2f}-{s['gain_r'][99]:.2f}, "
              f"gain B {s['gain_b'][1]:.2f}-{s['gain_b'][99]:.2f} (1st-99th percentile); EV {s['ev'][0]:+.2f} to "
              f"{s['ev'][100]:+.2f}; ISO {s['iso'][0]:.0f}-{s['iso'][100]:.0f}; clipped highlights in "
              f"{100 * s['share_with_clipped_highlights']:.1f}% of scenes; wrote {out}/coverage.json and coverage.png")
        return 0
    if args.data_command == "build":
        opts = BuildOptions(downscale=args.downscale, min_size=args.min_size, max_megapixels=args.max_megapixels,
                            max_mb=args.max_mb, codec=args.codec, quality=args.quality, tile=args.tile,
                            allow_unlisted=args.allow_unlisted)
        info = build(args.src, args.output, manifest=args.manifest, options=opts,
                     log=lambda line: print(line, file=sys.stderr))
        c = info["counts"]
        splits = ", ".join(f"{k} {v}" for k, v in info["by_split"].items())
        print(f"wrote {args.output}: {c['images']} images ({splits}), "
              f"{info['megapixels_out']:.1f} MP from {info['megapixels_in']:.1f} MP, {info['bytes'] / 2**20:.1f} MiB "
              f"in {info['seconds']:.0f} s; {c['skipped']} files skipped"
              + (f", {c['left_out_by_max_mb']} left out by --max-mb" if c["left_out_by_max_mb"] else "")
              + (f", {c['manifest_photos_missing']} manifest photographs not found under {args.src}"
                 if c["manifest_photos_missing"] else ""))
        return 0
    rows = load_manifest(args.manifest)
    if args.data_command == "list":
        s = summary(rows)
        print(json.dumps(s, indent=2) if args.json else format_summary(s))
        return 0
    if args.kind:
        rows = [r for r in rows if r.kind in args.kind]
    report = extract(rows, args.clones, args.output,
                     progress=lambda it: tqdm(it, desc="extracting", unit="file", disable=None))
    for line in report["missing"]:
        print(f"not extracted: {line}", file=sys.stderr)
    print(f"{report['written']} files written, {report['present']} already present, "
          f"{len(report['missing'])} could not be extracted")
    if report["missing"]:
        raise Edge4KError(f"{len(report['missing'])} of {len(rows)} files could not be extracted (listed above)")
    return 0


def run_sample(args) -> int:
    try:
        with Image.open(args.image) as im:
            srgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise Edge4KError(f"input not found: {args.image}") from None
    except OSError as e:
        raise Edge4KError(f"cannot read image {args.image}: {e}") from None
    if not args.output.lower().endswith(".dng"):
        raise Edge4KError(f"output must be a .dng file, got {args.output}")
    try:
        illuminant = float(args.illuminant) if args.illuminant.replace(".", "", 1).isdigit() else args.illuminant
        capture = unprocess(srgb, cfa=args.cfa, camera=args.camera, cameras="all", ev=args.ev, illuminant=illuminant,
                            iso=None if args.no_noise else args.iso, rng=np.random.default_rng(args.seed))
    except ValueError as e:
        raise Edge4KError(str(e)) from None
    write_dng(args.output, capture)
    print(f"wrote {args.output}: {srgb.shape[1]}x{srgb.shape[0]} {args.cfa}, camera {capture.camera}, "
          f"ISO {'none' if args.no_noise else args.iso:g}" if not args.no_noise else
          f"wrote {args.output}: {srgb.shape[1]}x{srgb.shape[0]} {args.cfa}, camera {capture.camera}, no noise")
    return 0


COMMANDS = {"data": (add_data_arguments, run_data), "sample": (add_sample_arguments, run_sample)}

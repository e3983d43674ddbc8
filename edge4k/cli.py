"""The `edge4k` command. Every subcommand is a thin wrapper over the library;
errors are one line on stderr with a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources

from edge4k.errors import Edge4KError

EXIT_ERROR = 1


def sample_path() -> str:
    """The embedded sample DNG (the default input)."""
    return str(resources.files("edge4k").joinpath("data/sample.dng"))


def build_parser() -> argparse.ArgumentParser:
    from edge4k.models import DEFAULT_PRESET
    p = argparse.ArgumentParser(prog="edge4k", description="One-step RAW-to-RGB on device: run, profile, compile.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="RAW file -> RGB image (+ per-stage profile JSON)")
    r.add_argument("input", nargs="?", help="RAW file (DNG or any Bayer format LibRaw reads); default: the embedded sample")
    r.add_argument("-o", "--output", required=True, help="output image: .png (8-bit) or .tif (16-bit)")
    r.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET}; see `edge4k presets`)")
    r.add_argument("--checkpoint", metavar="PATH",
                   help="model weights (.safetensors from `edge4k train`); default: the trained checkpoint "
                        "shipped for the preset, else seed-initialised weights")
    r.add_argument("--seed", type=int, default=0, help="weight initialisation seed (only when no checkpoint exists)")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--tile", type=int, default=512, help="tile size in output pixels (default 512)")
    mode.add_argument("--native", action="store_true", help="one tile covering the whole frame")
    r.add_argument("--overlap", type=int, default=64, help="tile overlap in output pixels (default 64)")
    r.add_argument("--batch", type=int, default=1, help="tiles per network call (fixed shape, default 1)")
    r.add_argument("--profile", metavar="JSON", help="write the edge4k.profile/1 JSON here")
    r.add_argument("--runs", type=int, default=1, help="timed runs (default 1)")
    r.add_argument("--warmup", type=int, default=0, help="untimed warm-up runs (default 0)")
    r.add_argument("--threads", type=int, help="CPU threads for the network stages (default: torch's)")

    s = sub.add_parser("sample", help="unprocess an sRGB image into a synthetic RAW DNG")
    s.add_argument("image", help="sRGB image (PNG/JPEG/TIFF)")
    s.add_argument("-o", "--output", required=True, help="output .dng")
    s.add_argument("--cfa", default="RGGB", choices=["RGGB", "BGGR", "GRBG", "GBRG"])
    s.add_argument("--camera", help="camera colour matrix to use (default: random from the built-in list)")
    s.add_argument("--iso", type=float, default=200.0, help="noise level as ISO (default 200)")
    s.add_argument("--no-noise", action="store_true", help="write a noise-free RAW")
    s.add_argument("--seed", type=int, default=0)

    i = sub.add_parser("info", help="what the RAW frontend sees in a file")
    i.add_argument("input", nargs="?", help="RAW file; default: the embedded sample")
    i.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("presets", help="list model presets with parameters and MACs per output megapixel")

    t = sub.add_parser("train", help="train a preset on synthetic RAW made from photos (torchrun for data parallel)")
    t.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    t.add_argument("--budget-minutes", type=float, required=True, help="wall-clock budget; training stops after it")
    t.add_argument("--out", required=True, metavar="DIR", help="output folder (checkpoints, log, loss curve)")
    t.add_argument("--steps", type=int, help="number of steps (fixes the learning-rate schedule; "
                                             "default: the schedule follows the time budget)")
    t.add_argument("--batch", type=int, default=8, help="crops per step per process (default 8)")
    t.add_argument("--crop", type=int, default=192, help="crop size in output pixels (default 192)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    t.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")
    t.add_argument("--data", metavar="DIR", help="folder of sRGB images to train on (default: the bundled photos)")
    t.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    t.add_argument("--log-every", type=int, default=10, help="steps between log lines (default 10)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--threads", type=int, help="CPU threads per process (on a busy machine 1 avoids "
                                               "threads waiting on each other)")

    e = sub.add_parser("eval", help="image quality vs LibRaw and other pipelines (PSNR, SSIM, CIEDE2000)")
    e.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    e.add_argument("--checkpoint", metavar="PATH", help="weights to evaluate (default: the shipped checkpoint)")
    e.add_argument("--set", dest="set_name", default="held-out", choices=["held-out"],
                   help="evaluation set (default held-out: the photos never trained on)")
    e.add_argument("-o", "--output", default="out/eval", metavar="DIR", help="output folder (default out/eval)")
    e.add_argument("--methods", nargs="+", metavar="M", help="subset of: edge4k libraw menon2007 demosaicnet "
                                                             "menon2007+oracle edge4k+gain-oracle (default: all)")
    e.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    return p


def _check_positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise Edge4KError(f"--{name} must be >= {minimum}, got {value}")


def cmd_run(args) -> int:
    import torch
    from edge4k.models import get_preset
    from edge4k.runtime.backends import get_backend
    from edge4k.runtime.pipeline import TileOptions, format_table, run_and_profile

    for name, minimum in (("runs", 1), ("warmup", 0), ("batch", 1), ("threads", 1), ("tile", 1)):
        _check_positive(name, getattr(args, name), minimum)
    cfg = get_preset(args.preset)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, weights = load_for_preset(cfg.name, args.checkpoint, seed=args.seed)
    backend = get_backend("eager", model=model)
    opts = TileOptions(tile=None if args.native else args.tile, overlap=0 if args.native else args.overlap,
                       native=args.native, batch=args.batch)
    profile = run_and_profile(args.input or sample_path(), args.output, model=model, backend=backend,
                              opts=opts, runs=args.runs, warmup=args.warmup, profile_path=args.profile,
                              weights=weights, progress=sys.stderr.isatty())
    print(format_table(profile))
    print(f"wrote {args.output}" + (f" and {args.profile}" if args.profile else ""))
    return 0


def load_for_preset(preset: str, checkpoint: str | None, seed: int = 0):
    """(model, weights description): the given checkpoint, else the shipped one, else seed init."""
    from edge4k.models import build_model, get_preset
    from edge4k.models.checkpoint import default_checkpoint, describe, load_model
    path = checkpoint or default_checkpoint(preset)
    if path is None:
        return build_model(get_preset(preset), seed=seed), f"seed:{seed}"
    model, _ = load_model(path, preset)
    return model, describe(path)


def cmd_train(args) -> int:
    from edge4k.models.train import TrainOptions, train
    opts = TrainOptions(preset=args.preset, out=args.out, budget_minutes=args.budget_minutes, steps=args.steps,
                        batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed, data=args.data,
                        checkpoint_every=args.checkpoint_every, log_every=args.log_every, resume=args.resume,
                        threads=args.threads)
    summary = train(opts, progress=sys.stderr.isatty())
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {summary['preset']}: {summary['steps']} steps ({summary['stopped_by']}), "
              f"{summary['crops_seen']} crops of {summary['crop']} px in {summary['elapsed_s']:.0f} s "
              f"on {summary['world']} process(es); wrote {args.out}/model.safetensors")
    return 130 if summary["stopped_by"] == "interrupted" else 0


def cmd_eval(args) -> int:
    import torch
    from edge4k.calibration.photos import load_split
    from edge4k.models import get_preset
    from edge4k.models.evaluate import METHODS, evaluate, write_report
    _check_positive("threads", args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    methods = args.methods or list(METHODS)
    model, weights = (None, None) if "edge4k" not in methods else load_for_preset(cfg.name, args.checkpoint)
    if weights is not None and weights.startswith("seed:"):
        print(f"note: no checkpoint for {cfg.name}; evaluating seed-initialised weights", file=sys.stderr)
    report = evaluate(model, load_split(args.set_name), methods=methods, progress=sys.stderr.isatty(),
                      keep_outputs=True)
    report["model"] = {"preset": cfg.name, "config_hash": cfg.config_hash(), "weights": weights}
    title = f"{args.set_name} set, {cfg.name} ({weights})" if weights else f"{args.set_name} set"
    paths = write_report(report, args.output, set_name=args.set_name, title=title)
    print(open(paths["md"]).read())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    from PIL import Image
    from edge4k.calibration.dng import write_dng
    from edge4k.calibration.unprocess import unprocess

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
        capture = unprocess(srgb, cfa=args.cfa, camera=args.camera, iso=None if args.no_noise else args.iso,
                            rng=np.random.default_rng(args.seed))
    except ValueError as e:
        raise Edge4KError(str(e)) from None
    write_dng(args.output, capture)
    print(f"wrote {args.output}: {srgb.shape[1]}x{srgb.shape[0]} {args.cfa}, camera {capture.camera}, "
          f"ISO {'none' if args.no_noise else args.iso:g}" if not args.no_noise else
          f"wrote {args.output}: {srgb.shape[1]}x{srgb.shape[0]} {args.cfa}, camera {capture.camera}, no noise")
    return 0


def cmd_info(args) -> int:
    from edge4k.kernels.raw import read_raw
    path = args.input or sample_path()
    info = {"path": path, **read_raw(path).info()}
    info["packed_shape"] = [4, info["height"] // 2, info["width"] // 2]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>14}: {v}")
    return 0


def cmd_presets(_args) -> int:
    from edge4k.models import PRESETS, build_model
    from edge4k.models.cost import gmac_per_megapixel, param_count
    print(f"{'preset':<22}{'f':>4}{'attention':>13}{'params':>10}{'GMAC/MP':>9}")
    for name, cfg in PRESETS.items():
        m = build_model(cfg)
        print(f"{name:<22}{cfg.compression:>4}{cfg.attention:>13}{param_count(m) / 1e6:>9.3f}M"
              f"{gmac_per_megapixel(m):>9.2f}")
    return 0


COMMANDS = {"run": cmd_run, "sample": cmd_sample, "info": cmd_info, "presets": cmd_presets,
            "train": cmd_train, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Edge4KError as e:
        print(f"edge4k: error: {e}", file=sys.stderr)
    except MemoryError:
        print("edge4k: error: out of memory; use tiled mode or a smaller --batch", file=sys.stderr)
    except KeyboardInterrupt:
        print("edge4k: interrupted", file=sys.stderr)
        return 130
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

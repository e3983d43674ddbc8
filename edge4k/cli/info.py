"""`edge4k info` (what the RAW frontend sees), `edge4k thumb` (the camera's embedded preview) and
`edge4k presets` (the model family)."""
from __future__ import annotations

import argparse
import json

from edge4k.api import extract_thumb
from edge4k.files import sample_path
from edge4k.kernels.raw import read_raw
from edge4k.kernels.rawcolour import cfa_suggestion
from edge4k.kernels.tiling import phase_padded
from edge4k.models import PRESETS, build_model
from edge4k.models.cost import gmac_per_megapixel, param_count


def add_info_arguments(i: argparse.ArgumentParser) -> None:
    i.add_argument("input", nargs="?", help="RAW file; default: the embedded sample")
    i.add_argument("--json", action="store_true", help="print JSON")


def add_thumb_arguments(th: argparse.ArgumentParser) -> None:
    th.add_argument("input", help="RAW file")
    th.add_argument("-o", "--output", required=True, help="preview file: .jpg (a JPEG preview's bytes as stored), "
                                                        ".png or .tif")
    th.add_argument("--mkdir", action="store_true", help="create the output's missing folders")


def run_info(args) -> int:
    path = args.input or sample_path()
    frame = read_raw(path)
    info = {"path": path, **frame.info(), "cfa_suggestion": cfa_suggestion(frame)}
    padded_height, padded_width = phase_padded(info["height"], info["width"])
    info["packed_shape"] = [4, padded_height // 2, padded_width // 2]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>14}: {v}")
    return 0


def run_thumb(args) -> int:
    data = extract_thumb(args.input, args.output, mkdir=args.mkdir)
    print(f"wrote {args.output} (embedded preview, {len(data)} bytes as stored)")
    return 0


def run_presets(_args) -> int:
    print(f"{'preset':<22}{'f':>4}{'attention':>13}{'params':>10}{'GMAC/MP':>9}")
    for name, cfg in PRESETS.items():
        m = build_model(cfg)
        print(f"{name:<22}{cfg.compression:>4}{cfg.attention:>13}{param_count(m) / 1e6:>9.3f}M"
              f"{gmac_per_megapixel(m):>9.2f}")
    return 0


COMMANDS = {"info": (add_info_arguments, run_info), "thumb": (add_thumb_arguments, run_thumb),
            "presets": (lambda p: None, run_presets)}

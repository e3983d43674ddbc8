"""The `edge4k` command. Every subcommand is a thin wrapper over the library;
errors are one line on stderr with a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
import warnings
from importlib import resources

from edge4k.api import check_at_least as _check_positive
from edge4k.api import load_for_preset, tile_options  # noqa: F401  (studies import load_for_preset from here)
from edge4k.errors import Edge4KError

EXIT_ERROR = 1


def sample_path() -> str:
    """The embedded sample DNG (the default input)."""
    return str(resources.files("edge4k").joinpath("data/sample.dng"))


def build_parser() -> argparse.ArgumentParser:
    from edge4k.models import DEFAULT_PRESET
    from edge4k.backends.registry import BACKENDS
    from edge4k import __version__
    p = argparse.ArgumentParser(prog="edge4k", description="One-step RAW-to-RGB on device: run, profile, compile.")
    p.add_argument("--version", action="version", version=f"edge4k {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="RAW file(s) -> RGB image(s) (+ per-stage profile JSON)")
    r.add_argument("input", nargs="*", help="RAW files (DNG or any Bayer format LibRaw reads), folders (the RAW "
                                            "files in them) or globs; default: the embedded sample")
    r.add_argument("-o", "--output", required=True, help="output image (.png 8/16-bit, .tif 16/8-bit or float, .jpg), "
                                                        "tagged with the output space's ICC profile and the RAW's "
                                                        "EXIF facts; with several inputs, a folder")
    r.add_argument("--bits", type=int, choices=[8, 16, 32],
                   help="output bit depth (default: 8 for .png and .jpg, 16 for .tif; 32: float TIFF)")
    _output_args(r)
    r.add_argument("--backend", default="eager", choices=sorted(BACKENDS),
                   help="eager (PyTorch, default) or a compiled build's backend (needs --artifacts)")
    r.add_argument("--artifacts", metavar="DIR", help="compiled build folder (from `edge4k compile`)")
    r.add_argument("--soc", help="Qualcomm SoC the android-qnn build must have been compiled for (refused otherwise)")
    r.add_argument("--preset", help=f"model preset (default {DEFAULT_PRESET}; see `edge4k presets`)")
    _weights_args(r)
    _tiling_args(r)
    _look_arg(r)
    _colour_args(r)
    r.add_argument("--profile", metavar="JSON", help="write the edge4k.profile/1 JSON here")
    r.add_argument("--runs", type=int, default=1, help="timed runs (default 1)")
    r.add_argument("--warmup", type=int, default=0, help="untimed warm-up runs (default 0)")
    r.add_argument("--threads", type=int, help="CPU threads for the network stages (default: torch's)")

    c = sub.add_parser("compile", help="lower the network for a target: artifacts + manifest.json")
    c.add_argument("--target", required=True,
                   help="compiler target: host-xnnpack, android-xnnpack, android-qnn, android-litert, ios-coreml")
    c.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    _weights_args(c)
    c.add_argument("--resolution", default="3840x2160", help="frame size WxH the build is for (default 3840x2160)")
    _tiling_args(c)
    c.add_argument("--quant", default=None,
                   help="precision (default: the target's first): fp32, int8, int8-mixed or w4a8 (XNNPACK); int8 or int8-a16 "
                        "(android-qnn); fp32, fp16 or int8 (LiteRT); fp16, int8-weights, palette4 or w8a8 (Core ML)")
    c.add_argument("--calib", type=int, default=8, help="calibration samples (default 8)")
    c.add_argument("--calib-source", action="append", default=[], metavar="RAW",
                   help="RAW file to cut calibration tiles from (repeatable), or 'photos' for synthetic captures "
                        "of the bundled training photos (needs the train extra); default: the embedded sample")
    c.add_argument("--observer", choices=["minmax", "histogram"], default=None,
                   help="int8 activation observer (default: histogram for host-xnnpack, minmax for android-qnn)")
    c.add_argument("--keep-fp32", action="append", default=[], metavar="MODULE",
                   help="module path to leave unquantised, e.g. blocks.0.attn (repeatable)")
    c.add_argument("--soc", help="android-qnn: Qualcomm SoC for the context binaries, SM8550, SM8650 (default) "
                   "or SM8750")
    c.add_argument("--a16", action="append", default=[], metavar="STAGE[.LAYER]",
                   help="android-qnn: uint16 activations for a stage (backbone) or a layer "
                        "(backbone.blocks.0.attn) (repeatable)")
    c.add_argument("--fp32-plan", metavar="JSON", help="keep the layers listed by `edge4k analyze` in fp32")
    c.add_argument("-o", "--output", required=True,
                   help="build folder to write (an older build there is replaced; any other non-empty folder "
                        "is refused unless --force)")
    c.add_argument("--force", action="store_true", help="replace -o even if it is a non-empty folder that is not "
                                                        "an Edge4K build")

    a = sub.add_parser("analyze", help="per-layer int8 sensitivity (XNNPACK): which layers to keep in fp32")
    a.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    _weights_args(a)
    a.add_argument("--resolution", default="3840x2160", help="frame size WxH (default 3840x2160)")
    _tiling_args(a)
    a.add_argument("--calib", type=int, default=8, help="calibration samples (default 8)")
    a.add_argument("--calib-source", action="append", default=[], metavar="RAW",
                   help="RAW file for calibration tiles, or 'photos' (as for compile)")
    a.add_argument("--observer", choices=["minmax", "histogram"], default="histogram",
                   help="int8 activation observer (default histogram, as host-xnnpack builds)")
    a.add_argument("--stages", default="global,encoder,backbone,decoder", help="stages to analyse (comma list)")
    a.add_argument("--threshold", type=float, default=40.0, help="layers below this PSNR (dB) go in keep_fp32")
    a.add_argument("-o", "--output", required=True, help="JSON plan to write")

    k = sub.add_parser("check", help="accuracy pre-flight of a compiled build against eager fp32 (per stage + whole image)")
    k.add_argument("inputs", nargs="*", metavar="RAW",
                   help="RAW files to check on (tiles and whole images); default: the embedded sample")
    k.add_argument("--artifacts", required=True, metavar="DIR", help="compiled build folder")
    k.add_argument("--samples", type=int, default=2, help="tiles per stage comparison (default 2)")
    k.add_argument("--floor", type=float, help="PSNR floor in dB (default: the precision's floor, as at compile time)")
    k.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    k.add_argument("--checkpoint", metavar="PATH", help="the checkpoint the build was compiled from "
                                                       "(default: the shipped one; checked by sha256)")

    s = sub.add_parser("sample", help="unprocess an sRGB image into a synthetic RAW DNG")
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

    th = sub.add_parser("thumb", help="the camera's embedded preview (rawpy's extract_thumb), no rendering")
    th.add_argument("input", help="RAW file")
    th.add_argument("-o", "--output", required=True, help="preview file: .jpg (a JPEG preview's bytes as stored), "
                                                        ".png or .tif")
    th.add_argument("--mkdir", action="store_true", help="create the output's missing folders")

    i = sub.add_parser("info", help="what the RAW frontend sees in a file")
    i.add_argument("input", nargs="?", help="RAW file; default: the embedded sample")
    i.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("presets", help="list model presets with parameters and MACs per output megapixel")

    from edge4k.devices.flow import DEVICES
    from edge4k.devices.ios import COMPUTE_UNITS
    f = sub.add_parser("profile", help="compile for a target, run it on a device (this host, an adb phone, a Mac "
                                       "for iOS) and bring the per-stage profile back")
    f.add_argument("input", nargs="?", help="RAW file; default: the embedded sample")
    f.add_argument("--target", required=True, help="compiler target, e.g. android-xnnpack, android-qnn, ios-coreml")
    f.add_argument("--device", required=True, choices=DEVICES, help="where to run")
    f.add_argument("-o", "--out", metavar="DIR", help="folder for the build, the pulled profile.json and "
                                                      "output.png (default out/TARGET)")
    f.add_argument("--artifacts", metavar="DIR", help="use this compiled build instead of compiling")
    f.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    _weights_args(f)
    f.add_argument("--resolution", help="frame size WxH to compile for (default: the input's size)")
    _tiling_args(f)
    f.add_argument("--quant", help="precision (default: int8 for android-qnn, fp16 for ios-coreml, else fp32)")
    f.add_argument("--calib", type=int, help="calibration samples (default: edge4k compile's)")
    f.add_argument("--soc", help="Qualcomm SoC for android-qnn, e.g. SM8650 (passed to edge4k compile)")
    _look_arg(f)
    f.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    f.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    f.add_argument("--threads", type=int, help="CPU threads (default: the runtime's)")
    f.add_argument("--idle-seconds", type=float, default=2.0,
                   help="idle power baseline before the timed runs, phone only (default 2; 0: none)")
    f.add_argument("--serial", help="phone to use (default $ANDROID_SERIAL, or the only one connected)")
    f.add_argument("--runner", help="edge4k_runner built for the phone (default $EDGE4K_ANDROID_RUNNER, else "
                                    "built from ANDROID_NDK and EXECUTORCH_ANDROID_PREFIX)")
    f.add_argument("--qnn-libs", metavar="DIR", help="android-qnn on a phone: folder(s) (':'-separated) with ONNX "
                                                    "Runtime for Android and QAIRT's libraries (default $EDGE4K_QNN_LIBS; "
                                                    "README lists the files)")
    f.add_argument("--compute-units", default="all", choices=COMPUTE_UNITS, help="Core ML compute units (ios)")
    f.add_argument("--timeout", type=float, default=1800, help="seconds allowed for the run on the phone")
    f.add_argument("--dry-run", action="store_true", help="print every command, run none; still compile")

    b = sub.add_parser("build-runner", help="build the native runner (edge4k_runner) for this host or a phone")
    b.add_argument("--android", action="store_true",
                   help="cross-compile the runner and libedge4k.so for arm64 Android (needs ANDROID_NDK and "
                        "EXECUTORCH_ANDROID_PREFIX)")
    b.add_argument("--target", choices=["host", "aarch64-linux"], default="host",
                   help="aarch64-linux: cross-compile for arm64 Linux (glibc) against the aarch64 executorch wheel "
                        "(fetched into build/wheels-aarch64), to run here under qemu-aarch64 (needs Debian's "
                        "crossbuild-essential-arm64, zlib1g-dev:arm64 and qemu-user; `make arm64`)")
    b.add_argument("--without-executorch", action="store_true",
                   help="--android: leave ExecuTorch out; the runner then runs android-qnn builds only (ONNX Runtime "
                        "is opened at run time) and needs ANDROID_NDK alone")
    b.add_argument("-o", "--output", metavar="DIR", help="build folder (default build/native-host, "
                                                        "build/native-aarch64-linux or build/native-android-arm64-v8a)")
    b.add_argument("--kernels-only", action="store_true",
                   help="only the CPU kernels library the host pipeline calls (libedge4k_kernels.so; needs a C++ "
                        "compiler and CMake, not ExecuTorch); `make setup` builds it into build/native-kernels")
    b.add_argument("--sanitize", action="store_true",
                   help="host: AddressSanitizer + UndefinedBehaviorSanitizer in the runner, libedge4k and the kernels "
                        "(`make sanitize` builds build/native-sanitize and runs the native tests against it)")
    b.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    b.add_argument("--dry-run", action="store_true", help="print the cmake commands instead of running them")

    t = sub.add_parser("train", help="train a preset on synthetic RAW made from photos (torchrun for data parallel)")
    _training_args(t)

    h = sub.add_parser("train-teacher", help="train a multi-step flow teacher in a one-step model's latent space")
    _training_args(h, lr=1e-3)
    h.add_argument("--base", metavar="PATH", help="one-step checkpoint whose latent space the teacher uses "
                                                  "(default: the shipped one)")
    h.add_argument("--width", type=int, default=192, help="velocity net width (default 192)")
    h.add_argument("--depth", type=int, default=6, help="velocity net blocks (default 6)")
    h.add_argument("--heads", type=int, default=6, help="attention heads (default 6)")
    h.add_argument("--source-noise", type=float, default=0.5, help="sigma of the flow's source c + sigma * noise")
    h.add_argument("--ae-steps", type=int, default=300, help="first steps: the target encoder only (default 300)")
    h.add_argument("--anchor-weight", type=float, default=0.1,
                   help="pull of the target latent towards the base model's latent (default 0.1)")

    d = sub.add_parser("distill", help="distil a flow teacher into the one-step network (consistency + adversarial)")
    _training_args(d, lr=2e-4)
    d.add_argument("--teacher", required=True, metavar="PATH", help="teacher.safetensors from `edge4k train-teacher`")
    d.add_argument("--consistency-weight", type=float, default=1.0, help="weight of the consistency term (0: off)")
    d.add_argument("--adversarial-weight", type=float, default=0.1, help="weight of the adversarial term (0: off)")

    from edge4k.evaluation.evaluate import METHODS as EVAL_METHODS, SETS as EVAL_SETS
    e = sub.add_parser("eval", help="image quality vs classical and learned converters, each finished like the "
                                    "ground truth (PSNR, SSIM, CIEDE2000); --sweep: the robustness grid")
    e.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    e.add_argument("--checkpoint", metavar="PATH", help="weights to evaluate (default: the shipped checkpoint)")
    e.add_argument("--artifacts", metavar="DIR", help="evaluate this compiled build (its backend and tiling) "
                                                    "instead of the eager model")
    e.add_argument("--set", dest="set_name", default="held-out", choices=EVAL_SETS,
                   help="evaluation set (default held-out: the bundled photos never trained on; kodak24 and "
                        "mcmaster18 are read from DATA/eval/SET)")
    e.add_argument("--data", metavar="DIR", help="data folder holding eval/kodak24 and eval/mcmaster18 "
                                                 "(default $EDGE4K_DATA, else ./data)")
    e.add_argument("--look", choices=["neutral", "natural", "both"], default="both",
                   help="finishing look(s) to score (default both)")
    e.add_argument("--sweep", action="store_true", help="the robustness sweep (exposure x ISO x illuminant, "
                                                        "held-out cameras, charts) instead of a set")
    e.add_argument("--quick", action="store_true", help="with --sweep: a reduced grid at small size")
    e.add_argument("--summary", metavar="EVAL_DIR", help="print the README's quality tables from the eval JSON in "
                   "EVAL_DIR (kodak24, mcmaster18, held-out); with --build LABEL=DIR for compiled builds' evals")
    e.add_argument("--build", action="append", default=[], metavar="LABEL=DIR",
                   help="with --summary: a compiled build's `eval --artifacts` folder (repeatable)")
    e.add_argument("--gallery", nargs="+", metavar="RAW", help="real camera RAW files: LibRaw beside Edge4K, both "
                                                             "looks, as a crop sheet (no ground truth, no scores)")
    e.add_argument("-o", "--output", default="out/eval", metavar="DIR", help="output folder (default out/eval)")
    e.add_argument("--methods", nargs="+", metavar="M", help=f"subset of: {' '.join(EVAL_METHODS)} (default: all)")
    e.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    e.add_argument("--teacher", metavar="PATH", help="compare one-step models instead: this flow teacher at "
                                                    "--steps, the --student, and the one-step --checkpoint")
    e.add_argument("--student", metavar="PATH", help="distilled one-step checkpoint (with --teacher)")
    e.add_argument("--steps", default="1,2,4,8", help="teacher steps to compare (default 1,2,4,8)")
    e.add_argument("--solver", default="euler", choices=["euler", "heun"], help="teacher ODE solver (default euler)")
    _data_args(sub)

    y = sub.add_parser("study", help="answer a research question of DESIGN.md with data: JSON + plots + "
                                     "a Markdown section (`all`: every study, then docs/RESEARCH.md)")
    y.add_argument("name", help="compression, attention, tricks, decoder_share, tiling, phone, sana, or all")
    y.add_argument("--budget-minutes", type=float,
                   help="training budget per trained model (default: the study's own, see docs/RESEARCH.md)")
    y.add_argument("-o", "--out", metavar="DIR",
                   help="output folder (default reports/NAME; for `all`, the parent folder, default reports)")
    y.add_argument("--doc", default="docs/RESEARCH.md", help="report `all` writes (default docs/RESEARCH.md)")
    y.add_argument("--quick", action="store_true", help="tiny shapes and a few steps: checks the plumbing (CI)")
    y.add_argument("--reuse", action="store_true", help="all: keep studies that already have a report in the "
                                                        "output folder, run only the missing ones")

    return p


def _data_args(sub) -> None:
    """`edge4k data build|list|extract`: the training photographs (datasets/sources.csv)."""
    d = sub.add_parser("data", help="training data: the source manifest, extraction and training shards")
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


def _training_args(p: argparse.ArgumentParser, *, lr: float = 2e-3) -> None:
    """What every training command shares (edge4k.training.train.TrainOptions)."""
    from edge4k.models import DEFAULT_PRESET
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    p.add_argument("--budget-minutes", type=float, required=True, help="wall-clock budget; training stops after it")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (checkpoints, log, loss curve)")
    p.add_argument("--steps", type=int, help="number of steps (fixes the learning-rate schedule; "
                                             "default: the schedule follows the time budget)")
    p.add_argument("--batch", type=int, default=8, help="crops per step per process (default 8)")
    p.add_argument("--crop", type=int, default=192, help="crop size in output pixels (default 192)")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")
    p.add_argument("--data", metavar="DIR", help="folder of sRGB images to train on (default: the bundled photos)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines (default 10)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--threads", type=int, help="CPU threads per process (on a busy machine 1 avoids "
                                               "threads waiting on each other)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes that synthesise the RAW "
                                                          "batches (default 0: in the training process)")
    p.add_argument("--init", metavar="PATH", help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--freeze-norm", action="store_true",
                   help="keep BatchNorm statistics fixed, so training sees what the deployed model computes")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (edge4k train only): about a "
                                                          "minute once, then about 10%% faster steps on CPU")


def _output_args(p: argparse.ArgumentParser) -> None:
    """What `edge4k run` writes: space, format, quality, preview, and the batch controls."""
    from edge4k.batch import FORMATS
    from edge4k.kernels.colourspace import OUTPUT_SPACES
    p.add_argument("--output-space", default="srgb", choices=list(OUTPUT_SPACES),
                   help="output colour space, its ICC profile embedded (rawpy's output_color; default srgb); "
                        "prophoto and rec2020-linear need 16 bits or float")
    p.add_argument("--quality", type=int, help="JPEG quality 1-100 (default 95)")
    p.add_argument("--half-size", action="store_true",
                   help="fast preview: each 2x2 Bayer cell one pixel, no network (rawpy's half_size)")
    p.add_argument("--mkdir", action="store_true", help="create the output's missing folders (else refused)")
    p.add_argument("--format", choices=list(FORMATS),
                   help="several inputs: the output files' format (default jpg; tif for prophoto and rec2020-linear)")
    p.add_argument("--skip-existing", action="store_true", help="several inputs: leave files whose output exists")
    p.add_argument("--workers", type=int, help="several inputs: threads decoding ahead and writing behind the "
                                               "network (default: 1 when a core is free, else 0)")


def _wb_choice(text: str):
    from edge4k.kernels.rawcolour import WB_MODES
    if text in WB_MODES:
        return text
    try:
        gains = tuple(float(v) for v in text.split(","))
    except ValueError:
        gains = ()
    if len(gains) != 3:
        raise argparse.ArgumentTypeError(f"expected {', '.join(WB_MODES)} or three multipliers R,G,B, got {text!r}")
    return gains


def _colour_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wb", type=_wb_choice, default="camera", metavar="camera|auto|daylight|R,G,B",
                   help="white balance: camera (as shot, default; auto when the file has none), auto (grey-edge on "
                        "the camera's whites), daylight (the camera's D65 white) or R,G,B multipliers")
    p.add_argument("--wb-kelvin", type=float, metavar="K", help="white balance for a colour temperature (CIE daylight "
                                                               "locus from 4000 K, Planckian below)")
    p.add_argument("--wb-tint", type=float, default=0.0, metavar="T", help="with --wb-kelvin: tint, Adobe's scale "
                                                                          "(+ magenta, - green; default 0)")
    p.add_argument("--cfa", choices=["RGGB", "BGGR", "GRBG", "GBRG"], help="read the mosaic with this CFA pattern "
                                                                          "instead of the file's")
    p.add_argument("--exposure", type=float, default=0.0, metavar="EV", help="exposure compensation in stops, on "
                                                                           "top of either look (default 0)")
    p.add_argument("--highlights", choices=["clip", "reconstruct"], default="clip",
                   help="clip (default) or reconstruct clipped channels from the unclipped ones")


def _colour_kwargs(args) -> dict:
    return {"wb": args.wb, "wb_kelvin": args.wb_kelvin, "wb_tint": args.wb_tint, "cfa": args.cfa,
            "exposure": args.exposure, "highlights": args.highlights}


def _look_arg(p: argparse.ArgumentParser) -> None:
    from edge4k.kernels.postprocess import DEFAULT_LOOK, LOOKS
    p.add_argument("--look", default=DEFAULT_LOOK, choices=LOOKS,
                   help=f"natural: automatic exposure + tone curve, as a phone gallery shows it; neutral: "
                        f"colorimetric sRGB, no brightening (LibRaw's convention) (default {DEFAULT_LOOK})")


def _weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH",
                   help="model weights (.safetensors from `edge4k train`); default: the trained checkpoint "
                        "shipped for the preset, else seed-initialised weights")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (only when no checkpoint exists)")


def _tiling_args(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--tile", type=int, help="tile size in output pixels (default 512; a smaller frame gets one "
                                               "tile, or the largest tile that fits)")
    mode.add_argument("--native", action="store_true", help="one tile covering the whole frame")
    p.add_argument("--overlap", type=int, help="tile overlap in output pixels (default 32)")
    p.add_argument("--batch", type=int, help="tiles per network call (fixed shape, default 1)")


def _tile_options(args):
    return tile_options(tile=args.tile, overlap=args.overlap, native=args.native, batch=args.batch)


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Edge4KError(f"--resolution must look like 3840x2160, got {text!r}") from None
    if w < 1 or h < 1 or w % 2 or h % 2:
        raise Edge4KError(f"--resolution needs even, positive width and height, got {text}")
    return w, h


def cmd_run(args) -> int:
    """A thin layer over the Python API: edge4k.Renderer(...).profile(...)."""
    from edge4k.api import Renderer
    from edge4k.runtime.pipeline import format_table

    from edge4k.batch import is_batch
    from edge4k.files import check_output
    from edge4k.kernels.colourspace import check_bits
    from edge4k.kernels.postprocess import bit_depth_for, check_quality

    for name, minimum in (("runs", 1), ("warmup", 0)):
        _check_positive(name, getattr(args, name), minimum)
    inputs = args.input or [sample_path()]
    batch = is_batch(inputs, args.output)
    if batch:
        refused = [flag for flag, given in (("--profile", args.profile), ("--runs", args.runs != 1),
                                            ("--warmup", args.warmup)) if given]
        if refused:
            raise Edge4KError(f"{refused[0]} times one file; with several inputs, give one at a time")
        from edge4k.batch import plan_batch   # everything a batch can check, before the model loads
        plan_batch(inputs, args.output, format=_batch_format(args), look=args.look, bits=args.bits,
                   output_space=args.output_space, quality=args.quality, mkdir=args.mkdir)
    else:
        for flag, given in (("--format", args.format), ("--skip-existing", args.skip_existing),
                            ("--workers", args.workers is not None)):
            if given:
                raise Edge4KError(f"{flag} is for several inputs (-o a folder); one file's format is -o's extension")
        if args.half_size and (args.profile or args.runs != 1 or args.warmup):
            raise Edge4KError("--half-size runs no network: --profile, --runs and --warmup time the network")
        # everything about the output is checked before the model loads
        check_bits(args.output_space, bit_depth_for(args.output, args.bits))
        check_quality(args.output, args.quality)
        check_output(args.output, mkdir=args.mkdir)
    with Renderer(preset=args.preset, checkpoint=args.checkpoint, seed=args.seed, backend=args.backend,
                  artifacts=args.artifacts, soc=args.soc, tile=args.tile, overlap=args.overlap, native=args.native,
                  batch=args.batch, threads=args.threads) as renderer:
        if batch:
            return _run_batch(renderer, inputs, args)
        if args.half_size:
            renderer.render(inputs[0], output=args.output, look=args.look, bits=args.bits,
                            output_space=args.output_space, quality=args.quality, half_size=True,
                            **_colour_kwargs(args))
            print(f"wrote {args.output}")
            return 0
        profile = renderer.profile(inputs[0], args.output, look=args.look, bits=args.bits,
                                   runs=args.runs, warmup=args.warmup, profile_path=args.profile,
                                   progress=sys.stderr.isatty(), output_space=args.output_space,
                                   quality=args.quality, **_colour_kwargs(args))
    print(format_table(profile))
    print(f"wrote {args.output}" + (f" and {args.profile}" if args.profile else ""))
    return 0


def _batch_format(args) -> str:
    from edge4k.kernels.colourspace import get_space
    return args.format or ("tif" if get_space(args.output_space).min_bits > 8 else "jpg")


def _run_batch(renderer, inputs: list[str], args) -> int:
    """`edge4k run IN... -o DIR`: a progress bar (one line per file when stderr is not a
    terminal), one line per failed file, a summary; exit status 1 when any failed."""
    import time
    from tqdm import tqdm

    results = renderer.render_many(inputs, args.output, format=_batch_format(args), look=args.look, bits=args.bits,
                                   output_space=args.output_space, quality=args.quality, half_size=args.half_size,
                                   skip_existing=args.skip_existing, mkdir=args.mkdir, workers=args.workers,
                                   **_colour_kwargs(args))
    from edge4k.batch import expand_inputs
    total, tty = len(expand_inputs(inputs)), sys.stderr.isatty()
    counts, started = {"rendered": 0, "skipped": 0, "failed": 0}, time.perf_counter()
    with tqdm(total=total, unit="file", disable=not tty, file=sys.stderr) as bar:
        for n, result in enumerate(results, 1):
            kind = "failed" if result.error else "skipped" if result.skipped else "rendered"
            counts[kind] += 1
            if result.error:
                (bar.write if tty else print)(f"edge4k: failed: {result.error}", file=sys.stderr)
            elif not tty:
                print(f"[{n}/{total}] {kind} {result.source} -> {result.output}"
                      + (f" ({result.seconds:.2f} s)" if kind == "rendered" else ""), file=sys.stderr, flush=True)
            bar.update()
    seconds = time.perf_counter() - started
    per = f", {seconds / counts['rendered']:.2f} s per rendered file" if counts["rendered"] else ""
    print(f"{counts['rendered']} rendered, {counts['skipped']} skipped, {counts['failed']} failed of {total} "
          f"in {seconds:.1f} s{per}; output in {args.output}")
    return EXIT_ERROR if counts["failed"] else 0


def cmd_thumb(args) -> int:
    from edge4k.api import extract_thumb
    data = extract_thumb(args.input, args.output, mkdir=args.mkdir)
    print(f"wrote {args.output} (embedded preview, {len(data)} bytes as stored)")
    return 0


def _build_spec(args, target: str, precision: str, keep_fp32=()):
    from edge4k.backends.base import BuildSpec
    from edge4k.models import get_preset

    width, height = _parse_resolution(args.resolution)
    # the default tiling fits a resolution smaller than its tile, as `edge4k run` does
    opts = _tile_options(args).fitted(get_preset(args.preset).compression, height, width)
    _check_positive("calib", args.calib)
    model, weights = load_for_preset(args.preset, args.checkpoint, seed=args.seed)
    spec = BuildSpec(target=target, preset=args.preset, width=width, height=height, tile=opts.tile,
                     overlap=opts.overlap, native=opts.native, batch=opts.batch, precision=precision,
                     calib=args.calib, calib_sources=tuple(args.calib_source),
                     options={**({"observer": args.observer} if args.observer else {}), "keep_fp32": list(keep_fp32),
                              "soc": getattr(args, "soc", None) and args.soc.upper(), "a16": getattr(args, "a16", [])})
    return model, weights, spec


def _progress(prefix: str):
    show = sys.stderr.isatty() or os.environ.get("EDGE4K_PROGRESS") == "1"
    return lambda msg: print(f"[{prefix}] {msg}", file=sys.stderr, flush=True) if show else None


def cmd_compile(args) -> int:
    from edge4k.compiler.build import compile_build
    from edge4k.backends.registry import get_target

    keep = list(args.keep_fp32)
    if args.fp32_plan:
        try:
            keep += json.loads(open(args.fp32_plan).read())["keep_fp32"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise Edge4KError(f"cannot read keep_fp32 from {args.fp32_plan}: {e}") from None
    model, weights, spec = _build_spec(args, args.target, args.quant or get_target(args.target).default_precision, keep)
    manifest = compile_build(model, spec, args.output, weights=weights, progress=_progress("compile"), force=args.force)
    print(format_manifest(manifest))
    print(f"wrote {args.output}")
    return 0


def cmd_analyze(args) -> int:
    from edge4k.compiler.build import prepare_inputs
    from edge4k.backends.xnnpack import require_executorch
    from edge4k.calibration.sensitivity import layer_sensitivity
    from edge4k.files import atomic_output
    from edge4k.models import NETWORK_STAGES

    require_executorch()
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(NETWORK_STAGES)
    if unknown:
        raise Edge4KError(f"unknown stages {', '.join(sorted(unknown))}; valid: {', '.join(NETWORK_STAGES)}")
    model, _, spec = _build_spec(args, "host-xnnpack", "int8")
    _, inputs, calib, held_out = prepare_inputs(model, spec)
    report = layer_sensitivity(model, inputs, calib, held_out, stages=stages, observer=args.observer,
                               threshold_db=args.threshold, progress=_progress("analyze"))
    report.update(preset=args.preset, resolution=args.resolution, calib=args.calib)
    with atomic_output(args.output) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    for row in report["layers"][:10]:
        print(f"{row['psnr_db']:8.2f} dB  {row['layer']}")
    print(f"{len(report['keep_fp32'])} of {len(report['layers'])} layers below {args.threshold} dB; "
          f"wrote {args.output} (use it with `edge4k compile --fp32-plan {args.output}`)")
    return 0


def format_manifest(manifest: dict) -> str:
    verification = manifest["verification"]
    rows = [f"{manifest['target']} {manifest['precision']} {manifest['preset']}: "
            f"tile {manifest['tiling']['tile_width']}x{manifest['tiling']['tile_height']} batch {manifest['tiling']['batch']}"]
    if "qnn" in manifest:
        q = manifest["qnn"]
        rows[0] += f", {q['soc']} ({q['device']}, HTP v{q['htp_arch']}, QAIRT {q['qairt']})"
    rows.append(f"{'stage':<10}{'PSNR dB':>9}{'size KiB':>10}{'arena MiB':>11}  notes")
    for stage, entry in manifest["stages"].items():
        place = entry.get("placement")
        notes = [f"outside delegate: {', '.join(f'{k} x{v}' for k, v in entry['ops_outside_delegate'].items()) or 'none'}"
                 if "ops_outside_delegate" in entry else "",
                 f"{place['htp']}/{place['nodes']} nodes on the HTP" if place else "",
                 f"TRANSPOSE x{entry['transpose_ops']}" if "transpose_ops" in entry else "",
                 f"compressed weights: {sum(entry['compressed_weight_ops'].values())} tensors"
                 if "compressed_weight_ops" in entry else ""]
        score = verification.get("psnr_db", {}).get(stage)
        size, arena = entry.get("bytes"), entry.get("planned_arena_bytes")
        rows.append(f"{stage:<10}{'-' if score is None else f'{score:.1f}':>9}"
                    f"{'-' if size is None else f'{size / 1024:.1f}':>10}"
                    f"{'-' if arena is None else f'{arena / 2**20:.2f}':>11}  {'; '.join(n for n in notes if n)}")
    if "skipped" in verification:
        rows.append(f"accuracy check skipped: {verification['skipped']}")
    else:
        rows.append(f"whole tile (all stages compiled): {verification['tile_psnr_db']:.1f} dB")
    return "\n".join(rows)


def cmd_check(args) -> int:
    from edge4k.compiler.build import check_build
    from edge4k.runtime.manifest import load_manifest
    from edge4k.files import atomic_output
    _check_positive("samples", args.samples)
    manifest = load_manifest(args.artifacts)
    model = model_of_build(manifest, args.artifacts, args.checkpoint)
    report = check_build(model, args.artifacts, images=args.inputs or [sample_path()], samples=args.samples,
                         floor=args.floor, progress=_progress("check"))
    print(format_check(manifest, report))
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if report["failing"]:
        worst = ", ".join(f"{k} {v:.1f} dB" for k, v in report["failing"].items())
        floor = "--floor" if args.floor is not None else f"the {manifest['precision']} floor"
        raise Edge4KError(f"{args.artifacts} fails the accuracy check: {worst} < {report['floor_db']:.1f} dB "
                          f"({floor})")
    return 0


def format_check(manifest: dict, report: dict) -> str:
    rows = [f"{manifest['target']} {manifest['precision']} {manifest['preset']} against eager fp32 "
            f"(floor {report['floor_db']:.1f} dB)", f"{'':<24}{'PSNR dB':>9}"]
    scores = {**report["psnr_db"], "whole tile (chained)": report["tile_psnr_db"],
              **{f"image {k}": v for k, v in report["image_psnr_db"].items()}}
    for name, value in scores.items():
        rows.append(f"{name:<24}{value:>9.1f}" + ("  FAIL" if value < report["floor_db"] else ""))
    return "\n".join(rows)


def model_of_build(manifest: dict, artifacts: str, checkpoint: str | None):
    """The eager fp32 model a build was compiled from: its seed, or the checkpoint
    (given, else the shipped one) whose sha256 the manifest names."""
    from edge4k.models import E4KConfig, build_model
    from edge4k.models.checkpoint import default_checkpoint, describe, load_model

    weights = manifest["weights"]
    if weights.startswith("seed:"):
        return build_model(E4KConfig.from_dict(manifest["config"]), seed=int(weights.split(":", 1)[1]))
    path = checkpoint or default_checkpoint(manifest["preset"])
    if path is None or describe(path) != weights:
        raise Edge4KError(f"{artifacts} was built from {weights}; pass that checkpoint with --checkpoint")
    return load_model(path, manifest["preset"])[0]


TRAINING_FIELDS = ("preset", "budget_minutes", "steps", "batch", "crop", "lr", "seed", "data", "checkpoint_every",
                   "log_every", "resume", "threads", "workers", "init", "freeze_norm", "compile")


def _run_training(args, options_cls, run, **extra) -> int:
    opts = options_cls(out=args.out, **{k: getattr(args, k) for k in TRAINING_FIELDS},
                       command=shlex.join(["edge4k", *args.argv]), **extra)
    summary = run(opts, progress=sys.stderr.isatty())
    if int(os.environ.get("RANK", "0")) == 0:
        done = {"train": "trained", "train-teacher": "trained the teacher on", "distill": "distilled"}[summary["task"]]
        print(f"{done} {summary['preset']}: {summary['steps']} steps ({summary['stopped_by']}), "
              f"{summary['crops_seen']} crops of {summary['crop']} px in {summary['elapsed_s']:.0f} s "
              f"on {summary['world']} process(es); wrote {args.out}/{summary['weights']}")
    return 130 if summary["stopped_by"] == "interrupted" else 0


def cmd_train(args) -> int:
    from edge4k.training.train import TrainOptions, train
    return _run_training(args, TrainOptions, train)


def cmd_train_teacher(args) -> int:
    from edge4k.training.flow import TeacherOptions, train_teacher
    return _run_training(args, TeacherOptions, train_teacher, base=args.base, width=args.width, depth=args.depth,
                         heads=args.heads, source_noise=args.source_noise, ae_steps=args.ae_steps,
                         anchor_weight=args.anchor_weight)


def cmd_distill(args) -> int:
    from edge4k.training.distill import DistillOptions, distill
    return _run_training(args, DistillOptions, distill, teacher=args.teacher,
                         consistency_weight=args.consistency_weight, adversarial_weight=args.adversarial_weight)


def cmd_eval(args) -> int:
    from edge4k.kernels.postprocess import LOOKS
    from edge4k.models import get_preset
    from edge4k.evaluation.evaluate import METHODS, evaluate, load_set, sweep, write_report, write_sweep
    from edge4k.kernels.threads import set_threads
    _check_positive("threads", args.threads)
    set_threads(args.threads)
    if args.summary:
        from edge4k.evaluation.evaluate import summary_tables
        builds = dict(b.split("=", 1) for b in args.build if "=" in b)
        if len(builds) != len(args.build):
            raise Edge4KError("--build takes LABEL=DIR, e.g. --build 'XNNPACK int8=out/eval-builds/xnnpack-int8'")
        try:
            print(summary_tables(args.summary, builds), end="")
        except FileNotFoundError as e:
            raise Edge4KError(f"--summary needs the eval JSON of kodak24, mcmaster18 and held-out: {e.filename} "
                              "is missing (run edge4k eval --set ... -o DIR first)") from None
        return 0
    cfg = get_preset(args.preset)
    if args.teacher:
        return _eval_compare(args, cfg)
    if args.student:
        raise Edge4KError("--student is compared against a --teacher; give both")
    methods = args.methods or list(METHODS)
    if args.artifacts:
        from edge4k.backends.registry import open_build
        if args.checkpoint:
            raise Edge4KError("--checkpoint is for the eager model; a compiled build carries its own weights")
        model = open_build(args.artifacts)
        cfg, weights = model.cfg, model.weights
    else:
        model, weights = (None, None) if "edge4k" not in methods else load_for_preset(cfg.name, args.checkpoint)
    if weights is not None and weights.startswith("seed:"):
        print(f"note: no checkpoint for {cfg.name}; evaluating seed-initialised weights", file=sys.stderr)
    if args.gallery:
        from edge4k.evaluation.evaluate import gallery
        paths = gallery(model, args.gallery, args.output, progress=sys.stderr.isatty())
    elif args.sweep:
        from edge4k.evaluation.evaluate import SWEEP_GRID, SWEEP_QUICK
        report = sweep(model, grid=SWEEP_QUICK if args.quick else SWEEP_GRID, size=96 if args.quick else 192,
                       progress=sys.stderr.isatty())
        report["model"] = {"preset": cfg.name, "config_hash": cfg.config_hash(), "weights": weights}
        paths = write_sweep(report, args.output)
    else:
        looks = LOOKS if args.look == "both" else (args.look,)
        report = evaluate(model, load_set(args.set_name, args.data), methods=methods, looks=looks,
                          progress=sys.stderr.isatty(), keep_outputs=True)
        report["model"] = {"preset": cfg.name, "config_hash": cfg.config_hash(), "weights": weights}
        title = f"{args.set_name} set, {cfg.name} ({weights})" if weights else f"{args.set_name} set"
        paths = write_report(report, args.output, set_name=args.set_name, title=title)
    print(open(paths["md"]).read())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    from PIL import Image
    from edge4k.datasets.dng import write_dng
    from edge4k.datasets.unprocess import unprocess

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


def cmd_info(args) -> int:
    from edge4k.kernels.raw import PHASE_PAD, read_raw
    from edge4k.kernels.rawcolour import cfa_suggestion
    path = args.input or sample_path()
    frame = read_raw(path)
    info = {"path": path, **frame.info(), "cfa_suggestion": cfa_suggestion(frame)}
    info["packed_shape"] = [4, (info["height"] + PHASE_PAD) // 2, (info["width"] + PHASE_PAD) // 2]
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


def cmd_profile(args) -> int:
    from pathlib import Path
    from edge4k.devices.android import RunOptions
    from edge4k.devices.flow import ProfileRequest, format_profile, profile

    for name, minimum in (("runs", 1), ("warmup", 0), ("threads", 1), ("calib", 1)):
        _check_positive(name, getattr(args, name), minimum)
    raw_input = args.input or sample_path()
    out = Path(args.out or Path("out") / args.target)
    req = ProfileRequest(target=args.target, device=args.device, raw_input=raw_input, out_dir=out,
                         artifacts=Path(args.artifacts) if args.artifacts else None,
                         compile_args=_profile_compile_args(args, raw_input),
                         run=RunOptions(runs=args.runs, warmup=args.warmup, threads=args.threads,
                                        idle_seconds=args.idle_seconds, timeout=args.timeout, look=args.look),
                         serial=args.serial, runner=args.runner, compute_units=args.compute_units,
                         dry_run=args.dry_run, qnn_libs=args.qnn_libs)

    def compile_fn(argv):
        from edge4k.backends.registry import get_target
        get_target(args.target)   # an unknown target fails here, with the list of valid ones
        cmd_compile(build_parser().parse_args(argv))

    result = profile(req, compile_fn=compile_fn)
    if result is not None:
        print(format_profile(result))
        print(f"wrote {out / 'profile.json'} and {out / 'output.png'}")
    return 0


def _profile_compile_args(args, raw_input: str) -> list[str]:
    """The `edge4k compile` flags a profile run implies (the frame size defaults to the input's)."""
    resolution = args.resolution
    if resolution is None and not args.artifacts:
        from edge4k.kernels.raw import read_raw
        frame = read_raw(raw_input)
        resolution = f"{frame.width}x{frame.height}"
    flags = ["--preset", args.preset, "--seed", str(args.seed)]
    flags += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    flags += ["--resolution", resolution] if resolution else []
    flags += ["--native"] if args.native else []
    for name in ("tile", "overlap", "batch", "calib"):
        if getattr(args, name) is not None:
            flags += [f"--{name}", str(getattr(args, name))]
    flags += ["--quant", args.quant] if args.quant else []
    flags += ["--soc", args.soc] if args.soc else []
    return flags


def cmd_build_runner(args) -> int:
    from edge4k.devices.commands import Shell
    from edge4k.devices.flow import ANDROID_BUILD_DIR
    from edge4k.devices.native import KERNELS_LIB, RUNNER, build_aarch64_linux, build_android, build_host

    shell = Shell(dry_run=args.dry_run)
    _check_positive("jobs", args.jobs)
    if args.target != "host" and (args.android or args.kernels_only):
        raise Edge4KError(f"--target {args.target} builds the runner, libedge4k and the kernels together; "
                          "leave out --android and --kernels-only")
    if args.target == "aarch64-linux":
        runner = build_aarch64_linux(args.output or "build/native-aarch64-linux", shell=shell, jobs=args.jobs) / RUNNER
    elif args.android:
        runner = build_android(args.output or ANDROID_BUILD_DIR, ndk=os.environ.get("ANDROID_NDK") or
                               os.environ.get("ANDROID_NDK_HOME"),
                               executorch_prefix=os.environ.get("EXECUTORCH_ANDROID_PREFIX"), shell=shell,
                               jobs=args.jobs, extra_libraries=os.environ.get("EDGE4K_ANDROID_EXTRA_LIBS"),
                               executorch=not args.without_executorch)
    elif args.kernels_only:
        from edge4k.kernels.cpp import default_library_path
        runner = build_host(args.output or default_library_path().parent, shell=shell, jobs=args.jobs,
                            kernels_only=True) / KERNELS_LIB
    else:
        runner = build_host(args.output or "build/native-host", shell=shell, jobs=args.jobs,
                            sanitize=args.sanitize) / RUNNER
    if not args.dry_run:
        print(f"built {runner}")
    return 0


def cmd_data(args) -> int:
    if args.data_command == "report":
        from pathlib import Path
        from edge4k.files import atomic_output
        from edge4k.models import get_preset
        from edge4k.training.data import PairSampler, coverage, coverage_plot
        from edge4k.training.train import training_images
        _check_positive("samples", args.samples)
        cfg = get_preset("e4k-s-f16")
        sampler = PairSampler(training_images(args.data), crop=cfg.compression * 8, thumb_size=cfg.thumb_size,
                              multiple=cfg.compression)
        report = coverage(sampler, args.samples, seed=args.seed, progress=sys.stderr.isatty())
        report["data"] = args.data or "bundled training photos"
        out = Path(args.output)
        with atomic_output(out / "coverage.json") as tmp:
            tmp.write_text(json.dumps(report, separators=(",", ":")) + "\n")
        coverage_plot(report, out / "coverage.png")
        s = report["summary"]
        print(f"{args.samples} scenes, {s['cameras']} cameras; gain R {s['gain_r'][1]:.2f}-{s['gain_r'][99]:.2f}, "
              f"gain B {s['gain_b'][1]:.2f}-{s['gain_b'][99]:.2f} (1st-99th percentile); EV {s['ev'][0]:+.2f} to "
              f"{s['ev'][100]:+.2f}; ISO {s['iso'][0]:.0f}-{s['iso'][100]:.0f}; clipped highlights in "
              f"{100 * s['share_with_clipped_highlights']:.1f}% of scenes; wrote {out}/coverage.json and coverage.png")
        return 0
    if args.data_command == "build":
        from edge4k.datasets.databuild import BuildOptions, build
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
    from edge4k.datasets.sources import extract, format_summary, load_manifest, summary
    rows = load_manifest(args.manifest)
    if args.data_command == "list":
        s = summary(rows)
        print(json.dumps(s, indent=2) if args.json else format_summary(s))
        return 0
    from tqdm import tqdm
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


def cmd_study(args) -> int:
    from edge4k.studies import run_all, run_study
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.name == "all":
        doc = run_all(args.out or "reports", args.doc, budget_minutes=args.budget_minutes, quick=args.quick,
                      reuse=args.reuse, progress=progress)
        print(f"wrote {doc}")
        return 0
    ctx = run_study(args.name, args.out or f"reports/{args.name}", budget_minutes=args.budget_minutes,
                    quick=args.quick, progress=progress)
    print((ctx.out_dir / f"{ctx.name}.md").read_text())
    print(f"wrote {ctx.out_dir}")
    return 0


def _eval_compare(args, cfg) -> int:
    from edge4k.models.checkpoint import load_model
    from edge4k.evaluation.evaluate import compare, load_set, write_compare
    from edge4k.training.flow import load_teacher, teacher_as_model
    try:
        steps = [int(n) for n in args.steps.split(",")]
    except ValueError:
        raise Edge4KError(f"--steps must be a comma list of integers, got {args.steps}") from None
    _check_positive("steps", min(steps))
    teacher, _ = load_teacher(args.teacher, cfg.name)
    direct, weights = load_for_preset(cfg.name, args.checkpoint)
    models = {f"teacher {args.solver} {n} step{'s' if n > 1 else ''}": teacher_as_model(teacher, n, args.solver)
              for n in steps}
    if args.student:
        models["distilled student, 1 step"] = load_model(args.student, cfg.name)[0]
    models[f"direct one-step ({weights})"] = direct
    look = "natural" if args.look == "both" else args.look
    report = compare(models, load_set(args.set_name, args.data), look=look, progress=sys.stderr.isatty(),
                     keep_outputs=True)
    report["teacher"], report["student"] = args.teacher, args.student
    paths = write_compare(report, args.output, set_name=args.set_name,
                          title=f"{args.set_name} set, one-step models and the {cfg.name} flow teacher")
    print(open(paths["md"]).read())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


COMMANDS = {"run": cmd_run, "compile": cmd_compile, "analyze": cmd_analyze, "check": cmd_check,
            "sample": cmd_sample, "info": cmd_info, "thumb": cmd_thumb, "presets": cmd_presets,
            "profile": cmd_profile, "build-runner": cmd_build_runner, "train": cmd_train, "train-teacher": cmd_train_teacher,
            "distill": cmd_distill, "eval": cmd_eval,
            "study": cmd_study, "data": cmd_data}


_PYTHON_FORMATWARNING = warnings.formatwarning


def _format_warning(message, category, *rest, **kw) -> str:
    from edge4k.kernels.rawcolour import ColourWarning
    if issubclass(category, ColourWarning):
        return f"edge4k: warning: {message}\n"
    return _PYTHON_FORMATWARNING(message, category, *rest, **kw)


def _one_line_warnings() -> None:
    """Edge4K's own warnings (a colour fallback, a suspicious CFA) print as one line."""
    warnings.formatwarning = _format_warning


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Python is, as Ctrl-C's KeyboardInterrupt is: the same
    clean-up runs (atomic outputs remove their temporaries, old outputs stay)."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = signum


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def _handle_signals() -> dict:
    """SIGTERM and SIGHUP handled like SIGINT; returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}


def main(argv: list[str] | None = None) -> int:
    previous = _handle_signals()
    try:
        return _main(argv)
    except KeyboardInterrupt as e:   # Ctrl-C, SIGTERM or SIGHUP
        print("edge4k: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            # As the program (argv=None: the command line), the run is over and its outputs are
            # published: a signal while Python shuts down must not turn it into a killed run.
            signal.signal(sig, signal.SIG_IGN if argv is None else handler)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # training runs record their command line
    # torch.export's internals warn about their own deprecations; not the user's business.
    warnings.filterwarnings("ignore", category=FutureWarning)
    _one_line_warnings()
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    try:
        return COMMANDS[args.command](args)
    except Edge4KError as e:
        print(f"edge4k: error: {e}", file=sys.stderr)
        return e.exit_code
    except MemoryError:
        print("edge4k: error: out of memory; use tiled mode or a smaller --batch", file=sys.stderr)
    except OSError as e:   # the file system said no (disk full, permissions): one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        print(f"edge4k: error: {e.strerror or e}{where}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

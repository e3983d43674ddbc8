import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# Before anything imports a package that a root folder could shadow (torch pulls in many).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT in [os.path.abspath(p or os.curdir) for p in sys.path]:
    raise pytest.UsageError("the repository root is on sys.path, where kernels/, models/, runtime/ ... shadow "
                            "installed packages: run `make test`, or `python -P -m pytest`")

import torch  # noqa: E402

from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import unprocess
from edge4k.files import sample_path
from edge4k.models import build_model, get_preset

# Property tests are derandomised (the same examples on every run and machine), with no
# per-example deadline nor slow-generation check (shared CI cores are slow and noisy), and no
# example database in the repo.
try:
    from hypothesis import HealthCheck, settings
    settings.register_profile("edge4k", derandomize=True, deadline=None, database=None, max_examples=60,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("edge4k")
except ImportError:   # hypothesis is in the dev extra; without it only the property tests fail to import
    pass


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful sRGB test image in [0, 1] (gradients plus a few blobs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx + c + 3 * yy * (c + 1)) for c in range(3)], -1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1, 3) * [h / max(h, w), w / max(h, w), 0.2]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (r + 0.05) ** 2] = rng.uniform(0.1, 0.9, 3)
    return img.astype(np.float32)


def make_test_dng(path, h=128, w=192, cfa="RGGB", **kwargs) -> str:
    """A synthetic DNG of smooth_image, unprocessed with a fixed seed."""
    cap = unprocess(smooth_image(h, w), cfa=cfa, iso=None, ev=0.0, bits=14, black_level=512,
                    rng=np.random.default_rng(1))
    return str(write_dng(path, cap, **kwargs))


@pytest.fixture
def make_dng(tmp_path):
    """make_dng(h, w, cfa="RGGB", **write_kwargs) -> path of a fresh synthetic DNG."""
    def make(h=128, w=192, cfa="RGGB", name=None, **kwargs):
        return make_test_dng(tmp_path / (name or f"{cfa}_{w}x{h}.dng"), h, w, cfa, **kwargs)
    return make


@pytest.fixture(scope="session")
def sample_dng():
    return sample_path()


def tiny_model(**changes):
    """The tiny preset with its zero-initialised output heads made random, so the
    network's output depends on every stage (a zero head would hide tiling effects)."""
    cfg = dataclasses.replace(get_preset("e4k-t-f16"), **changes) if changes else get_preset("e4k-t-f16")
    model = build_model(cfg, seed=0)
    torch.manual_seed(1)
    for conv in (model.decoder.head[-1], model.backbone.out):
        torch.nn.init.normal_(conv.weight, std=0.5)
    for role in ("gate_attn", "gate_ffn"):
        torch.nn.init.normal_(model.backbone.adaln.proj[role].weight, std=0.2)
        torch.nn.init.constant_(model.backbone.adaln.proj[role].bias, 0.5)
    return model.eval()


@pytest.fixture(scope="session")
def native_build(tmp_path_factory):
    """The native runner and kernels library, built once per session into a temporary
    folder (not the checkout's build/, so two test runs on one checkout do not race)."""
    pytest.importorskip("executorch")
    if os.environ.get("EDGE4K_TEST_NATIVE_BUILD"):   # one already built, e.g. `make sanitize`'s
        return Path(os.environ["EDGE4K_TEST_NATIVE_BUILD"])
    from edge4k.devices.native import build_host
    return build_host(tmp_path_factory.mktemp("native-host"))


# ---- a fake adb-connected phone (tests/fake_adb.py) --------------------------------

def fake_phone(root, devices="emu1", **extra):
    """An environment whose PATH starts with the fake adb, its phone sandboxed in root."""
    import os
    import sys
    from pathlib import Path
    root = Path(root)
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    adb = bin_dir / "adb"
    adb.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "fake_adb.py").read_text())
    adb.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_ADB_ROOT": str(root),
            "FAKE_ADB_DEVICES": devices, **extra}


@pytest.fixture
def on_fake_phone(tmp_path, monkeypatch):
    """on_fake_phone(devices="emu1", **env): this process's environment set up for the
    fake adb (PATH, FAKE_ADB_*), working directory tmp_path, ANDROID_SERIAL unset."""
    def setup(devices="emu1", **extra):
        for key, value in fake_phone(tmp_path, devices=devices, **extra).items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        monkeypatch.chdir(tmp_path)
        return tmp_path
    return setup


def edge4k_cli(args, env, cwd, timeout=900):
    """`edge4k ARGS` in a subprocess, the way a user runs it."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "edge4k", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


PHONE_FLAGS = ["--preset", "e4k-t-f16", "--tile", "128", "--overlap", "32", "--batch", "2", "--quant", "fp32",
               "--calib", "2", "--runs", "2", "--warmup", "1", "--idle-seconds", "0"]


@pytest.fixture(scope="session")
def phone_run(native_build, tmp_path_factory):
    """The whole `edge4k profile --target android-xnnpack --device android` flow,
    compile included, against the fake adb whose phone runs the host-built runner."""
    from types import SimpleNamespace
    root = tmp_path_factory.mktemp("phone")
    env = fake_phone(root)
    out = root / "out" / "android-xnnpack"
    done = edge4k_cli(["profile", "--target", "android-xnnpack", "--device", "android", "-o", str(out),
                       "--runner", str(native_build / "edge4k_runner"), *PHONE_FLAGS], env, cwd=root)
    return SimpleNamespace(done=done, out=out, root=root, env=env, runner=native_build / "edge4k_runner")


# ---- compiler builds ---------------------------------------------------------------

def build_below_the_floor_fails(model, spec, good_build, tmp_path, monkeypatch):
    """compile_build over an existing output folder, with a PSNR floor no build reaches: it
    must raise, remove its staging folder and leave the existing folder byte for byte.
    The target's lower step re-uses good_build's artifacts (same spec) instead of
    compiling again; the verification of them is the real one."""
    import shutil

    from edge4k.backends.base import PSNR_FLOOR
    from edge4k.backends.registry import get_target
    from edge4k.compiler.build import compile_build
    from edge4k.errors import Edge4KError
    from edge4k.models import NETWORK_STAGES
    from edge4k.runtime.manifest import MANIFEST, load_manifest

    out = tmp_path / "out"
    shutil.copytree(good_build, out)
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    stages = load_manifest(good_build)["stages"]

    def lower(self, model, spec, inputs, calib, out_dir, progress):
        for p in good_build.iterdir():
            if p.name != MANIFEST:
                (shutil.copytree if p.is_dir() else shutil.copy)(p, out_dir / p.name)
        return {s: {k: v for k, v in stages[s].items() if k not in ("inputs", "output")} for s in NETWORK_STAGES}

    monkeypatch.setattr(type(get_target(spec.target)), "lower", lower)
    monkeypatch.setitem(PSNR_FLOOR, spec.precision, 1000.0)
    with pytest.raises(Edge4KError, match=rf"build fails its accuracy check \(global [0-9.]+ dB < 1000, encoder [0-9.]+ "
                                          rf"dB < 1000, backbone [0-9.]+ dB < 1000, decoder [0-9.]+ dB < 1000 dB for "
                                          rf"{spec.precision}\)"):
        compile_build(model, spec, out, weights="test")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]          # no staging folder left beside it
    assert {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def build_with_latent_channels_4(source, dest):
    """A copy of an 8-channel build whose manifest agrees with itself (config.latent_channels 4 and
    every stage input to match) but not with its compiled programs: only the program's own shapes
    can tell."""
    import json
    import shutil
    shutil.copytree(source, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["config"]["latent_channels"] == 8
    manifest["config"]["latent_channels"] = 4
    for stage in ("backbone", "decoder"):
        manifest["stages"][stage]["inputs"][0]["shape"][1] = 4
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest

"""android-qnn through the native runner on this host: ONNX Runtime opened at run
time, the QNN execution provider's HTP emulation (QAIRT's x86 libraries from
onnxruntime-qnn) running the build's context binaries, against `edge4k run
--backend qnn-htp-sim` on the same build; then `edge4k profile --target android-qnn
--device android` on the fake adb phone, and the phone checks that stop a run
before anything is pushed."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tifffile
from conftest import build_with_latent_channels_4, edge4k_cli, fake_phone, make_test_dng
from PIL import Image

from edge4k.cli import main
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import read_raw, write_bayer
from edge4k.runtime.profile import validate_profile

pytest.importorskip("onnxruntime_qnn")

MIN_PSNR_DB = 50.0
SOC = "SM8550"
STAGES = ("global", "encoder", "backbone", "decoder")


def psnr(a, b, peak):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(peak ** 2 / mse)


@pytest.fixture(scope="module")
def qnn(native_build, tmp_path_factory):
    """A tiny android-qnn build (e4k-t-f16, 128-pixel tiles, SM8550), a 256x256 GRBG
    DNG handed over as a Bayer buffer, and the environment that shows the runner the
    onnxruntime wheels' libraries."""
    from types import SimpleNamespace

    from edge4k.devices.native import host_onnxruntime
    root = tmp_path_factory.mktemp("qnn")
    dng = make_test_dng(root / "frame.dng", 256, 256, cfa="GRBG")
    assert main(["compile", "--target", "android-qnn", "--preset", "e4k-t-f16", "--resolution", "256x256", "--tile",
                 "128", "--overlap", "32", "--calib", "2", "--soc", SOC, "-o", str(root / "build")]) == 0
    sidecar = write_bayer(read_raw(dng), root / "input" / "frame.json", source=dng)
    found = host_onnxruntime()
    env = {**os.environ, "EDGE4K_ORT_LIBRARY": str(found["onnxruntime"]),
           "EDGE4K_QNN_EP_LIBRARY": str(found["qnn_ep"])}
    return SimpleNamespace(root=root, dng=dng, build=root / "build", sidecar=sidecar, env=env, found=found,
                           runner=native_build / "edge4k_runner")


def run_runner(qnn, *args, env=None):
    return subprocess.run([str(qnn.runner), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env=env or qnn.env)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith(("edge4k_runner: error:", "edge4k: error:"))]


def test_runner_opens_onnxruntime_through_its_api_table(qnn):
    import onnxruntime
    about = json.loads(run_runner(qnn, "--about").stdout)
    assert about["engines"] == ["executorch", "onnxruntime"]
    assert about["onnxruntime"] == onnxruntime.__version__
    # The runner's own declarations of ONNX Runtime's API table (runtime/native/src/ort_api.h)
    # against this library: an error status round trip, the build string, the QNN device.
    assert about["api_table_check"] is True and about["onnxruntime_build"].startswith("ORT Build Info")
    assert about["qnn_devices"] == ["QNNExecutionProvider (Qualcomm)"]
    # Without any environment variable: build_host linked the wheels' libraries into the runner's lib/.
    bare = json.loads(run_runner(qnn, "--about", env={k: v for k, v in qnn.env.items()
                                                      if not k.startswith("EDGE4K_")}).stdout)
    assert bare["onnxruntime"] == onnxruntime.__version__ and bare["qnn_devices"] == about["qnn_devices"]
    assert bare["onnxruntime_library"] == str(qnn.runner.parent / "lib" / "libonnxruntime.so")
    assert os.path.realpath(bare["onnxruntime_library"]) == os.path.realpath(qnn.found["onnxruntime"])


def test_runner_without_onnxruntime_names_what_is_missing_and_where_it_looked(qnn, tmp_path):
    from types import SimpleNamespace
    env = {k: v for k, v in qnn.env.items() if not k.startswith("EDGE4K_")} | {"LD_LIBRARY_PATH": str(tmp_path)}
    bare = tmp_path / "bare"   # a copy of the runner with no lib/ beside it
    bare.mkdir()
    shutil.copy2(qnn.runner, bare / qnn.runner.name)
    qnn = SimpleNamespace(**{**vars(qnn), "runner": bare / qnn.runner.name})
    done = run_runner(qnn, "--artifacts", qnn.build, "--input", qnn.sidecar, "-o", tmp_path / "o.png", env=env)
    assert done.returncode == 1 and len(error_lines(done.stderr)) == 1
    assert f"ONNX Runtime (libonnxruntime.so) not found in {tmp_path}, " in done.stderr
    assert "EDGE4K_ORT_LIBRARY" in done.stderr and not (tmp_path / "o.png").exists()
    # One runner binary: without ONNX Runtime it still runs (and describes itself).
    assert "onnxruntime_missing" in json.loads(run_runner(qnn, "--about", env=env).stdout)


@pytest.fixture(scope="module")
def host_run(qnn):
    """The same build through the Python runtime's qnn-htp-sim backend, 16 and 8 bits."""
    out = qnn.root / "python"
    out.mkdir(exist_ok=True)
    for name in ("py.tif", "py.png"):
        assert main(["run", str(qnn.dng), "-o", str(out / name), "--backend", "qnn-htp-sim", "--artifacts",
                     str(qnn.build), "--soc", SOC]) == 0
    return out


def test_runner_matches_the_python_qnn_htp_sim_backend(qnn, host_run, tmp_path):
    done = run_runner(qnn, "--artifacts", qnn.build, "--input", qnn.sidecar, "-o", tmp_path / "c.tif", "--profile",
                      tmp_path / "c.json", "--runs", 2, "--warmup", 1, "--idle-seconds", 0)
    assert done.returncode == 0, done.stderr
    ours, theirs = tifffile.imread(tmp_path / "c.tif"), tifffile.imread(host_run / "py.tif")
    assert ours.shape == theirs.shape == (256, 256, 3) and ours.dtype == np.uint16
    assert psnr(ours, theirs, 65535) >= MIN_PSNR_DB
    assert run_runner(qnn, "--artifacts", qnn.build, "--input", qnn.sidecar, "-o", tmp_path / "c.png").returncode == 0
    assert psnr(np.asarray(Image.open(tmp_path / "c.png")), np.asarray(Image.open(host_run / "py.png")), 255) \
        >= MIN_PSNR_DB

    profile = json.loads((tmp_path / "c.json").read_text())
    validate_profile(profile)
    manifest = json.loads((qnn.build / "manifest.json").read_text())
    assert profile["device"]["backend"] == "onnxruntime" and profile["device"]["delegate"] == "qnn-htp"
    assert profile["timing"]["emulated"] is True and "emulation of the SM8550 HTP" in profile["timing"]["note"]
    assert profile["tiling"]["tiles"] == 9 and profile["output"]["bit_depth"] == 16
    for stage in STAGES:   # every stage on the HTP, with its own latency
        placed = manifest["stages"][stage]["placement"]
        assert profile["stages"][stage] == {
            "engine": "onnxruntime", "accelerator": "qnn-htp", "provider": "QNNExecutionProvider", "soc": SOC,
            "emulated": True, "cpu_fallback_allowed": False, "nodes": placed["nodes"], "htp_nodes": placed["nodes"],
            "cpu_nodes": 0}
        assert profile["latency_ms"][stage]["median"] > 0


def unplaceable_stage(build, stage="encoder"):
    """Replace a stage's context model by one with an op the HTP has no kernel for
    (Det), keeping its inputs, output and the manifest's all-on-HTP placement."""
    import onnx
    from onnx import TensorProto, helper
    path = build / f"{stage}.ctx.onnx"
    model = onnx.load(path)
    inp, out = model.graph.input[0], model.graph.output[0]
    in_shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_shape = [d.dim_value for d in out.type.tensor_type.shape.dim]
    assert out_shape[1] % in_shape[1] == 0
    nodes = [helper.make_node("Det", [inp.name], ["det"]),                               # (N, C)
             helper.make_node("Unsqueeze", ["det", "axes"], ["col"]),                   # (N, C, 1, 1)
             helper.make_node("Concat", ["col"] * (out_shape[1] // in_shape[1]), ["cat"], axis=1),
             helper.make_node("Expand", ["cat", "shape"], [out.name])]
    graph = helper.make_graph(nodes, stage, [helper.make_tensor_value_info(inp.name, TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(out.name, TensorProto.FLOAT, out_shape)],
                              initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3]),
                                           helper.make_tensor("shape", TensorProto.INT64, [4], out_shape)])
    bad = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    bad.ir_version = 10
    onnx.save(bad, path)
    # A build made this way, not one damaged afterwards: its manifest records the new file's digest.
    from edge4k.files import sha256_file
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["stages"][stage]["file_sha256"] = sha256_file(path)
    (build / "manifest.json").write_text(json.dumps(manifest))


def test_a_stage_the_htp_cannot_place_is_one_line(qnn, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(qnn.build, build)
    unplaceable_stage(build)
    done = run_runner(qnn, "--artifacts", build, "--input", qnn.sidecar, "-o", tmp_path / "o.png")
    assert done.returncode == 1
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and done.stderr.count("\n") == 1, done.stderr
    nodes = json.loads((build / "manifest.json").read_text())["stages"]["encoder"]["placement"]["nodes"]
    assert f"cannot place all of stage encoder, which the build placed wholly on the HTP ({nodes} nodes)" in errors[0]
    assert "fallback to CPU EP has been explicitly disabled" in errors[0]
    assert not (tmp_path / "o.png").exists()


# ---- the phone flow on the fake adb phone (this host, x86-64) ----------------------

@pytest.fixture(scope="module")
def qnn_libs(qnn):
    """What a user puts in --qnn-libs for an x86-64 phone: ONNX Runtime, the QNN EP
    plugin (with the C++ runtime its wheel bundles) and QAIRT's x86 HTP libraries."""
    libs = qnn.root / "qnn-libs"
    libs.mkdir()
    (libs / "libonnxruntime.so").symlink_to(qnn.found["onnxruntime"])
    plugin = qnn.found["qnn_ep"]
    (libs / plugin.name).symlink_to(plugin)
    for name in ("libQnnHtp.so", "libQnnSystem.so"):
        (libs / name).symlink_to(plugin.parent / name)
    for bundled in (plugin.parent.parent / "onnxruntime_qnn.libs").glob("*.so*"):
        (libs / bundled.name).symlink_to(bundled)
    return libs


def phone_env(root, devices="emu1", props=None):
    env = fake_phone(root, devices=devices, FAKE_ADB_PROPS=json.dumps({"ro.soc.model": SOC, **(props or {})}))
    return {k: v for k, v in env.items() if not k.startswith("EDGE4K_")}   # the phone finds its own libraries


def profile_args(qnn, out, *extra):
    return ["profile", str(qnn.dng), "--target", "android-qnn", "--device", "android", "-o", str(out), "--artifacts",
            str(qnn.build), "--runner", str(qnn.runner), "--runs", "1", "--warmup", "0", "--idle-seconds", "0", *extra]


def adb_log(root):
    path = root / "adb.log"
    return path.read_text().splitlines() if path.exists() else []


def test_android_qnn_on_the_fake_phone_end_to_end(qnn, qnn_libs, host_run, tmp_path):
    out = tmp_path / "out"
    done = edge4k_cli(profile_args(qnn, out, "--qnn-libs", str(qnn_libs)), phone_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    profile = json.loads((out / "profile.json").read_text())
    validate_profile(profile)
    assert profile["device"]["backend"] == "onnxruntime" and profile["timing"]["emulated"] is True
    assert all(profile["stages"][s]["accelerator"] == "qnn-htp" for s in STAGES)
    assert psnr(np.asarray(Image.open(out / "output.png")), np.asarray(Image.open(host_run / "py.png")), 255) \
        >= MIN_PSNR_DB
    log = "\n".join(adb_log(tmp_path))
    for pushed in ("lib/libonnxruntime.so", "lib/libQnnHtp.so", "lib/libonnxruntime_providers_qnn.so",
                   "build/encoder.ctx.onnx"):
        assert f"/data/local/tmp/edge4k/{pushed}" in log, pushed
    assert "ADSP_LIBRARY_PATH=" in log and adb_log(tmp_path)[-1] == "-s emu1 shell rm -rf /data/local/tmp/edge4k"
    assert not (tmp_path / "phone" / "data" / "local" / "tmp" / "edge4k").exists()
    assert "decoder" in done.stdout and "emulated" in done.stdout


@pytest.mark.parametrize("case, needle", [
    ("soc", "the build holds context binaries for SM8550 (Snapdragon 8 Gen 2), but phone emu1 reports "
            "ro.soc.model=SM8650; recompile with --soc SM8650"),
    ("skel", "lacks libQnnHtpV73Stub.so, libQnnHtpV73Skel.so, needed on emu1 (arm64-v8a, SM8550 HTP v73); "
             "nothing was pushed"),
    ("qairt", "the build's context binaries were made with QAIRT 2.40.0, but"),
    ("nolibs", "android-qnn on a phone needs ONNX Runtime for Android and QAIRT"),
])
def test_phone_checks_stop_before_anything_is_pushed(qnn, qnn_libs, tmp_path, case, needle):
    build, props, libs = qnn.build, {}, ["--qnn-libs", str(qnn_libs)]
    if case == "soc":
        props = {"ro.soc.model": "SM8650"}
    elif case == "skel":
        props = {"ro.product.cpu.abi": "arm64-v8a"}
    elif case == "qairt":
        build = tmp_path / "build"
        shutil.copytree(qnn.build, build)
        manifest = json.loads((build / "manifest.json").read_text())
        manifest["qnn"]["qairt"] = "2.40.0"
        (build / "manifest.json").write_text(json.dumps(manifest))
    else:
        libs = []
    args = profile_args(qnn, tmp_path / "out", *libs)
    args[args.index("--artifacts") + 1] = str(build)
    done = edge4k_cli(args, phone_env(tmp_path, props=props), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert needle in done.stderr
    if case == "qairt":
        assert "is QAIRT 2.51.0" in done.stderr
    assert not any(" push " in line or "mkdir" in line for line in adb_log(tmp_path))
    assert not (tmp_path / "phone" / "data").exists() and not (tmp_path / "out" / "profile.json").exists()


def test_dry_run_shows_the_qnn_libraries_and_library_paths(qnn, qnn_libs, tmp_path):
    done = edge4k_cli(profile_args(qnn, tmp_path / "out", "--qnn-libs", str(qnn_libs), "--dry-run"),
                      phone_env(tmp_path, devices=""), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for needle in ("push", "libQnnHtp.so /data/local/tmp/edge4k/lib/libQnnHtp.so", "encoder.ctx.onnx",
                   "LD_LIBRARY_PATH=/data/local/tmp/edge4k/lib", "ADSP_LIBRARY_PATH=",
                   "/data/local/tmp/edge4k/lib;/system/lib/rfsa/adsp;/system/vendor/lib/rfsa/adsp;/dsp",
                   "./edge4k_runner --artifacts build"):
        assert needle in done.stdout, needle
    assert adb_log(tmp_path) == []


def test_the_c_api_runs_the_qnn_build(qnn, native_build, host_run, tmp_path):
    """libedge4k's C test program (tests/native/capi_test.c) on the android-qnn build."""
    from edge4k.devices.native import CAPI_TEST
    done = subprocess.run([str(native_build / CAPI_TEST), str(qnn.build), "256", "256", "e4k-t-f16",
                           str(tmp_path / "c.rgb")], capture_output=True, text=True, timeout=600, env=qnn.env)
    last = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0 and last.endswith(" passed, 0 failed"), done.stdout + done.stderr


def test_a_stage_the_phone_cannot_place_fails_the_run_and_cleans_the_phone(qnn, qnn_libs, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(qnn.build, build)
    unplaceable_stage(build, "backbone")
    args = profile_args(qnn, tmp_path / "out", "--qnn-libs", str(qnn_libs))
    args[args.index("--artifacts") + 1] = str(build)
    done = edge4k_cli(args, phone_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("edge4k: error: the runner failed on emu1: ")
    assert "cannot place all of stage backbone, which the build placed wholly on the HTP" in done.stderr
    assert adb_log(tmp_path)[-1] == "-s emu1 shell rm -rf /data/local/tmp/edge4k"
    assert not (tmp_path / "phone" / "data" / "local" / "tmp" / "edge4k").exists()
    assert not (tmp_path / "out" / "profile.json").exists()


def test_both_runtimes_refuse_a_manifest_that_agrees_with_itself_but_not_with_the_program(qnn, tmp_path):
    """As for ExecuTorch builds (test_native_runner.py): latent_channels 4 and every stage input to
    match, while the context binaries' latent has 8 channels. The host's qnn-htp-sim backend reads
    each ONNX Runtime session's own shapes and refuses it in one line; so does the runner."""
    from edge4k.backends.registry import open_build
    build = build_with_latent_channels_4(qnn.build, tmp_path / "build")
    with pytest.raises(Edge4KError, match=r"encoder.* encoder returns \[1, 8, 8, 8\] in the program, but "
                                          r"\[1, 4, 8, 8\] from manifest.json's config and tiling"):
        open_build(build)
    done = run_runner(qnn, "--artifacts", build, "--input", qnn.sidecar, "-o", tmp_path / "o.png")
    assert done.returncode == 1 and len(error_lines(done.stderr)) == 1, done.stderr
    assert "in the program" in error_lines(done.stderr)[0], done.stderr

"""A build folder is untrusted input: the host refuses a malformed manifest in one line naming
the field, its value and the file, with the ranges of runtime/limits.json (which the native
runner compiles in too: tests/test_native_runner.py checks its messages against the same file)."""
import json
import shutil
from pathlib import Path

import pytest

from edge4k.cli import main
from edge4k.errors import Edge4KError
from edge4k.runtime.limits import check_manifest, limits
from edge4k.runtime.manifest import load_manifest

SEED = Path(__file__).parent / "fuzz" / "corpus" / "manifest" / "tiny-tiled-fp32.json"


@pytest.fixture
def build(tmp_path):
    folder = tmp_path / "build"
    folder.mkdir()
    shutil.copy(SEED, folder / "manifest.json")
    return folder


def edit(build, change):
    m = json.loads((build / "manifest.json").read_text())
    change(m)
    (build / "manifest.json").write_text(json.dumps(m))


def test_the_seed_manifest_is_valid(build):
    assert load_manifest(build)["config"]["thumb_size"] == 32


def test_limits_file_is_packaged_and_names_every_checked_field():
    lim = limits()
    assert lim["config"]["compression"]["choices"] == [8, 16, 32]
    assert {"tile", "overlap", "batch", "padded"} <= set(lim["tiling"])
    assert {"threads", "runs", "warmup"} <= set(lim["runner"])


def _set(*path_and_value):
    *path, value = path_and_value

    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def _drop(*path):
    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


# (change, words the one-line error must hold): the 14 malformed manifests of issue 27 and more.
MALFORMED = [
    (_set("config", "compression", 0), "config.compression is 0"),
    (_set("config", "thumb_size", 0), "config.thumb_size is 0, outside 4..512"),
    (_set("config", "thumb_size", 16), "stages.global.inputs"),
    (_set("tiling", "tile", 64), "tiling.tile_height is 128, but tiling.tile is 64"),
    (_set("tiling", "batch", 1), "stages.encoder.inputs"),
    (_set("tiling", "batch", 2**40), "tiling.batch is 1099511627776, outside 1..64"),
    (_set("tiling", "overlap", -16), "tiling.overlap is -16"),
    (_set("tiling", "overlap", 128), "not smaller than tiling.tile"),
    (_set("tiling", "padded", [528]), "tiling.padded must be [height, width]"),
    (_set("tiling", "padded", "528x528"), "tiling.padded must be a list"),
    (_set("tiling", "native", "no"), "tiling.native must be a boolean"),
    (_set("config", "latent_channels", 1.5), "config.latent_channels must be an integer"),
    (_set("config", "enc_widths", None), "config.enc_widths must be a list"),
    (_set("config", "global_dim", True), "config.global_dim must be an integer"),
    (_drop("config"), "config must be a JSON object"),
    (_drop("tiling", "batch"), "tiling.batch must be an integer, got None"),
    (_set("stages", "decoder", "model.pte"), "stages.decoder must be a JSON object"),
    (_set("stages", "global", "file", "../../etc/passwd"), "is not a file name inside the build"),
    (_set("stages", "global", "file", ""), "is not a file name inside the build"),
    (_set("stages", "encoder", "inputs", [{"shape": [2, 4, 32, 32]}]), "stages.encoder.inputs have shapes"),
    (_set("stages", "global", "file_sha256", "abc"), "file_sha256 must be 64 hex digits"),
    (_set("precision", ""), "precision is empty"),
    (_set("versions", []), "versions must be a JSON object"),
    (_set("weights", 7), "weights must be a string"),
]


@pytest.mark.parametrize("change,words", MALFORMED, ids=[w for _, w in MALFORMED])
def test_malformed_manifest_is_one_line(build, change, words):
    edit(build, change)
    with pytest.raises(Edge4KError) as e:
        load_manifest(build)
    message = str(e.value)
    assert words in message and "\n" not in message and str(build / "manifest.json") in message


@pytest.mark.parametrize("content", [b"\xff\xfe{not utf-8", b"[" * 100000 + b"]" * 100000, b"[1, 2]", b"7",
                                     b'{"schema": "edge4k.manifest/2", "config": {"compression": 1e400}}'])
def test_unreadable_manifest_is_one_line(build, content):
    (build / "manifest.json").write_bytes(content)
    with pytest.raises(Edge4KError) as e:
        load_manifest(build)
    assert "\n" not in str(e.value) and "manifest.json" in str(e.value)


def test_cli_refuses_a_malformed_build_in_one_line(build, sample_dng, tmp_path, capsys):
    edit(build, _set("config", "compression", 0))
    assert main(["run", sample_dng, "-o", str(tmp_path / "o.png"), "--backend", "executorch",
                 "--artifacts", str(build)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.compression is 0" in err[0]
    assert not (tmp_path / "o.png").exists()


def test_check_manifest_refuses_a_non_object():
    with pytest.raises(Edge4KError, match="the manifest must be a JSON object"):
        check_manifest([], "x/manifest.json")

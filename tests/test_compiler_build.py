"""compiler/build.py steps that need no toolchain: check_build's refusal of a model that
is not the one a build was compiled from."""
import json
from pathlib import Path

import pytest
from conftest import tiny_model

from edge4k.compiler.build import check_build
from edge4k.errors import Edge4KError
from edge4k.runtime.manifest import MANIFEST, MANIFEST_SCHEMA


def test_check_refuses_a_model_whose_config_differs_from_the_build(tmp_path, make_dng):
    built = tiny_model()
    manifest = json.loads((Path(__file__).parent / "fuzz" / "corpus" / "manifest" / "tiny-tiled-fp32.json").read_text())
    assert manifest["schema"] == MANIFEST_SCHEMA and manifest["config_hash"] == built.cfg.config_hash()
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))   # a tiny build's manifest, without its program
    other = tiny_model(attention="none")       # same preset name, another architecture
    assert other.cfg.name == built.cfg.name and other.cfg.config_hash() != built.cfg.config_hash()
    with pytest.raises(Edge4KError, match=rf"{tmp_path} holds preset e4k-t-f16 \({built.cfg.config_hash()}\), not "
                                          rf"the model given \(e4k-t-f16, {other.cfg.config_hash()}\)"):
        check_build(other, tmp_path, images=[make_dng()], samples=1)
    # the model it was built from gets past the check, to opening the (here absent) program
    with pytest.raises(Edge4KError, match="stage file model.pte for global is missing"):
        check_build(built, tmp_path, images=[make_dng()], samples=1)

"""A build folder's manifest.json: its file name, schema, the stages' input and output names,
and loading it (every field checked against runtime/limits.json before anything trusts it).
The compiler writes it (compiler/build.py), every backend and the native runner read it."""
from __future__ import annotations

import json
import os
from pathlib import Path

from edge4k.errors import Edge4KError
from edge4k.runtime.limits import check_manifest

MANIFEST = "manifest.json"
# /2: with the model's raw_skip the decoder stage returns its residual and the runtime adds the classical
# base (models.e4k.add_classical_base); /1 builds returned base + residual and would get the base twice.
MANIFEST_SCHEMA = "edge4k.manifest/2"
OLD_SCHEMAS = ("edge4k.manifest/1",)
INPUT_NAMES = {"global": ("thumb", "meta"), "encoder": ("packed",),
               "backbone": ("latent", "g"), "decoder": ("latent", "packed")}
OUTPUT_NAMES = {"global": "g", "encoder": "latent", "backbone": "latent_out", "decoder": "rgb_residual"}

def load_manifest(artifacts: str | os.PathLike) -> dict:
    path = Path(artifacts) / MANIFEST
    if not path.is_file():
        raise Edge4KError(f"no {MANIFEST} in {artifacts}: not an Edge4K build folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:   # not JSON, not UTF-8, or nested past Python's stack
        raise Edge4KError(f"{path} is not valid JSON: {str(e).splitlines()[0][:200]}") from None
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if schema in OLD_SCHEMAS:
        raise Edge4KError(f"{path}: built before the decoder returned its residual ({schema}); recompile it")
    if schema != MANIFEST_SCHEMA:
        raise Edge4KError(f"{path}: schema {schema!r}, expected {MANIFEST_SCHEMA}")
    return check_manifest(manifest, str(path))


def is_build_folder(path: Path) -> bool:
    """Whether path holds an Edge4K build: a manifest.json of MANIFEST_SCHEMA or an older one (valid or
    not otherwise), so a recompile may replace it."""
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("schema") in (MANIFEST_SCHEMA, *OLD_SCHEMAS)
    except (OSError, ValueError, RecursionError, AttributeError):
        return False

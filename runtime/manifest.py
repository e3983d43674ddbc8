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
MANIFEST_SCHEMA = "edge4k.manifest/1"
INPUT_NAMES = {"global": ("thumb", "meta"), "encoder": ("packed",),
               "backbone": ("latent", "g"), "decoder": ("latent", "packed")}
OUTPUT_NAMES = {"global": "g", "encoder": "latent", "backbone": "latent_out", "decoder": "rgb"}

def load_manifest(artifacts: str | os.PathLike) -> dict:
    path = Path(artifacts) / MANIFEST
    if not path.is_file():
        raise Edge4KError(f"no {MANIFEST} in {artifacts}: not an Edge4K build folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:   # not JSON, not UTF-8, or nested past Python's stack
        raise Edge4KError(f"{path} is not valid JSON: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise Edge4KError(f"{path}: schema {schema!r}, expected {MANIFEST_SCHEMA}")
    return check_manifest(manifest, str(path))


def is_build_folder(path: Path) -> bool:
    """Whether path holds an Edge4K build: a manifest.json of MANIFEST_SCHEMA (valid or not otherwise)."""
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("schema") == MANIFEST_SCHEMA
    except (OSError, ValueError, RecursionError, AttributeError):
        return False

"""The ranges of a build's fields, from runtime/limits.json: the one list both runtimes check
(the native runner compiles the same file in). A build folder is untrusted input, so its
manifest is checked here, field by field, before anything is sized from it: every failure is
one line naming the field, the value and the file."""
from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources

from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES

# The only fields of a manifest a runtime reads, with their types (check_manifest).
_TEXT_FIELDS = ("target", "backend", "preset", "config_hash", "weights", "precision")
_CONFIG_TEXT = ("name", "attention", "activation")
_CONFIG_FLAGS = ("separable", "raw_skip")


@cache
def limits() -> dict:
    return json.loads(resources.files("edge4k.runtime").joinpath("limits.json").read_text())


def check_value(group: str, key: str, value, where: str, *, integer: bool = True) -> None:
    """Refuse a value outside limits.json's range for group.key (or of the wrong type)."""
    rule = limits()[group][key]
    name = f"{group}.{key}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (integer and not isinstance(value, int)) or not math.isfinite(value):
        raise Edge4KError(f"{where}: {name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if "choices" in rule and value not in rule["choices"]:
        raise Edge4KError(f"{where}: {name} is {value!r}, expected one of {rule['choices']}")
    if "min" in rule and not rule["min"] <= value <= rule["max"]:
        raise Edge4KError(f"{where}: {name} is {value!r}, outside {rule['min']}..{rule['max']}")


def _expect(value, kind, name: str, where: str):
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise Edge4KError(f"{where}: {name} must be a {_KIND_NAMES.get(kind, 'value')}, got {value!r}"[:300])
    return value


_KIND_NAMES = {dict: "JSON object", list: "list", str: "string", bool: "boolean", int: "integer"}


def expected_shapes(config: dict, tiling: dict) -> dict[str, list[list[int]]]:
    """Each network stage's input shapes as the runtimes allocate their buffers
    (compiler.build.example_inputs, from the manifest's own fields)."""
    th, tw, b, f = tiling["tile_height"], tiling["tile_width"], tiling["batch"], config["compression"]
    packed = [b, 4, th // 2, tw // 2]
    latent = [b, config["latent_channels"], th // f, tw // f]
    return {"global": [[1, 4, config["thumb_size"], config["thumb_size"]], [1, config["meta_dim"]]],
            "encoder": [packed], "backbone": [latent, [1, config["global_dim"]]], "decoder": [latent, packed]}


def expected_outputs(config: dict, tiling: dict) -> dict[str, list[int]]:
    """Each network stage's output shape as the runtimes read it."""
    th, tw, b, f = tiling["tile_height"], tiling["tile_width"], tiling["batch"], config["compression"]
    latent = [b, config["latent_channels"], th // f, tw // f]
    return {"global": [1, config["global_dim"]], "encoder": latent, "backbone": latent, "decoder": [b, 3, th, tw]}


def check_manifest(m, where: str) -> dict:
    """Every field a runtime reads from manifest m (already parsed JSON), its type and range,
    and each stage's input shapes against the buffers the runtimes allocate. Returns m."""
    _expect(m, dict, "the manifest", where)
    for key in _TEXT_FIELDS:
        if not _expect(m.get(key), str, key, where):
            raise Edge4KError(f"{where}: {key} is empty")
    if m.get("delegate") is not None:
        _expect(m["delegate"], str, "delegate", where)
    _expect(m.get("versions"), dict, "versions", where)
    cfg = _expect(m.get("config"), dict, "config", where)
    for key in _CONFIG_TEXT:
        _expect(cfg.get(key), str, f"config.{key}", where)
    for key in _CONFIG_FLAGS:
        _expect(cfg.get(key), bool, f"config.{key}", where)
    for key in limits()["config"]:
        value = cfg.get(key)
        for v in _expect(value, list, f"config.{key}", where) if key.endswith("widths") else [value]:
            check_value("config", key, v, where, integer=key != "mlp_ratio")
    t = _expect(m.get("tiling"), dict, "tiling", where)
    native = _expect(t.get("native"), bool, "tiling.native", where)
    for key in ("overlap", "batch", "tile_height", "tile_width"):
        check_value("tiling", key, t.get(key), where)
    if native:
        if t.get("tile") is not None:
            raise Edge4KError(f"{where}: tiling.tile is {t['tile']!r} in a native build, expected null")
    else:
        check_value("tiling", "tile", t.get("tile"), where)
        for key in ("tile_height", "tile_width"):
            if t[key] != t["tile"]:
                raise Edge4KError(f"{where}: tiling.{key} is {t[key]}, but tiling.tile is {t['tile']}")
    padded = _expect(t.get("padded"), list, "tiling.padded", where)
    if len(padded) != 2:
        raise Edge4KError(f"{where}: tiling.padded must be [height, width], got {padded!r}")
    for v in padded:
        check_value("tiling", "padded", v, where)
    f = cfg["compression"]
    for key in ("tile_height", "tile_width", "overlap"):
        if t[key] % f:
            raise Edge4KError(f"{where}: tiling.{key} {t[key]} is not a multiple of config.compression {f}")
    if native and [t["tile_height"], t["tile_width"]] != padded:
        raise Edge4KError(f"{where}: a native build's tile {t['tile_height']}x{t['tile_width']} is not its padded "
                          f"frame {padded[0]}x{padded[1]}")
    if not native and t["overlap"] >= t["tile"]:
        raise Edge4KError(f"{where}: tiling.overlap {t['overlap']} is not smaller than tiling.tile {t['tile']}")
    stages = _expect(m.get("stages"), dict, "stages", where)
    expected = expected_shapes(cfg, t)
    for stage in NETWORK_STAGES:
        entry = _expect(stages.get(stage), dict, f"stages.{stage}", where)
        file = _expect(entry.get("file"), str, f"stages.{stage}.file", where)
        if not file or file.startswith(("/", "\\")) or ".." in file.replace("\\", "/").split("/"):
            raise Edge4KError(f"{where}: stages.{stage}.file {file!r} is not a file name inside the build")
        digest = entry.get("file_sha256")
        if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                       and all(c in "0123456789abcdef" for c in digest)):
            raise Edge4KError(f"{where}: stages.{stage}.file_sha256 must be 64 hex digits, got {digest!r}"[:300])
        inputs = _expect(entry.get("inputs"), list, f"stages.{stage}.inputs", where)
        shapes = [_expect(i, dict, f"stages.{stage}.inputs", where).get("shape") for i in inputs]
        if shapes != expected[stage]:
            raise Edge4KError(f"{where}: stages.{stage}.inputs have shapes {shapes}, but the config and tiling "
                              f"give {expected[stage]}"[:400])
    return m

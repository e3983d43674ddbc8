"""Qualcomm SoCs the android-qnn target compiles context binaries for.

A QNN HTP context binary is built for one Hexagon architecture (and tuned for one
SoC); the QNN execution provider takes them as its `soc_model` and `htp_arch`
options. The numbers are QAIRT's SoC ids."""
from __future__ import annotations

from dataclasses import dataclass

from edge4k.errors import Edge4KError


@dataclass(frozen=True)
class Soc:
    name: str          # Qualcomm part number, e.g. SM8650
    marketing: str     # what phones advertise
    soc_model: int     # QAIRT SoC id (QNN EP option soc_model)
    htp_arch: int      # Hexagon tensor processor version (QNN EP option htp_arch: 73 = v73)


SOCS = {s.name: s for s in (
    Soc("SM8550", "Snapdragon 8 Gen 2", 43, 73),
    Soc("SM8650", "Snapdragon 8 Gen 3", 57, 75),
    Soc("SM8750", "Snapdragon 8 Elite", 69, 79),
)}
DEFAULT_SOC = "SM8650"


def get_soc(name: str) -> Soc:
    key = name.upper()
    if key not in SOCS:
        raise Edge4KError(f"unknown SoC '{name}'; valid SoCs: {', '.join(SOCS)}")
    return SOCS[key]

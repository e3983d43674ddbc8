"""The E4K model family: stages, shared blocks, presets."""
from edge4k.models.config import DEFAULT_PRESET, PRESETS, E4KConfig, get_preset
from edge4k.models.e4k import NETWORK_STAGES, STAGES, E4KNet, add_classical_base, build_model

__all__ = ["DEFAULT_PRESET", "E4KConfig", "PRESETS", "get_preset", "NETWORK_STAGES", "STAGES", "E4KNet",
           "add_classical_base", "build_model"]

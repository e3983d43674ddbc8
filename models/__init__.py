"""The E4K model family: stages, shared blocks, presets."""
from .config import DEFAULT_PRESET, E4KConfig, PRESETS, get_preset
from .e4k import NETWORK_STAGES, STAGES, E4KNet, build_model

__all__ = ["DEFAULT_PRESET", "E4KConfig", "PRESETS", "get_preset", "NETWORK_STAGES", "STAGES", "E4KNet", "build_model"]

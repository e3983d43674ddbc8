"""A roofline cost model for phones: what a network stage costs (MACs and bytes moved,
counted from the model at a tile shape) and what a phone SoC can do (published peak
throughput and memory bandwidth, each figure with the URL it came from).

    seconds(stage) = max(MACs / (utilisation x peak MAC/s), bytes / (bw_utilisation x bandwidth))

This is an ESTIMATE, never a measurement: vendors' peaks are marketing maxima, real
kernels reach a fraction of them (the utilisations below are assumptions, stated with
every estimate), and the bytes are bounds, not traces. Measure on a phone with
`make android-xnnpack` (README, "Profiling on a phone") to replace it.

Sourcing rule: a figure is here only with the page it was read from. Qualcomm does not
publish TOPS for its phone NPUs or FLOPS for its phone GPUs, and Apple does not
publish memory bandwidth; where no page gave a figure, or pages disagree, the figure is
left out and `missing` says so, rather than guessed. Third-party pages are marked.
CPUs: vendors publish core types and clocks, not throughput, so the table keeps the
published configuration and the CPU path is left to measurement on the phone.
1 MAC = 2 operations (TOPS and TFLOPS count multiplies and adds separately).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from edge4k.models import NETWORK_STAGES

# Assumed fractions of peak that the stages reach (ESTIMATE inputs, stated in every report):
# small-channel, depthwise and pixel-shuffle layers keep accelerators far below peak.
COMPUTE_UTILISATION = 0.3
BANDWIDTH_UTILISATION = 0.7
BYTES_PER_ELEMENT = {"int8": 1, "fp16": 2}


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str            # URL of the page the figure was read from
    note: str = ""


@dataclass(frozen=True)
class ComputeUnit:
    name: str              # e.g. "Hexagon NPU"
    kind: str              # "npu" or "gpu"
    precision: str         # precision the peak is quoted for, and the bytes per element the estimate uses
    peak_tops: Figure      # tera-operations per second

    @property
    def peak_macs_per_s(self) -> float:
        return self.peak_tops.value * 1e12 / 2


@dataclass(frozen=True)
class SocSpec:
    name: str
    marketing: str
    cpu: Figure             # value: number of cores; unit: the published configuration
    memory: str             # LPDDR type and speed
    memory_source: str
    bandwidth: Figure | None    # GB/s
    units: tuple[ComputeUnit, ...] = ()
    missing: tuple[str, ...] = field(default_factory=tuple)   # what could not be sourced, and why

    def to_dict(self) -> dict:
        return asdict(self)


_GIST_SNAPDRAGON = "https://gist.github.com/EwoutH/754fa40ad9ddc93d55084fc46569c759"   # third-party table
_TELSAT_8_ELITE = "https://telsat.az/en/news/Snapdragon-8-Elite-predstavlen-Samyy-bystryy-mobilnyy-protsessor-v-mire"
_GROKIPEDIA_A17 = "https://grokipedia.com/page/Apple_A17"
_NO_QUALCOMM_TOPS = "Qualcomm publishes only relative NPU gains for its phone SoCs, no TOPS"
_NO_QUALCOMM_GPU = "Qualcomm publishes no Adreno FLOPS; no page found with a figure"

SOCS: dict[str, SocSpec] = {s.name: s for s in (
    SocSpec(
        name="SM8550", marketing="Snapdragon 8 Gen 2",
        cpu=Figure(8, "1x Cortex-X3 3.2 GHz, 2x Cortex-A715 + 2x Cortex-A710 2.8 GHz, 3x Cortex-A510 2.0 GHz",
                   "https://nanoreview.net/en/soc/qualcomm-snapdragon-8-gen-2", "third-party"),
        memory="LPDDR5X, 4 x 16-bit channels at 4200 MHz", memory_source=_GIST_SNAPDRAGON,
        bandwidth=Figure(67.2, "GB/s", _GIST_SNAPDRAGON,
                         "third-party; also "
                         "https://prohardver.hu/hir/qualcomm_snapdragon_8_gen_2_soc_sugarkovetes.html"),
        missing=(f"NPU peak: {_NO_QUALCOMM_TOPS} (Qualcomm: 'up to 4.35x' the previous generation)",
                 f"GPU peak: {_NO_QUALCOMM_GPU}")),
    SocSpec(
        name="SM8650", marketing="Snapdragon 8 Gen 3",
        cpu=Figure(8, "1x Cortex-X4 3.3 GHz, 3x Cortex-A720 3.2 GHz, 2x Cortex-A720 3.0 GHz, 2x Cortex-A520 2.3 GHz",
                   "https://trendgrnd.com/qualcomms-snapdragon-8-gen-3-infuses-high-performance-ai-for-upcoming-"
                   "flagship-smartphones/", "reprints Qualcomm's specification list"),
        memory="LPDDR5X, 4 x 16-bit channels at 4800 MHz", memory_source=_GIST_SNAPDRAGON,
        bandwidth=Figure(76.8, "GB/s", _GIST_SNAPDRAGON, "third-party; runlocalai.co lists the same 76.8 GB/s"),
        units=(ComputeUnit("Hexagon NPU", "npu", "int8",
                           Figure(45, "TOPS", "https://runlocalai.co/hardware/snapdragon-8-gen-3",
                                  f"third-party ('45 TOPS INT8'); {_NO_QUALCOMM_TOPS}")),),
        missing=(f"GPU peak: {_NO_QUALCOMM_GPU}",)),
    SocSpec(
        name="SM8750", marketing="Snapdragon 8 Elite",
        cpu=Figure(8, "2x Oryon prime 4.32 GHz, 6x Oryon performance 3.53 GHz", _TELSAT_8_ELITE),
        memory="LPDDR5X at 5300 MHz", memory_source=_TELSAT_8_ELITE,
        bandwidth=Figure(84.8, "GB/s", _TELSAT_8_ELITE,
                         "derived: 2 transfers x 5300 MHz x 8 bytes, assuming the 4 x 16-bit bus of SM8550/SM8650 "
                         "(the same formula gives their 67.2 and 76.8 GB/s); runlocalai.co lists 90 GB/s"),
        missing=("NPU peak: third-party figures disagree (https://runlocalai.co/hardware/snapdragon-8-elite gives "
                 f"both 45 and ~80 TOPS INT8); {_NO_QUALCOMM_TOPS} (Qualcomm: '45% faster' than 8 Gen 3)",
                 f"GPU peak: {_NO_QUALCOMM_GPU}")),
    SocSpec(
        name="A17 Pro", marketing="Apple, iPhone 15 Pro",
        cpu=Figure(6, "2 performance + 4 efficiency cores",
                   "https://punto-informatico.it/apple-a17-pro-nuovo-processore-gaming"),
        memory="LPDDR5, 8 GB", memory_source=_GROKIPEDIA_A17,
        bandwidth=None,
        units=(ComputeUnit("16-core Neural Engine", "npu", "fp16",
                           Figure(35, "TOPS", _GROKIPEDIA_A17,
                                  "Apple's figure from the iPhone 15 Pro launch (also https://www.tablety.pl/"
                                  "apple_ios/2023-09-13/apple-a17-pro-iphone-15-pro-specyfikacja/); Apple does not "
                                  "say for which precision; Core ML builds are fp16, so fp16 bytes are used")),
               ComputeUnit("6-core GPU", "gpu", "fp16",
                           Figure(2.15, "TFLOPS",
                                  "https://hmc-tech.com/gpu/apple-6-core-a17-pro-vs-imagination-img-axe-2-16",
                                  "third-party (768 ALUs at 1398 MHz), FP16 = FP32 rate"))),
        missing=("memory bandwidth: Apple publishes none and no page found gave one; the memory term is left out",)),
)}


@dataclass(frozen=True)
class Anchor:
    """A published on-device RAW-to-RGB network's throughput, to set an estimate beside."""
    name: str
    megapixels: float
    seconds: float         # "under" this many seconds, as the paper states it
    hardware: str
    source: str

    @property
    def megapixels_per_s(self) -> float:
        return self.megapixels / self.seconds


ANCHORS = (
    Anchor("MicroISP", 32, 1.0, "recent smartphones, standard mobile ML libraries",
           "https://arxiv.org/abs/2211.06770"),
    Anchor("PyNET-V2 Mobile", 12, 0.5, "smartphone NPU / APU (1.5 s without one)",
           "https://arxiv.org/abs/2211.06263"),
)


# --- the workload: MACs and bytes per stage, counted on the meta device (no real compute) ---

class _TrafficCounter(TorchDispatchMode):
    """Elements read and written by every non-view ATen op: the traffic if nothing were
    fused and no intermediate stayed on chip (an upper bound)."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            self.elements += sum(t.numel() for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor))
        return out


def _stage_inputs(cfg, tile_h: int, tile_w: int) -> dict[str, tuple[torch.Tensor, ...]]:
    meta = dict(device="meta")
    packed = torch.zeros(1, 4, tile_h // 2, tile_w // 2, **meta)
    latent = torch.zeros(1, cfg.latent_channels, tile_h // cfg.compression, tile_w // cfg.compression, **meta)
    return {"global": (torch.zeros(1, 4, cfg.thumb_size, cfg.thumb_size, **meta), torch.zeros(1, cfg.meta_dim, **meta)),
            "encoder": (packed,), "backbone": (latent, torch.zeros(1, cfg.global_dim, **meta)),
            "decoder": (latent, packed)}


@torch.inference_mode()
def workload(model, tile_h: int, tile_w: int) -> dict[str, dict]:
    """Per network stage, for one tile_h x tile_w output tile (global: its fixed thumbnail):
    macs; weight_elements; io_elements (stage inputs + output: the traffic if every
    intermediate stayed on chip, a lower bound); unfused_elements (every op's inputs and
    outputs, weights included: an upper bound). Counted on a meta-device copy, so a 4K
    tile costs no compute."""
    net = copy.deepcopy(model).to("meta").eval()
    inputs = _stage_inputs(net.cfg, tile_h, tile_w)
    out = {}
    for stage in NETWORK_STAGES:
        module = net.stage(stage)
        with FlopCounterMode(display=False) as flops, _TrafficCounter() as traffic:
            result = module(*inputs[stage])
        out[stage] = {"macs": flops.get_total_flops() // 2,
                      "weight_elements": sum(p.numel() for p in module.parameters()),
                      "io_elements": sum(t.numel() for t in inputs[stage]) + result.numel(),
                      "unfused_elements": traffic.elements}
    return out


def roofline_seconds(macs: float, bytes_moved: float, unit: ComputeUnit | None, soc: SocSpec) -> dict:
    """ESTIMATE of one stage's time: the larger of its compute time and its memory time,
    each at the assumed utilisation. A term whose peak is not sourced is None; the estimate
    is then the other term alone (a lower bound), or None."""
    compute = None if unit is None else macs / (COMPUTE_UTILISATION * unit.peak_macs_per_s)
    memory = None if soc.bandwidth is None else bytes_moved / (BANDWIDTH_UTILISATION * soc.bandwidth.value * 1e9)
    terms = [t for t in (compute, memory) if t is not None]
    return {"compute_s": compute, "memory_s": memory, "seconds": max(terms) if terms else None,
            "bound": None if not terms else ("compute" if compute is not None and compute >= (memory or 0)
                                             else "memory"),
            "complete": compute is not None and memory is not None}

"""Study: MobileDiffusion's efficiency tricks, each toggled alone against model v3 (e4k-v3-f16).

v3 already has three of them (SiLU, ReLU linear attention, separable convs), so their
variants take one away (e4k-v3-f16-gelu, -softmax, -fullconv); it has not the other two,
so their variants add one (e4k-v3-f16-noattn, -slimdec: about half v3's decoder widths).
In E4K the DiT runs at one resolution, the latent, so "no self-attention at the highest
resolution" is no self-attention at all (-noattn: Mix-FFN only).

For each preset, trained from the same seed for the same budget with the same settings
(common.trained_model: bf16, the shipped model's shards where ./data holds them;
e4k-v3-f16 is shared with `compression` and `attention`, -softmax with `attention`):
- quality on the held-out photos (common.quality);
- MACs per output megapixel and per stage (models.cost, torch's flop counter);
- int8 host latency: an ExecuTorch/XNNPACK int8 build (compile_build, the same spec as
  `compression`'s, so e4k-v3-f16's build is reused), whole pipeline on a 1K frame tiled
  512/64, in its own process (`edge4k run --profile`);
- Qualcomm HTP placement: an android-qnn int8 build (QAIRT's HTP compiler, emulated
  here), how many of each stage's ONNX nodes the HTP takes and which fall back to the
  CPU (compiler.qnn.lower.placement, recorded in the manifest). Built at 128-pixel
  tiles to keep the QNN builds cheap: placement is a property of the ops, but an op
  the HTP takes at 8x8 latent tokens could still be refused at a larger shape.

Training noise: the baseline is trained a second time from another seed (SPREAD_SEED);
an effect no larger than the two seeds' PSNR difference is reported as within that noise.

Time, one torch thread on the 2-core host: training 5 x the budget (gelu, fullconv,
noattn, slimdec, the baseline's second seed; e4k-v3-f16 and -softmax are cached by `compression` and `attention`),
5 int8 XNNPACK builds of 1.5-2.3 min (lowering), 6 QNN builds (16-28 s each at 128-pixel
tiles), 6 profiled runs (~10 s each), quality ~30 s: about 13 min besides training.
Quick: 3 training steps, a 256x256 frame at 128-pixel tiles, the int8 and QNN builds of
e4k-v3-f16 only: about 1 min once `compression --quick` has built the int8 one into the
same models folder (+~2 min alone).
"""
from __future__ import annotations

from dataclasses import dataclass

from edge4k.models.cost import gmac_per_megapixel, param_count, stage_macs
from edge4k.studies.common import (
    bench_raw,
    checkpoint_of,
    compiled_build,
    profile_run,
    quality,
    trained_model,
    training_record,
    training_text,
)

TITLE = "MobileDiffusion's tricks, one at a time"
QUESTION = ("What does each MobileDiffusion trick (SiLU for GELU, ReLU linear for softmax attention, separable "
            "convs, no self-attention, a slimmer decoder) buy or cost in quality, MACs, int8 latency and "
            "Qualcomm HTP placement?")
DEFAULT_BUDGET_MINUTES = 2.5     # the same in compression and attention: they share the trained models
BASELINE = "e4k-v3-f16"
# (variant preset, the trick, whether the variant removes it from the baseline or applies it)
VARIANTS = (
    ("e4k-v3-f16-gelu", "SiLU instead of GELU", "removes"),
    ("e4k-v3-f16-softmax", "ReLU linear instead of softmax attention", "removes"),
    ("e4k-v3-f16-fullconv", "depthwise-separable instead of full 3x3 convs", "removes"),
    ("e4k-v3-f16-noattn", "no self-attention (the DiT's only resolution is the latent)", "applies"),
    ("e4k-v3-f16-slimdec", "a slimmer decoder (about half the widths)", "applies"),
)
TOLERANCE_DB = 0.5               # a trick "holds quality" if it loses less than this
SPREAD_SEED = 1                  # the baseline trained again from this seed: how far training noise alone moves it


@dataclass(frozen=True)
class Settings:
    resolution: tuple            # (width, height) of the timed frame
    tile: int
    overlap: int
    runs: int
    warmup: int
    calib: int                   # int8 calibration tiles (XNNPACK)
    qnn_tile: int
    qnn_calib: int
    built: tuple | None          # presets that get compiled builds (None: all; quick: the baseline)


# tile, overlap and calib as in compression's settings, so e4k-v3-f16's int8 build is shared
DEFAULT = Settings((1024, 1024), tile=512, overlap=64, runs=3, warmup=1, calib=4, qnn_tile=128, qnn_calib=4,
                   built=None)
QUICK = Settings((256, 256), tile=128, overlap=32, runs=1, warmup=0, calib=2, qnn_tile=128, qnn_calib=2,
                 built=(BASELINE,))


def measure(ctx, preset: str, s: Settings) -> dict:
    model, info = trained_model(ctx, preset)
    ckpt = checkpoint_of(info)
    cfg = model.cfg
    ctx.progress(f"  {preset}: quality and MACs")
    row = {"preset": preset, "params": param_count(model), "quality": quality(ctx, model),
           "training": training_record(info),
           "gmac_per_mp": round(gmac_per_megapixel(model, s.tile), 3),
           "stage_gmac_per_tile": {k: round(v / 1e9, 4) for k, v in stage_macs(model, s.tile).items()},
           "config": {"activation": cfg.activation, "attention": cfg.attention, "separable": cfg.separable,
                      "dec_widths": list(cfg.dec_widths)}}
    if s.built is not None and preset not in s.built:
        reason = "not built in quick mode (each build takes minutes)"
        row["int8"], row["htp"] = {"error": reason}, {"error": reason}
        return row
    build, manifest = compiled_build(ctx, model, ckpt, target="host-xnnpack", precision="int8", tile=s.tile,
                                     overlap=s.overlap, calib=s.calib)
    if build is None:
        row["int8"] = {"error": manifest["error"]}
    else:
        w, h = s.resolution
        ctx.progress(f"  {preset}: int8 at {w}x{h}")
        try:
            row["int8"] = profile_run(bench_raw(ctx, w, h), ctx.models_dir / "runs" / f"{preset}-int8-{w}x{h}",
                                      "--backend", "executorch", "--artifacts", str(build),
                                      runs=s.runs, warmup=s.warmup)
        except Exception as e:   # record why, keep measuring the others
            row["int8"] = {"error": str(e)}
        row["int8"]["ops_outside_xnnpack"] = {k: v["ops_outside_delegate"] for k, v in manifest["stages"].items()}
    build, manifest = compiled_build(ctx, model, ckpt, target="android-qnn", precision="int8", tile=s.qnn_tile,
                                     overlap=s.qnn_tile // 4, calib=s.qnn_calib)
    if build is None:
        row["htp"] = {"error": manifest["error"]}
    else:
        row["htp"] = {"soc": manifest["qnn"]["soc"], "tile": s.qnn_tile,
                      "tile_psnr_db_vs_fp32": manifest["verification"].get("tile_psnr_db"),
                      "stages": {k: {key: v["placement"][key] for key in ("nodes", "htp", "cpu", "cpu_ops", "htp_ops")}
                                 for k, v in manifest["stages"].items()}}
        row["htp"]["nodes"] = sum(v["nodes"] for v in row["htp"]["stages"].values())
        row["htp"]["cpu"] = sum(v["cpu"] for v in row["htp"]["stages"].values())
    return row


def int8_ms(row):
    return row["int8"].get("total_ms")


def htp_cpu(row):
    return row["htp"].get("cpu")


def ratio(a, b):
    return None if a is None or b is None or not b else a / b


def trick_effects(rows: dict, seed_spread_db: float) -> list[dict]:
    """Each trick's effect: the model with it against the model without it, and whether the
    PSNR difference exceeds the baseline's seed-to-seed difference (seed_spread_db)."""
    base = rows[BASELINE]
    effects = []
    for preset, trick, does in VARIANTS:
        var = rows[preset]
        with_, without = (base, var) if does == "removes" else (var, base)
        d_psnr = with_["quality"]["psnr"] - without["quality"]["psnr"]
        effects.append({"trick": trick, "variant": preset, "variant_does": does,
                        "d_psnr_db": round(d_psnr, 3),
                        "d_de2000": round(with_["quality"]["de2000_mean"] - without["quality"]["de2000_mean"], 3),
                        "beyond_seed_spread": abs(d_psnr) > seed_spread_db,
                        "mac_ratio": round(with_["gmac_per_mp"] / without["gmac_per_mp"], 3),
                        "int8_latency_ratio": ratio(int8_ms(with_), int8_ms(without)),
                        "htp_cpu_nodes": {"with": htp_cpu(with_), "without": htp_cpu(without)}})
    return effects


def answer_text(effects: list[dict], seed_spread_db: float) -> str:
    parts, pays = [], []
    for e in effects:
        lat = f", int8 latency x{e['int8_latency_ratio']:.2f}" if e["int8_latency_ratio"] else ""
        cpu = e["htp_cpu_nodes"]
        htp = (f", HTP CPU-fallback nodes {cpu['with']} with it against {cpu['without']} without"
               if None not in (cpu["with"], cpu["without"]) else "")
        parts.append(f"{e['trick']} ({e['variant']} {e['variant_does']} it): {e['d_psnr_db']:+.2f} dB PSNR, "
                     f"MACs x{e['mac_ratio']:.2f}{lat}{htp}")
        cheaper = (e["mac_ratio"] < 1 or (e["int8_latency_ratio"] or 1) < 1
                   or (None not in (cpu["with"], cpu["without"]) and cpu["with"] < cpu["without"]))
        if e["d_psnr_db"] > -TOLERANCE_DB and cheaper:
            pays.append(e["trick"])
    noise = [e["trick"] for e in effects if not e["beyond_seed_spread"]]
    return ("Effect of each trick (with it against without it): " + "; ".join(parts) + ". "
            + f"The baseline trained from seed {SPREAD_SEED} instead of 0 moves by {seed_spread_db:.2f} dB"
            + (f", so these differences are within training noise: {', '.join(noise)}. " if noise else
               ", less than any trick's effect. ")
            + (f"Tricks that save MACs, latency or HTP fallbacks while losing less than {TOLERANCE_DB} dB: "
               + ", ".join(pays) + "." if pays else
               f"No trick saved cost while losing less than {TOLERANCE_DB} dB."))


def plot(ctx, rows: dict):
    names = list(rows)
    short = [n.replace(f"{BASELINE}-", "").replace(BASELINE, "v3") for n in names]
    base = rows[BASELINE]
    panels = [("PSNR vs v3, dB", [r["quality"]["psnr"] - base["quality"]["psnr"] for r in rows.values()]),
              ("GMAC per output MP", [r["gmac_per_mp"] for r in rows.values()]),
              ("int8 host ms per frame", [int8_ms(r) or 0 for r in rows.values()]),
              ("HTP: nodes on the CPU", [htp_cpu(r) or 0 for r in rows.values()])]
    with ctx.figure("bars", size=(12, 3.5)) as fig:
        for i, (title, values) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            ax.bar(short, values, color=["grey"] + ["tab:blue"] * (len(names) - 1))
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", rotation=45, labelsize=8)


def run(ctx) -> None:
    s = QUICK if ctx.quick else DEFAULT
    rows = {}
    for preset in (BASELINE, *(v[0] for v in VARIANTS)):
        ctx.progress(f"tricks: {preset}")
        rows[preset] = measure(ctx, preset, s)
    ctx.progress(f"tricks: {BASELINE} from seed {SPREAD_SEED}")
    model, info = trained_model(ctx, BASELINE, seed=SPREAD_SEED)
    spread = {"seed": SPREAD_SEED, "quality": quality(ctx, model), "training": training_record(info)}
    spread["d_psnr_db"] = round(spread["quality"]["psnr"] - rows[BASELINE]["quality"]["psnr"], 3)
    spread_db = abs(spread["d_psnr_db"])
    effects = trick_effects(rows, spread_db)
    w, h = s.resolution
    ctx.data.update(baseline=BASELINE, presets=rows, effects=effects, tolerance_db=TOLERANCE_DB, seed_spread=spread,
                    settings={"resolution": [w, h], "tile": s.tile, "overlap": s.overlap, "runs": s.runs,
                              "warmup": s.warmup, "int8_calibration_tiles": s.calib, "qnn_tile": s.qnn_tile,
                              "qnn_calibration_tiles": s.qnn_calib})
    tricks = {v[0]: f"{v[2]} {v[1]}" for v in VARIANTS}
    ctx.md += [f"Model v3 ({BASELINE}) and its variants, {training_text([r['training'] for r in rows.values()])}. "
               f"int8: ExecuTorch/XNNPACK build, "
               f"whole pipeline on a {w}x{h} frame tiled {s.tile}/{s.overlap}, median of {s.runs} runs on this host. "
               f"HTP: android-qnn int8 build at {s.qnn_tile}-pixel tiles (QAIRT's compiler, HTP emulated here), "
               "ONNX nodes on the HTP / all, per stage. In E4K the DiT runs at one resolution (the latent), so "
               "'no self-attention at the highest resolution' removes self-attention altogether.", ""]

    def htp_cell(r, stage):   # why there is no build is listed under the tables
        st = r["htp"].get("stages", {}).get(stage)
        return f"{st['htp']}/{st['nodes']}" if st else "-"
    ctx.table(["preset", "variant", "train crops", "PSNR dB", "SSIM", "CIEDE2000", "GMAC/MP", "int8 ms", "HTP global",
               "HTP encoder", "HTP backbone", "HTP decoder", "HTP fallback ops"],
              [[p, tricks.get(p, "v3 (baseline)"), r["training"]["crops_seen"], r["quality"]["psnr"], r["quality"]["ssim"],
                r["quality"]["de2000_mean"],
                r["gmac_per_mp"], int8_ms(r), *[htp_cell(r, st) for st in ("global", "encoder", "backbone", "decoder")],
                ", ".join(f"{op} x{n}" for st in r["htp"].get("stages", {}).values()
                          for op, n in st["cpu_ops"].items())] for p, r in rows.items()])
    sq = spread["quality"]
    ctx.md += [f"Training noise: {BASELINE} trained from seed {SPREAD_SEED} ({spread['training']['crops_seen']} crops) "
               f"scores {sq['psnr']:.2f} dB PSNR, SSIM {sq['ssim']:.3f}, CIEDE2000 {sq['de2000_mean']:.2f}: "
               f"{spread['d_psnr_db']:+.2f} dB from seed 0. A trick's PSNR difference no larger than that is not "
               "evidence either way.", ""]
    ctx.table(["trick", "variant", "PSNR with - without dB", "beyond seed spread", "CIEDE2000 with - without",
               "MACs with / without", "int8 latency with / without"],
              [[e["trick"], f"{e['variant']} ({e['variant_does']})", e["d_psnr_db"],
                "yes" if e["beyond_seed_spread"] else "no", e["d_de2000"], e["mac_ratio"],
                e["int8_latency_ratio"]] for e in effects])
    for p, r in rows.items():
        for what in ("int8", "htp"):
            if "error" in r[what]:
                ctx.md += [f"- {p} {what}: {r[what]['error']}"]
    ctx.md.append("")
    plot(ctx, rows)
    ctx.answer(answer_text(effects, spread_db))

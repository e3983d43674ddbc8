"""What `edge4k eval` asks for, one function per kind of report: a model's quality on an
evaluation set, the robustness sweep, the real-camera gallery (run_eval), the one-step models
against a flow teacher (run_compare), and the README's quality tables (run_summary). Each writes
its files and returns their paths; the Markdown report is paths["md"]."""
from __future__ import annotations

import os
from pathlib import Path

from edge4k.backends.registry import open_build
from edge4k.errors import Edge4KError
from edge4k.evaluation.evaluate import (
    METHODS,
    SWEEP_GRID,
    SWEEP_QUICK,
    compare,
    evaluate,
    gallery,
    load_set,
    summary_tables,
    sweep,
    write_compare,
    write_report,
    write_sweep,
)
from edge4k.kernels.postprocess import LOOKS
from edge4k.models import get_preset
from edge4k.models.checkpoint import load_for_preset, load_model
from edge4k.training.flow import load_teacher, teacher_as_model


def subject(preset: str, *, checkpoint: str | os.PathLike | None = None, artifacts: str | os.PathLike | None = None,
            methods=METHODS):
    """(model, config, weights description) to evaluate: a compiled build (artifacts), else the
    preset's eager model; no model when "edge4k" is not among the methods."""
    if artifacts:
        if checkpoint:
            raise Edge4KError("checkpoint is for the eager model; a compiled build carries its own weights")
        model = open_build(artifacts)
        return model, model.cfg, model.weights
    cfg = get_preset(preset)
    if "edge4k" not in methods:
        return None, cfg, None
    model, weights = load_for_preset(cfg.name, checkpoint)
    return model, cfg, weights


def run_eval(model, cfg, weights: str | None, out_dir: str | os.PathLike, *, set_name: str = "held-out",
             data: str | os.PathLike | None = None, look: str = "both", methods=METHODS, sweep_grid: bool = False,
             quick: bool = False, gallery_paths=None, progress: bool = False) -> dict[str, Path]:
    """The gallery of gallery_paths (real RAW files, no scores), else the robustness sweep
    (sweep_grid; quick: a reduced grid at small size), else the set's report; look: "natural",
    "neutral" or "both"."""
    if gallery_paths:
        return gallery(model, gallery_paths, out_dir, progress=progress)
    identity = {"preset": cfg.name, "config_hash": cfg.config_hash(), "weights": weights}
    if sweep_grid:
        report = sweep(model, grid=SWEEP_QUICK if quick else SWEEP_GRID, size=96 if quick else 192,
                       progress=progress)
        report["model"] = identity
        return write_sweep(report, out_dir)
    looks = LOOKS if look == "both" else (look,)
    report = evaluate(model, load_set(set_name, data), methods=methods, looks=looks, progress=progress,
                      keep_outputs=True)
    report["model"] = identity
    title = f"{set_name} set, {cfg.name} ({weights})" if weights else f"{set_name} set"
    return write_report(report, out_dir, set_name=set_name, title=title)


def run_compare(preset: str, teacher: str | os.PathLike, out_dir: str | os.PathLike, *, steps=(1, 2, 4, 8),
                solver: str = "euler", student: str | os.PathLike | None = None,
                checkpoint: str | os.PathLike | None = None, set_name: str = "held-out",
                data: str | os.PathLike | None = None, look: str = "natural", progress: bool = False) -> dict[str, Path]:
    """The flow teacher at each number of steps, the distilled student and the direct one-step
    model (checkpoint), side by side on one set; look "both" scores the natural look."""
    cfg = get_preset(preset)
    flow_teacher, _ = load_teacher(teacher, cfg.name)
    direct, weights = load_for_preset(cfg.name, checkpoint)
    models = {f"teacher {solver} {n} step{'s' if n > 1 else ''}": teacher_as_model(flow_teacher, n, solver)
              for n in steps}
    if student:
        models["distilled student, 1 step"] = load_model(student, cfg.name)[0]
    models[f"direct one-step ({weights})"] = direct
    report = compare(models, load_set(set_name, data), look="natural" if look == "both" else look,
                     progress=progress, keep_outputs=True)
    report["teacher"], report["student"] = str(teacher), student and str(student)
    return write_compare(report, out_dir, set_name=set_name,
                         title=f"{set_name} set, one-step models and the {cfg.name} flow teacher")


def run_summary(eval_dir: str | os.PathLike, builds: dict[str, str | os.PathLike] | None = None,
                anchors: str | os.PathLike | None = None) -> str:
    """The README's quality tables from the eval JSON in eval_dir (kodak24, mcmaster18,
    held-out), the compiled builds' eval folders (label -> folder) and, for the methods eval_dir
    lacks, the anchors folder's reports of the same captures."""
    try:
        return summary_tables(eval_dir, builds, anchors)
    except FileNotFoundError as e:
        raise Edge4KError(f"the summary needs the eval JSON of kodak24, mcmaster18 and held-out: {e.filename} "
                          "is missing (evaluate each set into that folder first)") from None

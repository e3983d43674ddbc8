"""`edge4k study`: the research questions of DESIGN.md, each answered by one command.

Every study is a module here with TITLE, QUESTION, DEFAULT_BUDGET_MINUTES and
run(ctx: StudyContext). run() trains or loads what it needs, measures, and fills
ctx: numbers go in ctx.data (-> NAME.json), figures through ctx.figure() (-> PNG),
and the Markdown section through ctx.md / ctx.table() / ctx.answer(). Answers
are written from the measured numbers, never typed in. `edge4k study all` runs
them in order and assembles docs/RESEARCH.md from the sections.
"""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from edge4k.errors import Edge4KError
from edge4k.studies.report import StudyContext, assemble_research

# Run order for `all`: training studies first, so later ones reuse their checkpoints.
STUDIES = ("compression", "attention", "tricks", "model_v3", "decoder_share", "tiling", "phone", "sana")


def study_module(name: str):
    key = name.replace("-", "_")
    if key not in STUDIES:
        raise Edge4KError(f"unknown study '{name}'; valid studies: {', '.join(STUDIES)}, all")
    return importlib.import_module(f"{__name__}.{key}")


def run_study(name: str, out_dir: str | Path, *, budget_minutes: float | None = None, quick: bool = False,
              models_dir: str | Path | None = None, progress=print) -> StudyContext:
    """Run one study into out_dir (NAME.json, NAME.md, PNGs). quick: tiny settings (CI)."""
    mod = study_module(name)
    budget = mod.DEFAULT_BUDGET_MINUTES if budget_minutes is None else budget_minutes
    if budget <= 0:
        raise Edge4KError(f"--budget-minutes must be > 0, got {budget:g}")
    ctx = StudyContext(name=name.replace("-", "_"), title=mod.TITLE, question=mod.QUESTION, out_dir=Path(out_dir),
                       budget_minutes=budget, quick=quick,
                       models_dir=Path(models_dir) if models_dir else Path(out_dir).parent / "_models",
                       progress=progress or (lambda _msg: None))
    start = time.perf_counter()
    mod.run(ctx)
    ctx.data["wall_s"] = round(time.perf_counter() - start, 1)
    ctx.write()
    return ctx


def run_all(reports_dir: str | Path, doc_path: str | Path, *, budget_minutes: float | None = None,
            quick: bool = False, reuse: bool = False, only: tuple[str, ...] = STUDIES, progress=print) -> Path:
    """Every study in order, then docs/RESEARCH.md from their sections. reuse: keep a
    study's existing report (made with the same --quick) instead of running it again."""
    reports_dir = Path(reports_dir)
    progress = progress or (lambda _msg: None)
    for name in only:
        done = reports_dir / name / f"{name}.json"
        if reuse and done.is_file() and json.loads(done.read_text()).get("quick") == quick:
            progress(f"study {name}: keeping {done}")
            continue
        progress(f"study {name} ...")
        run_study(name, reports_dir / name, budget_minutes=budget_minutes, quick=quick,
                  models_dir=reports_dir / "_models", progress=progress)
    return assemble_research(reports_dir, Path(doc_path), only)

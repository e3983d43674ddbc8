"""What every study writes: NAME.json (every number), PNG figures, NAME.md (its
section of docs/RESEARCH.md), all atomically; and the environment they came from."""
from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from edge4k.files import atomic_output

SCHEMA = "edge4k.study/1"


def environment() -> dict:
    """The machine and versions a number came from (the report prints it with each study)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in ("edge4k", "torch", "executorch", "onnxruntime", "onnxruntime-qnn", "diffusers"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    # The load average says whether other jobs shared the CPU while the numbers were taken.
    return {"machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(), "loadavg_1_5_15": os.getloadavg(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "versions": versions}


@dataclass
class StudyContext:
    name: str
    title: str
    question: str
    out_dir: Path
    budget_minutes: float          # training budget per trained model
    quick: bool                    # tiny shapes and a few steps (CI)
    models_dir: Path               # trained checkpoints shared between studies
    progress: Callable[[str], None] = print
    data: dict = field(default_factory=dict)
    md: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def table(self, header: list[str], rows: list[list]) -> None:
        """Append a Markdown table; floats are printed with 2 decimals (3 below 1)."""
        def cell(v):
            if isinstance(v, float):
                return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
            return "" if v is None else str(v)
        self.md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self.md += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
        self.md.append("")

    def answer(self, text: str) -> None:
        """The study's answer to its question, built from the measured numbers."""
        self.data["answer"] = text
        self.md += [f"**Answer.** {text}", ""]

    @contextlib.contextmanager
    def figure(self, name: str, *, size=(7, 4)):
        """Yield a matplotlib figure; saved as NAME-<name>.png and linked in the section."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=size, dpi=100)
        try:
            yield fig
            fig.tight_layout()
            png = self.out_dir / f"{self.name}-{name}.png"
            with atomic_output(png) as tmp:
                fig.savefig(tmp, format="png")
        finally:
            plt.close(fig)
        self.figures.append(png.name)
        self.md += [f"![{self.name} {name}]({png.name})", ""]

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        blob = {"schema": SCHEMA, "study": self.name, "title": self.title, "question": self.question,
                "budget_minutes": self.budget_minutes, "quick": self.quick, "environment": environment(),
                "figures": self.figures, **self.data}
        with atomic_output(self.out_dir / f"{self.name}.json") as tmp:
            tmp.write_text(json.dumps(blob, indent=2) + "\n")
        head = [f"## {self.title}", "", f"*Question.* {self.question}", "",
                f"*Produced by* `edge4k study {self.name} --budget-minutes {self.budget_minutes:g}"
                f"{' --quick' if self.quick else ''} -o {self.out_dir}` in {self.data.get('wall_s', '?')} s.", ""]
        with atomic_output(self.out_dir / f"{self.name}.md") as tmp:
            tmp.write_text("\n".join(head + self.md).rstrip() + "\n")


def assemble_research(reports_dir: Path, doc_path: Path, names) -> Path:
    """docs/RESEARCH.md: environment, then each study's section with its figures (linked
    relative to the doc), in run order."""
    doc_path = Path(doc_path)
    parts, env = [], None
    for name in names:
        d = reports_dir / name
        js = json.loads((d / f"{name}.json").read_text())
        env = env or js["environment"]
        section = (d / f"{name}.md").read_text()
        load = js["environment"].get("loadavg_1_5_15")
        if load:
            cores = js["environment"]["cores"]
            section = section.rstrip() + (
                f"\n\n*Machine load when this study finished:* load average {load[0]:.1f} / {load[1]:.1f} / "
                f"{load[2]:.1f} (1 / 5 / 15 min) on {cores} cores"
                + (" — other jobs shared the CPU, so its timings are inflated." if load[1] > cores + 0.5 else ".")
                + "\n")
        rel = os.path.relpath(d, doc_path.parent)
        for fig in js["figures"]:
            section = section.replace(f"]({fig})", f"]({rel}/{fig})")
        parts.append(section)
    head = ["# Edge4K research report", "",
            "Every number below was written by `edge4k study all` (one JSON per study under "
            f"`{os.path.relpath(reports_dir, doc_path.parent)}/`); nothing is typed in by hand.", ""]
    if env:
        v = ", ".join(f"{k} {val}" for k, val in env["versions"].items())
        head += [f"Machine: {env['cpu']} ({env['cores']} cores), "
                 f"GPU: {env['gpu'] or 'none'}; Python {env['python']}; {v}.", ""]
    with atomic_output(doc_path) as tmp:
        tmp.write_text("\n".join(head) + "\n" + "\n".join(parts))
    return doc_path

"""Mutation testing (cosmic-ray): how many deliberately broken versions of a module its
tests catch. Not part of `make test`; run through `make mutation`.

    python tests/mutation.py runtime/profile.py=tests/test_profile.py [MODULE=TEST[,TEST]...] [--survivors] [--sample N]

For each MODULE=TESTS pair: every mutant of MODULE (cosmic-ray's operators: swapped
comparisons and arithmetic, changed numbers, removed branches...) is applied to the
file in place, TESTS run with `pytest -x`, and the mutant counts as killed when they
fail (or time out). Prints the mutation score (killed / mutants) per module and, with
--survivors, the diff of every mutant that no test caught. The module's file is
checked to be unchanged afterwards. Sessions are kept in build/mutation/ so an
interrupted run resumes (a changed module or test file starts a fresh one).

With --sample N, a random sample of N mutants per module (drawn once per session, so an
interrupted run resumes with the same ones) is run instead of all of them, and the score
comes with its 95% Wilson interval: cosmic-ray makes several mutants per operator and number
(hundreds per module), at several seconds of pytest start-up each.

Mutants inside type annotations are skipped and not counted when the module has
`from __future__ import annotations`: those annotations are never evaluated, so such a
mutant cannot change behaviour (an equivalent mutant no test could kill).

The module's file is mutated in place: run no other tests in this checkout meanwhile."""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import math
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = ROOT / "build" / "mutation"


def config(module: str, tests: list[str], timeout: float) -> str:
    command = " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests])
    return (f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {timeout:.0f}\nexcluded-modules = []\n'
            f'test-command = "{command}"\n\n[cosmic-ray.distributor]\nname = "local"\n')


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) (line, column) of every annotation, when annotations are never evaluated."""
    tree = ast.parse(source)
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body)
    if not lazy:
        return []
    nodes = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.arg, ast.AnnAssign)) and n.annotation]
    nodes += [n.returns for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns]
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in nodes]


def skip_annotation_mutants(db, source: str) -> int:
    from cosmic_ray.work_item import WorkerOutcome, WorkResult
    spans = annotation_spans(source)
    done = {job_id for job_id, _ in db.results}
    skipped = 0
    for item in db.work_items:
        m = item.mutations[0]
        if item.job_id not in done and any(a <= tuple(m.start_pos) and tuple(m.end_pos) <= b for a, b in spans):
            db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                  output="in a type annotation, never evaluated"))
            skipped += 1
    return skipped


NOT_SAMPLED = "not in the sample"


def check_imported_file(module: str) -> None:
    """The tests import edge4k.<package>.<name>; make sure that is the file we mutate (an editable
    install of another checkout would make every mutant survive unseen)."""
    package, name = Path(module).parent.name, Path(module).stem
    spec = importlib.util.find_spec(f"edge4k.{package}.{name}")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    if origin != (ROOT / module).resolve():
        sys.exit(f"mutation: edge4k.{package}.{name} imports {origin}, not {ROOT / module}; "
                 "run from the checkout the venv was installed from (pip install -e .)")


def sample_mutants(db, size: int, seed: str) -> int:
    """Marks all but `size` randomly chosen untested mutants as skipped (NOT_SAMPLED)."""
    from cosmic_ray.work_item import WorkerOutcome, WorkResult
    done = {job_id for job_id, _ in db.results}
    pending = sorted(item.job_id for item in db.work_items if item.job_id not in done)
    chosen = set(random.Random(seed).sample(pending, min(size, len(pending))))
    left_out = [job_id for job_id in pending if job_id not in chosen]
    for job_id in left_out:
        db.set_result(job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=NOT_SAMPLED))
    return len(left_out)


def wilson_interval(killed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if total == 0:
        return 0.0, 1.0
    p = killed / total
    centre, half = p + z * z / (2 * total), z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre - half) / (1 + z * z / total), (centre + half) / (1 + z * z / total)


def baseline_seconds(tests: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mutation: the tests fail before any mutation ({' '.join(tests)}):\n{done.stdout[-2000:]}")
    return time.perf_counter() - start


def run_module(module: str, tests: list[str], survivors: bool, sample: int | None) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    check_imported_file(module)
    source = (ROOT / module).read_bytes()
    SESSIONS.mkdir(parents=True, exist_ok=True)
    name = module.replace("/", "_").removesuffix(".py")
    cfg, session, stamp = (SESSIONS / f"{name}.{ext}" for ext in ("toml", "sqlite", "sha256"))
    digest = hashlib.sha256(source + b"".join((ROOT / t).read_bytes() for t in tests) +
                            f"{' '.join(tests)} sample={sample}".encode())
    if not stamp.is_file() or stamp.read_text() != digest.hexdigest():   # module or tests changed: start afresh
        session.unlink(missing_ok=True)
        cfg.write_text(config(module, tests, max(30.0, 5 * baseline_seconds(tests))))
        subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "init", str(cfg), str(session)], cwd=ROOT, check=True)
        with use_db(str(session), WorkDB.Mode.open) as db:
            print(f"mutation: {module}: {skip_annotation_mutants(db, source.decode())} mutants in type annotations "
                  "skipped", file=sys.stderr)
            if sample is not None:
                print(f"mutation: {module}: {sample_mutants(db, sample, module)} mutants left out of the sample",
                      file=sys.stderr)
        stamp.write_text(digest.hexdigest())
    try:
        subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "exec", str(cfg), str(session)], cwd=ROOT, check=True)
    finally:
        if (ROOT / module).read_bytes() != source:   # cosmic-ray restores each mutant; make sure
            (ROOT / module).write_bytes(source)
            print(f"mutation: restored {module} after an interrupted mutant", file=sys.stderr)
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = {item.job_id: item for item in db.work_items}
        outcomes = list(db.results)
        results = [(j, r) for j, r in outcomes if r.worker_outcome != WorkerOutcome.SKIPPED]
        not_sampled = sum(r.output == NOT_SAMPLED for _, r in outcomes)
        killed = sum(r.is_killed for _, r in results)
        if survivors:
            for job_id, r in results:
                if not r.is_killed:
                    m = items[job_id].mutations[0]
                    print(f"--- survived: {m.operator_name} at line {m.start_pos[0]}\n{r.diff}")
    return {"module": module, "killed": killed, "tested": len(results),
            "mutants": len(items) - (len(outcomes) - len(results) - not_sampled),
            "annotation": len(outcomes) - len(results) - not_sampled}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="MODULE=TESTS", help="e.g. runtime/profile.py=tests/test_profile.py")
    parser.add_argument("--survivors", action="store_true", help="print the diff of every surviving mutant")
    parser.add_argument("--sample", type=int, metavar="N", help="test a fixed random sample of N mutants per module")
    args = parser.parse_args(argv)
    scores = []
    for pair in args.pairs:
        module, _, tests = pair.partition("=")
        if not tests or not (ROOT / module).is_file():
            parser.error(f"expected MODULE=TEST[,TEST] with MODULE a file in the repo, got {pair!r}")
        scores.append(run_module(module, tests.split(","), args.survivors, args.sample))
    print(f"\n{'module':<28}{'mutants':>8}{'tested':>8}{'killed':>8}{'score':>8}{'95% interval':>15}")
    for s in scores:
        low, high = wilson_interval(s["killed"], s["tested"])
        print(f"{s['module']:<28}{s['mutants']:>8}{s['tested']:>8}{s['killed']:>8}"
              f"{100 * s['killed'] / max(s['tested'], 1):>7.1f}%{f'{100 * low:.0f}-{100 * high:.0f}%':>15}")
    print("score = killed / tested; mutants excludes those inside never-evaluated type annotations; "
          "tested < mutants with --sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())

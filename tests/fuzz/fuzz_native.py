"""A seeded mutational fuzzer for what the native runner reads: a build's manifest.json, its
.pte program, and a frame (the JSON sidecar and its Bayer buffer). Each case mutates one seed
(JSON-aware edits and byte damage), runs edge4k_runner on it and classifies the outcome:

  ok      exit 0, an image written
  refused exit 1 (or 2 for usage) with exactly one `edge4k_runner: error:` line, no output
  CRASH   a signal, a sanitizer report (AddressSanitizer / UndefinedBehaviorSanitizer), a
          hang past --timeout, or a refusal that is not one line / leaves an output behind

The same --seed gives the same cases. Crashing inputs are kept in --keep for replay.

  python tests/fuzz/fuzz_native.py --runner build/native-sanitize/edge4k_runner \\
      --build BUILD --kind manifest --count 1000 --seed 0

BUILD is a tiny fp32 XNNPACK build (README, "Reliability"); tests/fuzz/corpus holds the
manifest and sidecar seeds, the .pte seed is BUILD's own program.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
KINDS = ("manifest", "pte", "sidecar")
# A sanitizer's report (its warnings, such as a refused huge allocation, are not one).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "AddressSanitizer:DEADLYSIGNAL", "UndefinedBehaviorSanitizer",
                   "runtime error:", "ERROR: LeakSanitizer")
# Values that break parsers and size computations: limits, overflow, wrong types.
NASTY = [0, -1, 1, 2, 3, 7, 15, 17, 63, 65, 255, 4096, 65535, 65536, 2**31 - 1, 2**31, -2**31, 2**53, 10**30,
         -10**30, 1e-300, 1.5, -0.5, "", "x", "../../etc/passwd", "-o", None, True, False, [], {}, [0], [[]],
         [1, 2, 3, 4, 5]]
RAW_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1e-400", "18446744073709551616", "-0"]


@dataclass
class Tally:
    counts: dict = field(default_factory=lambda: {"ok": 0, "refused": 0, "crash": 0})
    crashes: list = field(default_factory=list)


def leaves(value, path=()):
    """Every (path, value) in a JSON document, containers included."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, path + (i,))


def set_at(doc, path, value):
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def delete_at(doc, path):
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


def mutate_json(text: str, rng: random.Random) -> bytes:
    """One to three JSON-aware edits (a value replaced, removed, deepened, a number made
    unrepresentable), or byte damage to the text."""
    if rng.random() < 0.15:
        return mutate_bytes(text.encode(), rng)
    doc = json.loads(text)
    raws = []   # text spliced in after dumping: what json.dumps cannot write (deep nesting, 1e400)
    for _ in range(rng.randint(1, 3)):
        path, value = rng.choice(list(leaves(doc)))
        choice = rng.random()
        if not path or choice < 0.55:
            new = rng.choice(NASTY)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and rng.random() < 0.5:
                new = type(value)(value * rng.choice([0, -1, 2, 0.5, 1000]) + rng.choice([0, 1, -1]))
            doc = set_at(doc, path, new) if path else doc
        elif choice < 0.7:
            doc = delete_at(doc, path)
        elif choice < 0.8:
            depth = rng.choice([10, 200, 5000])
            raws.append("[" * depth + json.dumps(value) + "]" * depth)
            doc = set_at(doc, path, f"\x00RAW{len(raws) - 1}\x00")
        else:
            raws.append(rng.choice(RAW_NUMBERS))
            doc = set_at(doc, path, f"\x00RAW{len(raws) - 1}\x00")
    out = json.dumps(doc, indent=1)
    for i, raw in enumerate(raws):
        out = out.replace(f'"\\u0000RAW{i}\\u0000"', raw)
    return out.encode()


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Flipped, overwritten, inserted or cut bytes, the way a bad copy or a hostile file looks."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not b:
            break
        op, at = rng.random(), rng.randrange(len(b))
        if op < 0.4:
            b[at] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            b[at:at + 4] = rng.randbytes(4)
        elif op < 0.7:
            b[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.8:
            del b[at:at + rng.randint(1, 64)]
        elif op < 0.9:
            b[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\xff\xff\xff\x7f", b"\0\0\0\0"])
        else:
            del b[at:]
    return bytes(b)


def with_digests(manifest_text: str, programs: dict[str, bytes]) -> str:
    """The manifest with each stage's file_sha256 made that of the program it names."""
    m = json.loads(manifest_text)
    for entry in m["stages"].values():
        if entry["file"] in programs:
            entry["file_sha256"] = hashlib.sha256(programs[entry["file"]]).hexdigest()
    return json.dumps(m, indent=1)


def make_case(kind: str, build: Path, work: Path, rng: random.Random, own_digest: float = 0.5) -> tuple[Path, Path]:
    """A build folder and a sidecar in work/, one of them mutated. Returns (build, sidecar).
    A damaged .pte comes with its own digest in the manifest (a share own_digest of the cases),
    which tests ExecuTorch's loader itself, else with the original's (the digest check refuses it)."""
    case_build, frame = work / "build", work / "frame"
    for d in (case_build, frame):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    manifest_seeds = sorted((CORPUS / "manifest").glob("*.json"))
    sidecar_seeds = sorted((CORPUS / "sidecar").glob("*.json"))
    programs = {p.name: p.read_bytes() for p in sorted(build.iterdir()) if p.suffix == ".pte"}
    manifest = with_digests((build / "manifest.json").read_text(), programs)
    if kind == "manifest":
        seed = rng.choice(manifest_seeds + [build / "manifest.json"])
        manifest = mutate_json(with_digests(seed.read_text(), programs), rng).decode("utf-8", "replace")
    if kind == "pte":
        programs = {name: mutate_bytes(data, rng) for name, data in programs.items()}
        if rng.random() < own_digest:
            manifest = with_digests(manifest, programs)
    (case_build / "manifest.json").write_text(manifest, encoding="utf-8", errors="surrogateescape")
    for name, data in programs.items():
        (case_build / name).write_bytes(data)
    seed = rng.choice(sidecar_seeds)
    sidecar = json.loads(seed.read_text())
    bayer = (seed.parent / sidecar["data"]).read_bytes()
    text = json.dumps(sidecar).encode()
    if kind == "sidecar":
        if rng.random() < 0.7:
            text = mutate_json(text.decode(), rng)
        if rng.random() < 0.4:
            bayer = mutate_bytes(bayer, rng) if rng.random() < 0.5 else rng.randbytes(len(bayer))
    (frame / seed.parent.joinpath(sidecar["data"]).name).write_bytes(bayer)
    (frame / "frame.json").write_bytes(text)
    return case_build, frame / "frame.json"


def run_case(runner: Path, build: Path, sidecar: Path, out: Path, timeout: float) -> tuple[str, str]:
    """(outcome, why) of one run."""
    out.unlink(missing_ok=True)
    # allocator_may_return_null: a damaged program may ask XNNPACK for terabytes; the real allocator
    # then returns null (and the runner refuses the build), which ASan would otherwise report as a crash.
    env = {**os.environ, "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=0:allocator_may_return_null=1"),
           "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")}
    try:
        done = subprocess.run([str(runner), "--artifacts", str(build), "--input", str(sidecar), "-o", str(out),
                               "--idle-seconds", "0"], capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "crash", f"hang past {timeout:.0f} s"
    report = next((m for m in SANITIZER_MARKS if m in done.stderr), None)
    if report:
        return "crash", f"sanitizer: {report}: " + next(l for l in done.stderr.splitlines() if report in l)[:200]
    if done.returncode < 0 or done.returncode > 2:
        return "crash", f"exit {done.returncode} (signal {-done.returncode if done.returncode < 0 else done.returncode - 128})"
    if done.returncode == 0:
        return ("ok", "") if out.exists() else ("crash", "exit 0 without an image")
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    if len(errors) != 1:
        return "crash", f"exit {done.returncode} with {len(errors)} error lines: {done.stderr[-300:]!r}"
    if out.exists():
        return "crash", "refused but left an output behind"
    return "refused", errors[0]


def fuzz(runner: Path, build: Path, kind: str, count: int, seed: int, timeout: float = 60,
         keep: Path | None = None, progress=None, own_digest: float = 0.5) -> Tally:
    tally = Tally()
    rng = random.Random(f"{kind}:{seed}")
    with tempfile.TemporaryDirectory(prefix="edge4k-fuzz-") as tmp:
        work = Path(tmp)
        for i in range(count):
            case_build, sidecar = make_case(kind, build, work, rng, own_digest)
            outcome, why = run_case(runner, case_build, sidecar, work / "out.png", timeout)
            tally.counts[outcome] += 1
            if outcome == "crash":
                tally.crashes.append((i, why))
                if keep:
                    dest = keep / f"{kind}-{seed}-{i}"
                    shutil.copytree(work, dest, dirs_exist_ok=True)
            if progress:
                progress(i, outcome, why)
    return tally


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runner", required=True, type=Path)
    p.add_argument("--build", required=True, type=Path, help="a tiny fp32 XNNPACK build (its .pte is the seed)")
    p.add_argument("--kind", choices=KINDS + ("all",), default="all")
    p.add_argument("--count", type=int, default=30, help="mutations of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60, help="seconds before a run counts as a hang")
    p.add_argument("--keep", type=Path, help="folder to copy crashing cases into")
    p.add_argument("--own-digest", type=float, default=0.5,
                   help="share of damaged .pte files whose manifest carries their own digest (default 0.5)")
    args = p.parse_args(argv)
    crashed = 0
    for kind in KINDS if args.kind == "all" else (args.kind,):
        tally = fuzz(args.runner, args.build, kind, args.count, args.seed, args.timeout, args.keep,
                     own_digest=args.own_digest)
        crashed += len(tally.crashes)
        print(f"{kind}: {args.count} mutations (seed {args.seed}): {tally.counts['ok']} ran, "
              f"{tally.counts['refused']} refused in one line, {tally.counts['crash']} crashed")
        for i, why in tally.crashes:
            print(f"  case {i}: {why}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())

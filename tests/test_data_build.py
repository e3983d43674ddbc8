"""`edge4k data build|list|extract`, the shard reader and the manifest guards, on fixture photos
made here (random smooth scenes); the committed manifest is checked for test-set leaks."""
import hashlib
import json
import multiprocessing
import pickle
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge4k.benchmarks import data as data_bench
from edge4k.cli import main
from edge4k.datasets import shards
from edge4k.datasets.databuild import TEST_NEAR, BuildOptions, build, downscale, reduction
from edge4k.datasets.shards import open_shards
from edge4k.datasets.sources import (
    EvalSetGuard,
    SourceFile,
    decode_rgb,
    eval_set_files,
    hamming,
    load_manifest,
    perceptual_hash,
    phash_hex,
    pixels_sha256,
    write_manifest,
)
from edge4k.errors import Edge4KError

OPTS = BuildOptions(downscale=2.0, min_size=64, tile=64)


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """A photograph-like uint8 image: smooth random colour fields plus fine texture."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def save(path: Path, rgb: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


def row(path: Path, *, kind="photo", source="fixture", split="train", set_="") -> SourceFile:
    data = path.read_bytes()
    rgb = decode_rgb(path)
    return SourceFile(kind=kind, source=source, set=set_, split=split, file=f"photos/{source}/{path.name}",
                      repository="example/fixtures", commit="0" * 40, path=path.name, licence="CC0 (fixture)",
                      width=rgb.shape[1], height=rgb.shape[0], megapixels=round(rgb.size / 3e6, 4),
                      sha256=hashlib.sha256(data).hexdigest(), pixels_sha256=pixels_sha256(rgb),
                      phash=phash_hex(perceptual_hash(rgb)))


@pytest.fixture
def photos(tmp_path):
    """Six listed photographs (one for validation), a test image (listed as kodak24) and its manifest."""
    src = tmp_path / "photos"
    files = [save(src / f"p{i}.png", scene(240 + 8 * i, 320, seed=i)) for i in range(6)]
    test_img = save(tmp_path / "eval" / "kodim99.png", scene(256, 384, seed=99))
    rows = [row(f, split="validation" if i == 5 else "train") for i, f in enumerate(files)]
    rows.append(row(test_img, kind="eval", source="kodak24", split="test", set_="kodak24"))
    manifest = tmp_path / "sources.csv"
    write_manifest(rows, manifest)
    return {"src": src, "files": files, "test": test_img, "manifest": manifest, "rows": rows, "tmp": tmp_path}


def run_build(p, out=None, opts=OPTS, **kw):
    lines = []
    info = build(p["src"], out or p["tmp"] / "data", manifest=p["manifest"], options=opts, progress=False,
                 log=lines.append, **kw)
    return info, lines


def test_build_round_trip_and_reader(photos):
    info, lines = run_build(photos)
    assert lines == [] and info["counts"]["images"] == 6 and info["by_split"] == {"train": 5, "validation": 1}
    s = open_shards(photos["tmp"] / "data")
    assert len(s) == 6 and s.info["counts"] == info["counts"] and s.codec == "png"
    assert sorted(s.names) == sorted(f"photos/fixture/{f.name}" for f in photos["files"])
    assert len(s.split("train")) == 5 and s.split("validation").names == ["photos/fixture/p5.png"]
    for i, name in enumerate(s.names):
        original = decode_rgb(photos["src"] / Path(name).name)
        expected = downscale(original, reduction(*original.shape[:2], OPTS))
        img = s[i]
        assert img.dtype == np.uint8 and np.array_equal(img, expected)       # lossless, whole image
        assert np.array_equal(s.crop(i, 30, 50, 70, 90), expected[30:100, 50:140])  # crosses tile edges
        assert tuple(s.sizes[i]) == expected.shape[:2]
    crop = s.random_crop(0, 64, np.random.default_rng(0))
    assert crop.shape == (64, 64, 3)
    with pytest.raises(ValueError):
        s.crop(0, 0, 0, 10_000, 10)


def test_reader_is_safe_across_threads_and_processes(photos):
    run_build(photos)
    s = open_shards(photos["tmp"] / "data")
    expected = [s[i] for i in range(len(s))]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: s[i % len(s)], range(24)))
    assert all(np.array_equal(g, expected[i % len(s)]) for i, g in enumerate(got))
    clone = pickle.loads(pickle.dumps(s.split("train")))        # what a spawned DataLoader worker gets
    assert np.array_equal(clone[0], s.split("train")[0])
    # worker processes, each reopening the shards (forkserver: forking this test process, which
    # other tests may have made multithreaded, could deadlock)
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        sums = pool.starmap(_pixel_sum, [(s, i) for i in range(4)])
    assert sums == [int(expected[i].sum()) for i in range(4)]


def _pixel_sum(s, i):
    return int(s[i].sum())


def test_unlisted_files_are_reported_unless_allowed(photos):
    extra = save(photos["src"] / "sub" / "unknown.jpg", scene(300, 300, seed=42), quality=95)
    info, lines = run_build(photos)
    assert info["counts"]["images"] == 6
    assert lines == ["skipped sub/unknown.jpg: not in the manifest (sha256 unknown; --allow-unlisted to include it)"]
    info, lines = run_build(photos, opts=BuildOptions(**{**OPTS.__dict__, "allow_unlisted": True}))
    assert info["counts"]["images"] == 7 and info["by_source"]["unlisted"]["images"] == 1 and lines == []
    assert "sub/unknown.jpg" in open_shards(photos["tmp"] / "data").names
    assert extra.exists()


def test_test_set_images_are_refused_even_when_reencoded(photos):
    test = decode_rgb(photos["test"])
    save(photos["src"] / "copy.png", test, compress_level=1)                     # other bytes, same pixels
    (photos["src"] / "kodim99.png").write_bytes(photos["test"].read_bytes())      # the very file
    small = np.asarray(Image.fromarray(test).resize((288, 192), Image.Resampling.LANCZOS))
    save(photos["src"] / "resized.jpg", small, quality=85)                       # re-encoded and resized
    save(photos["src"] / "flipped.png", test[:, ::-1])                           # mirrored
    info, lines = run_build(photos, opts=BuildOptions(**{**OPTS.__dict__, "allow_unlisted": True}))
    assert info["counts"]["images"] == 6 and info["counts"]["skipped_by_reason"] == {"test-set": 4}
    text = "\n".join(lines)
    assert "skipped kodim99.png: evaluation image kodak24/kodim99.png: never in training" in text
    assert "skipped copy.png: looks like evaluation image kodak24/kodim99.png (identical pixels)" in text
    assert "skipped resized.jpg: looks like evaluation image kodak24/kodim99.png (perceptual hash" in text
    assert "skipped flipped.png: looks like evaluation image kodak24/kodim99.png (perceptual hash" in text
    assert not any("kodim99" in n or n in ("copy.png", "resized.jpg", "flipped.png")
                   for n in open_shards(photos["tmp"] / "data").names)


def test_duplicates_small_and_corrupt_files_are_dropped_by_name(photos):
    p0 = decode_rgb(photos["files"][0])
    dup = save(photos["src"] / "dup.jpg", np.asarray(Image.fromarray(p0).resize((300, 225))), quality=80)
    tiny = save(photos["src"] / "tiny.png", scene(60, 90, seed=7))
    broken = photos["src"] / "broken.png"
    broken.write_bytes(photos["files"][1].read_bytes()[:400])
    # list the new files in the manifest, so only their content decides (broken: the hash of its bytes)
    new = load_manifest(photos["manifest"])
    for f in (dup, tiny):
        new.append(row(f))
    broken_sha = hashlib.sha256(broken.read_bytes()).hexdigest()
    new.append(SourceFile(**{**row(photos["files"][1]).__dict__, "sha256": broken_sha,
                             "file": "photos/fixture/broken.png"}))
    write_manifest(new, photos["manifest"])
    info, lines = run_build(photos)
    text = "\n".join(lines)
    assert info["counts"]["images"] == 6, text
    assert info["counts"]["skipped_by_reason"] == {"corrupt": 1, "duplicate": 1, "too-small": 1}
    assert "skipped broken.png: cannot decode:" in text
    assert "skipped tiny.png: too small (90x60; shorter side under 64)" in text
    assert ("skipped dup.jpg: near-duplicate of photos/fixture/p0.png" in text
            or "skipped p0.png: near-duplicate of photos/fixture/dup.jpg" in text)


def test_downscale_is_antialiased_and_respects_min_size():
    # a pixel-period pattern (what demosaicing and sharpening leave) averages out; flat stays flat
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    small = downscale(checker, 2.0)
    assert small.shape == (32, 32, 3) and small[4:-4, 4:-4].std() < 2
    flat = np.full((50, 80, 3), 118, np.uint8)
    assert np.abs(downscale(flat, 2.0).astype(int) - 118).max() <= 1
    opts = BuildOptions(downscale=2.0, min_size=256)
    assert reduction(1000, 1500, opts) == 2.0
    assert reduction(321, 481, opts) == pytest.approx(321 / 256)        # keeps the shorter side at 256
    assert reduction(200, 300, opts) == 1.0
    assert reduction(4000, 6000, BuildOptions(max_megapixels=1.0)) == pytest.approx(np.sqrt(24))


def test_failed_build_leaves_nothing_and_keeps_the_old_one(photos, monkeypatch):
    out = photos["tmp"] / "data"
    run_build(photos)
    before = sorted(p.name for p in out.iterdir())
    calls = []

    def boom(self, rgb, **kw):
        calls.append(kw["name"])
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_add(self, rgb, **kw)
    real_add = shards.ShardWriter.add
    monkeypatch.setattr(shards.ShardWriter, "add", boom)
    with pytest.raises(RuntimeError):
        run_build(photos)
    assert sorted(p.name for p in out.iterdir()) == before and len(open_shards(out)) == 6
    assert [p.name for p in photos["tmp"].iterdir() if p.name.startswith(".data")] == []
    fresh = photos["tmp"] / "fresh"
    calls.clear()
    with pytest.raises(RuntimeError):
        run_build(photos, out=fresh)
    assert not fresh.exists()
    other = photos["tmp"] / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    monkeypatch.setattr(shards.ShardWriter, "add", real_add)
    with pytest.raises(Edge4KError, match="not a shard folder"):
        run_build(photos, out=other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(Edge4KError, match="no index.json"):
        open_shards(other)


def test_lossy_codec_and_size_budget(photos):
    opts = BuildOptions(**{**OPTS.__dict__, "codec": "jpeg", "quality": 95})
    info, _ = run_build(photos, opts=opts)
    s = open_shards(photos["tmp"] / "data")
    for i, name in enumerate(s.names):
        original = decode_rgb(photos["src"] / Path(name).name)
        ref = downscale(original, reduction(*original.shape[:2], OPTS)).astype(float)
        psnr = 10 * np.log10(255 ** 2 / np.mean((s[i].astype(float) - ref) ** 2))
        assert psnr > 38, (name, psnr)
    lossless, _ = run_build(photos, out=photos["tmp"] / "lossless")
    assert info["bytes"] < lossless["bytes"]
    # the measurement script agrees, and times random crops
    report = data_bench.compare(str(photos["tmp"] / "data"), str(photos["tmp"] / "lossless"))
    assert report["images"] == 6 and report["psnr_db_min"] > 38
    rates = data_bench.decode_rates(str(photos["tmp"] / "lossless"), crop=64, seconds=0.2)
    assert rates["decode_crops_per_s"] > 0 and rates["decode_crops_per_cpu_s_4_per_window"] > 0
    budget = lossless["bytes"] / 2 / 2 ** 20
    capped, _ = run_build(photos, out=photos["tmp"] / "capped",
                          opts=BuildOptions(**{**OPTS.__dict__, "max_mb": budget}))
    kept = capped["counts"]["images"]
    assert 0 < kept < 6 and capped["counts"]["left_out_by_max_mb"] == 6 - kept


def test_cli_build_list_and_errors(photos, capsys):
    rc = main(["data", "build", "--from", str(photos["src"]), "-o", str(photos["tmp"] / "cli"), "--manifest",
               str(photos["manifest"]), "--min-size", "64", "--tile", "64"])
    out = capsys.readouterr().out
    assert rc == 0 and "6 images (train 5, validation 1)" in out
    assert main(["data", "list", "--manifest", str(photos["manifest"]), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["photographs"] == 6 and s["files"] == 7
    assert s["by_split"]["train"]["files"] == 5 and s["by_split"]["test/kodak24"]["files"] == 1
    assert s["by_source"]["photo/fixture"]["files"] == 6 and s["by_licence"]["CC0 (fixture)"]["files"] == 7
    assert main(["data", "list", "--manifest", str(photos["manifest"])]) == 0
    assert "7 files; 6 photographs" in capsys.readouterr().out
    assert main(["data", "build", "--from", str(photos["tmp"] / "nope"), "-o", str(photos["tmp"] / "x"),
                 "--manifest", str(photos["manifest"])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edge4k: error: input folder not found") and err.count("\n") == 1
    assert not (photos["tmp"] / "x").exists()
    assert main(["data", "build", "--from", str(photos["src"]), "-o", str(photos["tmp"] / "x"),
                 "--codec", "png", "--quality", "90", "--manifest", str(photos["manifest"])]) == 1
    assert "--quality is for --codec jpeg" in capsys.readouterr().err


def test_extract_from_a_clone(photos, tmp_path, capsys):
    repo = tmp_path / "clones" / "fixtures"
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.png").write_bytes(photos["files"][0].read_bytes())
    subprocess.run(git + ["add", "a.png"], check=True)
    subprocess.run(git + ["commit", "-qm", "a"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    good = SourceFile(**{**row(photos["files"][0]).__dict__, "commit": commit, "path": "a.png"})
    bad = SourceFile(**{**good.__dict__, "sha256": "0" * 64, "file": "photos/fixture/bad.png"})
    manifest = tmp_path / "m.csv"
    write_manifest([good, bad], manifest)
    rc = main(["data", "extract", "--clones", str(tmp_path / "clones"), "-o", str(tmp_path / "root"),
               "--manifest", str(manifest)])
    captured = capsys.readouterr()
    assert rc == 1 and "1 files written" in captured.out and "does not match its sha256" in captured.err
    assert (tmp_path / "root" / good.file).read_bytes() == photos["files"][0].read_bytes()
    assert not (tmp_path / "root" / bad.file).exists()


def test_extract_names_what_a_snapshot_lacks_and_goes_on(photos, tmp_path, capsys):
    """A fetched snapshot (bare OWNER+NAME/repo) lacks files of 4 MiB and more: each row it cannot
    give is one line saying why (content absent, path or commit absent), the rest is extracted."""
    work = tmp_path / "work"
    git = ["git", "-C", str(work), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    for name, src in (("a.png", photos["files"][0]), ("big.png", photos["files"][1])):
        (work / name).write_bytes(src.read_bytes())
    subprocess.run(git + ["add", "a.png", "big.png"], check=True)
    subprocess.run(git + ["commit", "-qm", "a"], check=True)
    snapshot = tmp_path / "mirrors" / "example+fixtures" / "repo"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(snapshot)], check=True)
    blob = subprocess.run(git + ["rev-parse", "HEAD:big.png"], capture_output=True, text=True, check=True).stdout.strip()
    (snapshot / "objects" / blob[:2] / blob[2:]).unlink()          # as a snapshot leaves out a large file
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    good = SourceFile(**{**row(photos["files"][0]).__dict__, "commit": commit, "path": "a.png"})
    rows = [good,
            SourceFile(**{**row(photos["files"][1]).__dict__, "commit": commit, "path": "big.png"}),
            SourceFile(**{**row(photos["files"][2]).__dict__, "commit": commit, "path": "gone.png"}),
            SourceFile(**{**row(photos["files"][3]).__dict__, "commit": "1" * 40, "path": "a.png"})]
    manifest = tmp_path / "m.csv"
    write_manifest(rows, manifest)
    rc = main(["data", "extract", "--clones", str(tmp_path / "mirrors"), "-o", str(tmp_path / "root"),
               "--manifest", str(manifest)])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("not extracted:")]
    assert rc == 1 and "1 files written, 0 already present, 3 could not be extracted" in out
    assert len(lines) == 3 and "[" not in err
    assert f"{rows[1].file}: example/fixtures@{commit[:12]}:big.png is listed but its content is absent" in lines[0]
    assert f"{rows[2].file}: example/fixtures@{commit[:12]} has no gone.png" in lines[1]
    assert f"{rows[3].file}: commit example/fixtures@111111111111 is not in the clone" in lines[2]
    assert err.strip().splitlines()[-1] == "edge4k: error: 3 of 4 files could not be extracted (listed above)"
    assert (tmp_path / "root" / good.file).read_bytes() == photos["files"][0].read_bytes()


@pytest.mark.parametrize("column, value, words", [
    ("commit", "--output=PLANTED", "is not 40 hex digits"),
    ("commit", "HEAD", "commit 'HEAD' is not 40 hex digits"),
    ("path", "../secret.png", "path '../secret.png' must be a relative path inside its root"),
    ("path", "-p", "path '-p' must be a relative path"),
    ("file", "../../escaped.png", "file '../../escaped.png' must be a relative path inside its root"),
    ("file", "/tmp/abs.png", "file '/tmp/abs.png' must be a relative path"),
    ("repository", "../x", "repository '../x' is not owner/name"),
])
def test_extract_refuses_values_git_or_the_file_system_would_misread(photos, tmp_path, capsys, column, value, words):
    """Issue 27: a commit of --output=PATH reached git as an option and created PATH."""
    manifest = tmp_path / "m.csv"
    value = value.replace("PLANTED", str(tmp_path / "PLANTED"))
    write_manifest([SourceFile(**{**row(photos["files"][0]).__dict__, column: value})], manifest)
    (tmp_path / "clones").mkdir()
    rc = main(["data", "extract", "--clones", str(tmp_path / "clones"), "-o", str(tmp_path / "root"),
               "--manifest", str(manifest)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and words in err[0] and "line 2" in err[0]
    assert not (tmp_path / "PLANTED").exists() and not (tmp_path / "root").exists()


# --- the committed manifest ---------------------------------------------------------------------

def test_committed_manifest_keeps_the_test_sets_out_of_training():
    rows = load_manifest()
    test = [r for r in rows if r.split == "test"]
    assert sum(r.set == "kodak24" for r in test) == 24 and sum(r.set == "mcmaster18" for r in test) == 18
    assert {(r.width, r.height) for r in test if r.set == "kodak24"} <= {(768, 512), (512, 768)}
    assert {(r.width, r.height) for r in test if r.set == "mcmaster18"} == {(500, 500)}
    training = [r for r in rows if r.split in ("train", "validation")]
    assert len(training) >= 500 and sum(r.megapixels for r in training) >= 300
    assert all(r.kind == "photo" and r.licence and r.repository and len(r.commit) == 40 for r in training)
    assert not {r.sha256 for r in test} & {r.sha256 for r in training}
    assert not {r.pixels_sha256 for r in test} & {r.pixels_sha256 for r in training}
    guard = EvalSetGuard(rows, near=TEST_NEAR)
    hashes = np.array([int(r.phash, 16) for r in training], dtype=np.uint64)
    for t in test:
        assert hamming(int(t.phash, 16), hashes).min() > TEST_NEAR, t.file
    assert len(guard.by_sha) == len(test)
    assert set(eval_set_files("kodak24", rows)) == {f"kodim{i:02d}.png" for i in range(1, 25)}
    assert len(eval_set_files("mcmaster18", rows)) == 18 and eval_set_files("nope", rows) == {}
    raws = [r for r in rows if r.kind == "raw"]
    assert raws and all(r.split == "raw" and r.width > 0 for r in raws)

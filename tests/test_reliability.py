"""Untrusted input never deletes a folder, runs a command with a user's value as an option, or
prints a traceback (issue 27): compile -o's guard, data extract's argument checks, and the API's
one-line errors."""
import json

import pytest

from edge4k.cli import main
from edge4k.compiler.build import check_output_folder
from edge4k.errors import Edge4KError


def test_compile_refuses_a_folder_that_is_not_a_build(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    (thesis / "data.csv").write_text("a,b\n")
    assert main(["compile", "--target", "host-xnnpack", "--preset", "e4k-t-f16", "-o", str(thesis)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without an Edge4K manifest.json" in err[0] and "--force" in err[0]
    assert sorted(p.name for p in thesis.iterdir()) == ["data.csv", "thesis.tex"]


def test_compile_output_folder_rules(tmp_path):
    check_output_folder(tmp_path / "new", force=False)   # absent: fine
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", force=False)
    old = tmp_path / "old-build"
    old.mkdir()
    (old / "model.pte").write_bytes(b"x")
    (old / "manifest.json").write_text(json.dumps({"schema": "edge4k.manifest/1"}))
    check_output_folder(old, force=False)   # an older build is replaced
    (old / "manifest.json").write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(Edge4KError, match="without an Edge4K manifest.json"):
        check_output_folder(old, force=False)
    check_output_folder(old, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(Edge4KError, match="is not a folder"):
        check_output_folder(tmp_path / "file", force=False)
    (tmp_path / "link").symlink_to(old)
    with pytest.raises(Edge4KError, match="is not a folder"):
        check_output_folder(tmp_path / "link", force=False)

"""`edge4k study all`: sections assembled into the report, figures linked from it, reuse."""
import json

import pytest

from edge4k.cli import main
from edge4k.errors import Edge4KError
from edge4k.studies import run_all, study_module


def test_all_assembles_the_report_and_reuse_keeps_existing_studies(tmp_path):
    reports, doc = tmp_path / "reports", tmp_path / "docs" / "RESEARCH.md"
    run_all(reports, doc, quick=True, only=("phone",), progress=None)
    blob = json.loads((reports / "phone" / "phone.json").read_text())
    assert blob["schema"] == "edge4k.study/1" and blob["quick"] and blob["answer"]
    text = doc.read_text()
    assert "## " in text and blob["answer"][:40] in text
    assert "loadavg" not in text and blob["environment"]["cores"] >= 1
    for fig in blob["figures"]:                       # linked relative to the doc
        assert f"](../reports/phone/{fig})" in text
    stamp = (reports / "phone" / "phone.json").stat().st_mtime_ns
    run_all(reports, doc, quick=True, reuse=True, only=("phone",), progress=None)
    assert (reports / "phone" / "phone.json").stat().st_mtime_ns == stamp


def test_unknown_study_is_one_line_error(capsys):
    with pytest.raises(Edge4KError, match="valid studies"):
        study_module("speed")
    assert main(["study", "speed"]) == 1
    assert "unknown study 'speed'" in capsys.readouterr().err

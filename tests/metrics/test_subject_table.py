"""`mindhier eval table`: per-subject values and the mean over subjects, one protocol per row."""

from __future__ import annotations

import json

import pytest

from mindhier.cli import main
from mindhier.errors import DataError
from mindhier.metrics.subject_table import format_table, subject_table


def record(tmp_path, subject, pixcorr, clip=None, split="test", samples=1):
    metrics = {"pixcorr": {"mean": pixcorr}, "ssim": {"mean": 0.3}, "clip": {"kind": "absent", "missing": "x"}}
    if clip is not None:
        metrics["clip.two_way"] = {"mean": clip}
    protocol = {"subject": subject, "split": split, "samples": samples, "selection": "first sample"}
    path = tmp_path / f"subj{subject}" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"protocol": protocol, "metrics": metrics}))
    return path


def test_the_mean_is_over_subjects_and_absent_columns_are_named(tmp_path):
    files = [record(tmp_path, 1, 0.2, clip=0.9), record(tmp_path, 2, 0.4, clip=0.7), record(tmp_path, 5, 0.3)]
    table = subject_table(files)
    columns = {c["column"]: c for c in table["columns"]}
    assert table["subjects"] == [1, 2, 5]
    assert columns["PixCorr"]["per_subject"] == [0.2, 0.4, 0.3] and columns["PixCorr"]["mean"] == pytest.approx(0.3)
    assert "CLIP" not in columns and "CLIP" in table["absent"]  # subject 5 lacks it: no mean over three of four
    text = format_table(table)
    assert "| **mean** | **0.300** | **0.300** |" in text and text.startswith("split test, subjects 1, 2, 5")


def test_rows_of_different_protocols_or_repeated_subjects_are_refused(tmp_path, capsys):
    new, old = record(tmp_path, 1, 0.2), record(tmp_path, 2, 0.4, split="test_old")
    with pytest.raises(DataError, match="has split 'test_old' but"):
        subject_table([new, old])
    best_of = record(tmp_path, 5, 0.4, samples=4)
    assert main(["eval", "table", str(new), str(best_of)]) == 2
    assert "has samples 4 but" in capsys.readouterr().err
    with pytest.raises(DataError, match="repeat"):
        subject_table([new, new])


def test_the_cli_writes_the_table_and_its_data_and_refuses_to_overwrite(tmp_path, capsys):
    files = [str(record(tmp_path, 1, 0.2)), str(record(tmp_path, 2, 0.4))]
    out = tmp_path / "table.md"
    assert main(["eval", "table", *files, "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["subjects"] == [1, 2]
    assert "| 2 | 0.400 |" in out.read_text()
    assert main(["eval", "table", *files, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err

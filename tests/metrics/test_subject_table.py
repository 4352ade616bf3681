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


def four_subjects(tmp_path, split="test"):
    return [str(record(tmp_path, s, 0.1 * s, clip=0.9, split=split)) for s in (1, 2, 5, 7)]


def test_published_rows_stand_beside_ours_labelled_as_reference_with_their_source(tmp_path, capsys):
    out = tmp_path / "table.md"
    assert main(["eval", "table", *four_subjects(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert capsys.readouterr().out.startswith(text.rstrip("\n"))  # printed as written
    # in our columns (PixCorr, SSIM, CLIP here), identification as a fraction like ours: 96.4 % → 0.964
    assert "| ref. 1: MindHier (ICLR 26) | *0.235* | *0.381* | *0.964* |" in text
    assert "| ref. 2: MindHier† (ICLR 26) | *0.326* | *0.461* | *0.954* |" in text
    assert "| ref. 3: MindEye2 (ICML 24), 40 sessions | *0.322* | *0.431* | *0.930* |" in text
    assert "| ref. 4: Brain-IT (ICLR 26), 40 h | *0.386* | *0.486* | *0.964* |" in text
    assert "ref. rows: published figures, not computed here" in text
    assert "ref. 1: MindHier (arXiv 2510.22335, ICLR 2026), Table 1, without auxiliary low-level images" in text
    assert "ref. 2: MindHier (arXiv 2510.22335, ICLR 2026), Table 1, † row" in text
    assert text.count("NSD new_test (1,000 images), mean of subjects 1, 2, 5, 7") == 4
    assert "our mean is over" not in text  # the same four subjects

    data = json.loads(out.with_suffix(".json").read_text())
    assert [c["column"] for c in data["columns"]] == ["PixCorr", "SSIM", "CLIP"]  # ours only: none are published
    rows = data["reference_rows"]
    assert [r["label"] for r in rows] == [
        "MindHier (ICLR 26)",
        "MindHier† (ICLR 26)",
        "MindEye2 (ICML 24), 40 sessions",
        "Brain-IT (ICLR 26), 40 h",
    ]
    assert all(r["reference"] and r["split"] == "test" and r["test_images"] == 1000 for r in rows)
    assert rows[2]["values"]["Alex(5)"] == pytest.approx(0.986) and rows[0]["values"]["Alex(2)"] is None
    assert rows[3]["values"]["SwAV"] == pytest.approx(0.320) and data["reference_note"] is None


def test_no_published_row_of_another_split_is_shown_and_the_table_says_so(tmp_path):
    table = subject_table(four_subjects(tmp_path, split="test_old"))
    assert table["reference_rows"] == []
    text = format_table(table)
    assert "ref. 1" not in text and "MindEye2" not in text
    assert text.endswith(
        "no reference rows for split test_old: the published rows recorded here are on test (1,000 images) only"
    )


def test_no_reference_leaves_them_out_and_fewer_subjects_are_named(tmp_path, capsys):
    files = [str(record(tmp_path, 1, 0.2)), str(record(tmp_path, 2, 0.4))]
    assert main(["eval", "table", *files, "--no-reference"]) == 0
    assert "ref." not in capsys.readouterr().out
    text = format_table(subject_table(files))
    assert "our mean is over subjects 1, 2; the ref. rows average subjects 1, 2, 5, 7" in text

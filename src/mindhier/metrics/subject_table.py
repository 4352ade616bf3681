"""`mindhier eval table`: the field's table — every metric of several subjects' evaluations, and their mean.

Papers report one row per method: each metric averaged over subjects 1, 2, 5, 7, in the
column order PixCorr, SSIM, AlexNet(2), AlexNet(5), Inception, CLIP (two-way identification, higher is
better), EfficientNet-B1, SwAV (correlation distance, lower is better). The table takes one `metrics.json` per
subject (what `eval recons` writes), refuses records of different splits or protocols (their mean would mean
nothing), and keeps each subject's value beside the mean. Metrics absent for any subject are left out of
the mean and named. Beside them stand published rows of the same split as reference — MindHier's, MindEye2's and
the best published one (`metrics/published_rows.py`), labelled with their source and never computed here; a
table of a split no published row is on says so instead of showing rows of another test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mindhier.errors import DataError
from mindhier.fileio import read_json
from mindhier.metrics.published_rows import reference_rows

# (column, metric key in metrics.json, better)
FIELD_COLUMNS = (
    ("PixCorr", "pixcorr", "higher"),
    ("SSIM", "ssim", "higher"),
    ("Alex(2)", "alexnet_2.two_way", "higher"),
    ("Alex(5)", "alexnet_5.two_way", "higher"),
    ("Incep", "inception.two_way", "higher"),
    ("CLIP", "clip.two_way", "higher"),
    ("Eff", "effnet.corr_distance", "lower"),
    ("SwAV", "swav.corr_distance", "lower"),
)
PROXY_COLUMNS = (
    ("Lite0 late (proxy)", "lite0_late.two_way", "higher"),
    ("Lite2 late (proxy)", "lite2_late.two_way", "higher"),
)
# protocol fields that must agree between the subjects of one row
SAME_PROTOCOL = ("split", "samples", "selection", "averaging", "decoder", "routing")


def subject_table(metrics_files: list[str | Path], reference: bool = True) -> dict[str, Any]:
    """Per-subject values and the mean over subjects of every field column (and the offline proxies), and the
    published rows of the same split (`reference=False`: none)."""
    if not metrics_files:
        raise DataError("eval table needs one metrics.json per subject; pass one metrics.json per subject")
    records = [(Path(p), read_json(p, "metrics record")) for p in metrics_files]
    first_path, first = records[0]
    subjects = []
    for path, record in records:
        protocol = record.get("protocol", {})
        for key in SAME_PROTOCOL:
            if protocol.get(key) != first["protocol"].get(key):
                raise DataError(
                    f"{path} has {key} {protocol.get(key)!r} but {first_path} has {first['protocol'].get(key)!r}; "
                    "a table row averages one protocol over subjects — evaluate them alike"
                )
        subjects.append(int(protocol["subject"]))
    if len(set(subjects)) != len(subjects):
        raise DataError(f"subjects {subjects} repeat; pass one metrics.json per subject")
    columns, missing = [], []
    for name, key, better in FIELD_COLUMNS + PROXY_COLUMNS:
        values = [record["metrics"].get(key, {}).get("mean") for _, record in records]
        if any(v is None for v in values):
            missing.append(name)
            continue
        columns.append(
            {"column": name, "metric": key, "better": better, "per_subject": values, "mean": sum(values) / len(values)}
        )
    split = first["protocol"].get("split")
    published, reference_note = reference_rows(split) if reference else ([], None)
    return {
        "subjects": subjects,
        "split": split,
        "protocol": {key: first["protocol"].get(key) for key in SAME_PROTOCOL},
        "columns": columns,
        "absent": missing,
        "sources": [str(p) for p, _ in records],
        "reference_rows": [row.record() for row in published],  # published figures, not computed here
        "reference_note": reference_note,
    }


def _reference_lines(table: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The published rows as table rows in our columns, and the lines under the table that say what they are."""
    rows, notes = [], []
    for k, row in enumerate(table.get("reference_rows", []), start=1):
        cells = [f"ref. {k}: {row['label']}"]
        for column in table["columns"]:
            value = row["values"].get(column["column"])
            cells.append("—" if value is None else f"*{value:.3f}*")
        rows.append("| " + " | ".join(cells) + " |")
        note = f" ({row['note']})" if row["note"] else ""
        notes.append(f"ref. {k}: {row['source']}{note}")
    if notes:
        notes.insert(0, "ref. rows: published figures, not computed here (—: no figure recorded)")
        averaged = {tuple(sorted(row["subjects"])) for row in table["reference_rows"]}
        if averaged != {tuple(sorted(table["subjects"]))}:
            theirs = " / ".join(", ".join(map(str, subjects)) for subjects in sorted(averaged))
            ours = ", ".join(map(str, table["subjects"]))
            notes.append(f"our mean is over subjects {ours}; the ref. rows average subjects {theirs}")
    if table.get("reference_note"):
        notes.append(table["reference_note"])
    return rows, notes


def format_table(table: dict[str, Any]) -> str:
    """A Markdown table: one row per subject and the mean row, as papers print it, then the published rows of the
    same split in italics (`ref. k`), with their sources and what they average under the table."""
    head = ["subject", *[c["column"] + (" ↑" if c["better"] == "higher" else " ↓") for c in table["columns"]]]
    lines = [
        f"split {table['split']}, subjects {', '.join(map(str, table['subjects']))}; "
        f"single-shot unless samples > 1 (samples {table['protocol']['samples']}, {table['protocol']['selection']})",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for k, subject in enumerate(table["subjects"]):
        cells = [str(subject), *[f"{c['per_subject'][k]:.3f}" for c in table["columns"]]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{c['mean']:.3f}**" for c in table["columns"]) + " |")
    reference_rows_md, reference_notes = _reference_lines(table)
    lines += reference_rows_md
    if table["absent"]:
        lines.append(f"absent for some subject (weights not found): {', '.join(table['absent'])}")
    return "\n".join(lines + reference_notes)

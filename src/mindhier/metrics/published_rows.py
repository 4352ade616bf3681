"""Published rows of the field's table, which `mindhier eval table` prints beside ours as reference rows.

These are other people's numbers, never computed here: each row keeps its figures as the paper prints them (two-way
identification in %, correlation distances as they are), where they come from, and the test split they were computed
on. The figures are transcribed from the project's notes of the papers' tables, which agree where more than one note
covers a paper; they were not re-checked against the PDFs here. A row is shown only beside a table of the same
split: NSD has two shared test sets (`test` = MindEye2's `new_test`, 1,000 images, all 40 sessions; `test_old` = the
earlier 982 images), and numbers of one are no reference for the other. Every row here is on the 1,000-image set;
for `test_old` none is shown, and the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the field table's columns (`subject_table.FIELD_COLUMNS`), and which of them papers print in percent
COLUMNS = ("PixCorr", "SSIM", "Alex(2)", "Alex(5)", "Incep", "CLIP", "Eff", "SwAV")
PERCENT_COLUMNS = ("Alex(2)", "Alex(5)", "Incep", "CLIP")  # two-way identification: the table holds fractions

NEW_TEST = "test"  # our split name for MindEye2's new_test: the 1,000 shared images
SPLIT_IMAGES = {"test": 1000, "test_old": 982}
FOUR_SUBJECTS = (1, 2, 5, 7)


@dataclass(frozen=True)
class PublishedRow:
    label: str  # the row's name in the table
    source: str  # paper, table, split and subjects, and how the figures reached us
    split: str  # the split they were computed on, in our names ("test": new_test, 1,000 images)
    values: tuple[float | None, ...]  # per `COLUMNS`, as the paper prints them; None: not reported
    note: str = ""  # what differs from a plain single-shot row (blending, selection)
    subjects: tuple[int, ...] = FOUR_SUBJECTS  # the subjects each figure averages

    def in_table_units(self) -> dict[str, float | None]:
        """Column → value in the units of our table (identification as a fraction, 95.9 % → 0.959)."""
        return {
            column: None if value is None else (value / 100 if column in PERCENT_COLUMNS else value)
            for column, value in zip(COLUMNS, self.values, strict=True)
        }

    def record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "reference": True,  # published, not computed here
            "source": self.source,
            "split": self.split,
            "test_images": SPLIT_IMAGES[self.split],
            "subjects": list(self.subjects),
            "values": self.in_table_units(),
            "note": self.note,
        }


_NEW_TEST_4 = "NSD new_test (1,000 images), mean of subjects 1, 2, 5, 7"

PUBLISHED_ROWS = (
    PublishedRow(
        "MindHier (ICLR 26)",
        f"MindHier (arXiv 2510.22335, ICLR 2026), Table 1, without auxiliary low-level images; {_NEW_TEST_4}; "
        "figures from two paper notes that agree",
        NEW_TEST,
        (0.235, 0.381, None, None, 95.9, 96.4, 0.606, 0.329),
        "best-of-N selection; its AlexNet means are not in the notes",
    ),
    PublishedRow(
        "MindHier† (ICLR 26)",
        f"MindHier (arXiv 2510.22335, ICLR 2026), Table 1, † row; {_NEW_TEST_4}; "
        "figures from two paper notes that agree",
        NEW_TEST,
        (0.326, 0.461, None, None, 95.9, 95.4, 0.613, 0.345),
        "† blends in MindEye2's blurry low-level images; best-of-N selection; its AlexNet means are not in the notes",
    ),
    PublishedRow(
        "MindEye2 (ICML 24), 40 sessions",
        "MindEye2 (arXiv 2403.11207, ICML 2024), its main reconstruction table (table number not checked), 40 "
        f"sessions per subject; {_NEW_TEST_4}; figures from three paper notes that agree",
        NEW_TEST,
        (0.322, 0.431, 96.1, 98.6, 95.4, 93.0, 0.619, 0.344),
        "SDXL-unCLIP, refined, blended 25 % with its blurry low-level image",
    ),
    PublishedRow(
        "Brain-IT (ICLR 26), 40 h",
        "Brain-IT (arXiv 2510.25976, ICLR 2026), its main reconstruction table (table number not checked), "
        f"40 h per subject; {_NEW_TEST_4}; figures from one paper note; the best published row",
        NEW_TEST,
        (0.386, 0.486, 98.4, 99.5, 97.3, 96.4, 0.564, 0.320),
    ),
)


def reference_rows(split: str | None) -> tuple[list[PublishedRow], str | None]:
    """The published rows computed on `split`, and, when there are none, a line saying why."""
    rows = [row for row in PUBLISHED_ROWS if row.split == split]
    if rows:
        return rows, None
    splits = sorted({row.split for row in PUBLISHED_ROWS})
    sets = ", ".join(f"{s} ({SPLIT_IMAGES[s]:,} images)" for s in splits)
    return [], f"no reference rows for split {split}: the published rows recorded here are on {sets} only"

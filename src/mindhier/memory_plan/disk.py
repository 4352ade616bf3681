"""The disk each step of the NSD recipe (docs/reproduce-nsd.md) takes, from array shapes and parameter counts.

    fetch nsd     MindEye2's stimuli (73,000 × 3 × 224 × 224 float16, 22 GB) and each subject's betas (30,000
                  trials × voxels float32; the plan's voxel count, subject 1's by default, the largest)
    features      the teacher's feature cache: every stimulus the subjects saw × levels × tokens × width float16
                  (+ caption tokens); nothing with `teacher.cache=false`
    tokenize      the token cache: every stimulus × the tokenizer's tokens, int32
    train …       per subject: the best and the last weights (fp32 safetensors) and the two resume points kept
                  (`train/resume.py` KEEP): fp32 weights + AdamW's two fp32 states
    reconstruct   per subject and test split: 1,000 images at the tokenizer's size (an uncompressed upper bound;
                  PNG is smaller)

An estimate from shapes, not a measurement; the test checks the feature cache's bytes per image against a cache
it builds.
"""

from __future__ import annotations

from dataclasses import dataclass

from mindhier.config import MindhierConfig
from mindhier.memory_plan.stages import BETA_BYTES, STIMULUS_BYTES, TOKEN_BYTES
from mindhier.memory_plan.teacher_cost import TeacherCost

NSD_STIMULI = 73_000  # MindEye2's stimulus HDF5 holds every NSD image
NSD_SUBJECTS = 4  # subjects 1, 2, 5, 7: the four who completed all 40 sessions
NSD_SUBJECTS_MAX = 8
NSD_STIMULI_PER_SUBJECT = 10_000  # 9,000 of a subject's own + the 1,000 shared
NSD_SHARED_STIMULI = 1_000
NSD_TRIALS_PER_SUBJECT = 30_000  # 40 sessions × 750 trials
TEST_IMAGES = 1_000
RESUME_POINTS = 2  # train/resume.py KEEP
RESUME_BYTES_PER_PARAMETER = 4 + 8  # fp32 weights + AdamW's exp_avg and exp_avg_sq


@dataclass(frozen=True)
class DiskRow:
    step: str  # the recipe's step
    per: str  # "once" | "per subject" | "per subject and split"
    bytes: int
    what: str


def seen_stimuli(subjects: int) -> int:
    """Distinct stimuli `subjects` NSD subjects saw: their own 9,000 each and the 1,000 all saw."""
    return subjects * (NSD_STIMULI_PER_SUBJECT - NSD_SHARED_STIMULI) + NSD_SHARED_STIMULI


def _run_bytes(parameters: int) -> int:
    return 2 * 4 * parameters + RESUME_POINTS * RESUME_BYTES_PER_PARAMETER * parameters


def disk_rows(
    cfg: MindhierConfig, stages: tuple, teacher: TeacherCost, voxels: int, subjects: int
) -> tuple[DiskRow, ...]:
    """One row per step of the recipe (`stages`: the plan's `StageSummary`s, for parameter counts)."""
    stimuli = seen_stimuli(subjects)
    parameters = {stage.name: stage.parameters for stage in stages}
    n_tokens = sum(side * side for side in cfg.tokenizer.scales)
    cached = cfg.teacher.cache
    rows = [
        DiskRow(
            "fetch nsd",
            "once",
            NSD_STIMULI * STIMULUS_BYTES + subjects * NSD_TRIALS_PER_SUBJECT * voxels * BETA_BYTES,
            f"stimuli HDF5 (73,000 images) + betas of {subjects} subject(s) ({voxels} voxels each, at most)",
        ),
        DiskRow(
            "features",
            "once",
            stimuli * teacher.feature_bytes_per_image if cached else 0,
            f"{teacher.name} feature cache, {stimuli:,} stimuli × {teacher.feature_bytes_per_image / 1e6:.2f} MB"
            if cached
            else "none: teacher.cache=false computes the targets in the training step",
        ),
        DiskRow("tokenize", "once", stimuli * n_tokens * TOKEN_BYTES, f"{n_tokens} int32 tokens per stimulus"),
    ]
    for name, step in (
        ("encoder", "train encoder"),
        ("generator", "train generator"),
        ("diffusion", "train diffusion"),
    ):
        if name in parameters:
            rows.append(
                DiskRow(
                    step + (" (optional)" if name == "diffusion" else ""),
                    "per subject",
                    _run_bytes(parameters[name]),
                    "best + last weights (fp32) + 2 resume points (weights + AdamW states)",
                )
            )
    side = cfg.tokenizer.image_px
    rows.append(
        DiskRow(
            "reconstruct",
            "per subject and split",
            TEST_IMAGES * side * side * 3,
            f"{TEST_IMAGES:,} images of {side} px (upper bound: uncompressed)",
        )
    )
    return tuple(rows)


def total_disk_bytes(rows: tuple[DiskRow, ...], subjects: int, splits: int = 2) -> int:
    """The recipe's whole footprint: steps done once, per-subject runs (the optional baseline left out) and both
    test splits' reconstructions."""
    total = 0
    for row in rows:
        if "optional" in row.step:
            continue
        total += row.bytes * {"once": 1, "per subject": subjects, "per subject and split": subjects * splits}[row.per]
    return total

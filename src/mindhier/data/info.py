"""`mindhier data info`: what a dataset folder holds, as a JSON-ready summary.

Per subject: voxels (per ROI when the manifest has labels), trials and unique images per split, and
the median noise ceiling — from the manifest (the simulator's configured values) and measured from
the test repetitions with NSD's estimator, so real NSD gets a figure too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mindhier.config import DataConfig
from mindhier.data.noise_ceiling import ncsnr_from_trials, noise_ceiling
from mindhier.data.nsd import open_dataset


def describe_dataset(
    root: str | Path, data_cfg: DataConfig | None = None, verify_images: bool = True
) -> dict[str, Any]:
    """Validate the dataset (optionally decoding every referenced image) and summarise it."""
    with open_dataset(root, data_cfg) as dataset:
        summary: dict[str, Any] = {
            "root": str(dataset.root),
            "manifest": dataset.manifest is not None,
            "image_store": {"kind": dataset.images.kind, "location": str(dataset.images.location)},
            "subjects": {},
        }
        for subject in dataset.subjects:
            recording = dataset.recording(subject)
            splits = {}
            for name in ("train", "val", "test", "test_old"):
                if name == "test_old" and recording.test_old_trials is None:
                    continue
                split = dataset.split(subject, name)
                if verify_images:
                    dataset.images.verify(split.image_index_N)
                separate = dataset.split(subject, name, repetitions="separate") if name != "train" else split
                splits[name] = {"trials": len(separate), "images": len(np.unique(split.image_index_N))}
            test = recording.test_trials
            betas = recording.betas.read_rows(test.row_T)
            n_repeats = dataset.cfg.test_repeats
            measured = noise_ceiling(ncsnr_from_trials(betas, test.image_T), n_repeats)
            entry: dict[str, Any] = {
                "n_voxels": recording.n_voxels,
                "splits": splits,
                "dropped_train_trials_of_test_images": recording.dropped_train_trials,
                "train_sessions": len(recording.sessions),
                "sessions_used": dataset.cfg.describe_sessions(),
                "median_noise_ceiling_measured": round(float(np.median(measured)), 2),
                "noise_ceiling_repeats": n_repeats,
            }
            if recording.roi_labels is not None:
                labels = np.asarray(recording.roi_labels)
                entry["voxels_per_roi"] = {roi: int((labels == roi).sum()) for roi in dict.fromkeys(labels)}
            manifest_entry = (dataset.manifest or {}).get("subjects", {}).get(str(subject), {})
            if "median_noise_ceiling" in manifest_entry:
                entry["median_noise_ceiling_configured"] = manifest_entry["median_noise_ceiling"]
            summary["subjects"][str(subject)] = entry
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for the CLI."""
    lines = [
        f"dataset {summary['root']} (MindEye2 layout; images: {summary['image_store']['kind']} "
        f"{summary['image_store']['location']}; manifest: {'yes' if summary['manifest'] else 'no'})"
    ]
    for subject, entry in summary["subjects"].items():
        sessions = entry.get("train_sessions", 0)
        used = entry.get("sessions_used", "all")
        session_text = (
            f", {sessions} training sessions" + ("" if used == "all" else f" (using {used})") if sessions else ""
        )
        lines.append(f"subject {subject}: {entry['n_voxels']} voxels{session_text}")
        if "voxels_per_roi" in entry:
            rois = ", ".join(f"{roi} {n}" for roi, n in entry["voxels_per_roi"].items())
            lines.append(f"  voxels per ROI: {rois}")
        for name, counts in entry["splits"].items():
            lines.append(f"  {name:<8} {counts['trials']:>6} trials, {counts['images']:>6} images")
        if entry["dropped_train_trials_of_test_images"]:
            lines.append(f"  dropped {entry['dropped_train_trials_of_test_images']} train trials of test images")
        repeats, measured = entry["noise_ceiling_repeats"], entry["median_noise_ceiling_measured"]
        nc = f"  median noise ceiling (n={repeats}): measured {measured} %"
        if "median_noise_ceiling_configured" in entry:
            nc += f", configured {entry['median_noise_ceiling_configured']} %"
        lines.append(nc)
    return "\n".join(lines)

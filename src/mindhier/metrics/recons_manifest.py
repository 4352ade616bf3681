"""A reconstruction folder's `manifest.json`, read as defensively as a flag: the numbers and names the evaluation
uses are checked before any image is read, and the folders it names must lie inside the reconstruction folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mindhier.records import contained_path, dimension


def checked_manifest(manifest: Any, recons_dir: Path) -> dict[str, Any]:
    """A reconstruction folder's manifest with the numbers and names we use checked like flags (a bad one raises
    `ValueError` / `KeyError`, which `parse_record` turns into one line naming the file), and the folders it names
    inside `recons_dir`, before any image is read."""
    from mindhier.data.nsd import SPLIT_NAMES

    if not isinstance(manifest, dict):
        raise ValueError(f"a manifest is an object, found {type(manifest).__name__}")
    if manifest.get("subject") is not None:
        dimension(manifest["subject"], "subject", most=10_000)
    if manifest.get("split", "test") not in SPLIT_NAMES:
        raise ValueError(f"split should be one of {', '.join(SPLIT_NAMES)}, found {manifest['split']!r}")
    if manifest.get("strips") is not None:
        contained_path(recons_dir, manifest["strips"], "manifest.json strips folder")
    for side in manifest.get("protocol", {}).get("scales") or ():
        dimension(side, "a scale side", most=4096)
    repeats = manifest.get("determinism")
    if repeats and not (isinstance(repeats.get("dirs"), list) and all(isinstance(d, str) for d in repeats["dirs"])):
        raise ValueError(f"determinism.dirs should be a list of folder names, found {repeats.get('dirs')!r}")
    for folder in (repeats or {}).get("dirs", ()):
        contained_path(recons_dir, folder, "manifest.json determinism folder")
    return manifest

"""The folder watcher hands volumes on in order whatever the scanner's export does: out of order, twice, half
written, corrupt or never; and a replay yields a recorded run's volumes in order."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mindhier.data.bold import bids
from mindhier.errors import DataError
from mindhier.realtime.volume_source import FolderSource, ReplaySource, frame_number

SHAPE = (4, 5, 3)


def _volume(value: float) -> np.ndarray:
    return np.full(SHAPE, value, dtype=np.float32)


def _write(folder: Path, number: int, value: float) -> None:
    bids.write_nifti(folder / f"001_000013_{number:06d}.nii.gz", _volume(value), np.eye(4))


def test_frame_numbers_are_the_last_number_in_the_name():
    assert frame_number("001_000013_000005.nii") == 4
    assert frame_number("vol0007.nii.gz", first=0) == 7
    assert frame_number("reference.nii") is None


def test_the_watcher_orders_dedupes_waits_for_half_written_files_and_gives_up_on_lost_ones(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()

    def scanner():
        _write(folder, 2, 2.0)  # out of order: volume 2 before 1
        time.sleep(0.05)
        _write(folder, 1, 1.0)
        _write(tmp_path, 3, 3.0)  # volume 3 arrives in two halves, like a slow copy
        whole = (tmp_path / "001_000013_000003.nii.gz").read_bytes()
        (folder / "001_000013_000003.nii.gz").write_bytes(whole[: len(whole) // 2])
        time.sleep(0.15)
        (folder / "001_000013_000003.nii.gz").write_bytes(whole)
        _write(folder, 1, 9.0)  # a duplicate of volume 1 under another name
        (folder / "copy_of_000001.nii.gz").write_bytes((folder / "001_000013_000001.nii.gz").read_bytes())
        (folder / "001_000013_000004.nii.gz").write_bytes(b"not a nifti at all" * 20)  # corrupt
        time.sleep(0.05)
        _write(folder, 6, 6.0)  # volume 5 never comes

    writer = threading.Thread(target=scanner)
    writer.start()
    source = FolderSource(folder, n_frames=6, tr=0.1, poll_s=0.01, missing_after_s=0.6, corrupt_after_s=0.3)
    arrivals = list(source)
    writer.join()
    assert [a.frame for a in arrivals] == [0, 1, 2, 3, 4, 5]
    values = [None if a.volume_ABC is None else float(a.volume_ABC.mean()) for a in arrivals]
    assert values[:3] == [1.0, 2.0, 3.0]  # the first volume 1 kept, the half-written one read whole
    assert values[3] is None and "not a readable NIfTI" in arrivals[3].error
    assert values[4] is None and "never arrived" in arrivals[4].error
    assert values[5] == 6.0
    assert any("arrived twice" in note for note in source.notes)


def test_the_watcher_says_when_nothing_arrives(tmp_path):
    with pytest.raises(DataError, match="no volume arrived"):
        list(FolderSource(tmp_path, n_frames=2, tr=0.05, poll_s=0.01, idle_timeout_s=0.1))


def test_a_replay_yields_every_volume_in_order(tmp_path):
    run = tmp_path / "sub-01_task-test_run-01_bold.nii.gz"
    series = np.stack([_volume(v) for v in range(5)], axis=-1)
    bids.write_nifti(run, series, np.eye(4), tr=0.02)
    arrivals = list(ReplaySource(run, tr=0.02, speed=None))
    assert [a.frame for a in arrivals] == list(range(5))
    assert [float(a.volume_ABC.mean()) for a in arrivals] == [0.0, 1.0, 2.0, 3.0, 4.0]
    paced = ReplaySource(run, tr=0.02, speed=1.0)
    stamps = [a.arrived for a in paced]
    assert stamps[-1] - stamps[0] >= 4 * 0.02 * 0.9  # one volume per TR at 1×

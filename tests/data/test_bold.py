"""BOLD runs: the LSS fit, the BIDS files and their errors, the voxel mask, motion correction, and the simulated
scanner runs (slow: `mindhier betas` recovers the simulator's betas and the pipeline reads its output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage

from mindhier.data.bold import bids
from mindhier.data.bold.geometry import make_geometry
from mindhier.data.bold.head_motion import framewise_displacement_F, move_volume
from mindhier.data.bold.lss import drift_basis_FP, lss_betas_KV, trial_regressors_FK
from mindhier.data.bold.motion_correction import MotionCorrector
from mindhier.data.bold.simulate_bold import BoldSimConfig
from mindhier.data.bold.timing import RunTiming, last_needed_frame
from mindhier.data.bold.voxel_selection import load_selection
from mindhier.errors import ConfigError, DataError

TIMING = RunTiming(tr=1.5)


def _design(n_trials=30, rng=None):
    frame_times = TIMING.frame_times_F(TIMING.n_frames(n_trials))
    onsets = TIMING.onsets_K(n_trials)
    X = trial_regressors_FK(frame_times, onsets, np.full(n_trials, TIMING.on_s))
    return frame_times, onsets, X


def test_lss_fast_path_equals_a_separate_least_squares_fit_per_trial():
    rng = np.random.default_rng(0)
    frame_times, _, X = _design(20)
    D = np.column_stack([drift_basis_FP(frame_times), rng.normal(size=(len(frame_times), 6))])
    Y = X @ rng.normal(size=(20, 7)) + D @ rng.normal(size=(D.shape[1], 7)) + rng.normal(0, 0.1, (len(X), 7))
    fast = lss_betas_KV(Y, X, D, neighbours=2)
    plain = lss_betas_KV(Y, X, D, neighbours=0)
    for k in (0, 1, 7, 19):
        near = [j for j in (k - 2, k - 1, k + 1, k + 2) if 0 <= j < 20]
        rest = [j for j in range(20) if j != k and j not in near]
        design = np.column_stack([X[:, k], X[:, near], X[:, rest].sum(axis=1), D])
        np.testing.assert_allclose(fast[k], np.linalg.lstsq(design, Y, rcond=None)[0][0], rtol=1e-4, atol=1e-5)
        design = np.column_stack([X[:, k], X.sum(axis=1) - X[:, k], D])
        np.testing.assert_allclose(plain[k], np.linalg.lstsq(design, Y, rcond=None)[0][0], rtol=1e-4, atol=1e-5)


def _median_r(betas_KV, true_KV):
    return float(np.median([np.corrcoef(betas_KV[:, v], true_KV[:, v])[0, 1] for v in range(true_KV.shape[1])]))


def test_lss_with_separate_neighbours_recovers_single_trial_betas_at_nsd_timing():
    rng = np.random.default_rng(1)
    frame_times, _, X = _design(40)
    true_KV = rng.normal(size=(40, 30))
    D = drift_basis_FP(frame_times)
    for noise in (0.0, 0.3):
        Y = 100 + X @ true_KV + D @ rng.normal(0, 2, size=(D.shape[1], 30)) + rng.normal(0, noise, (len(X), 30))
        separate, plain = lss_betas_KV(Y, X, D), lss_betas_KV(Y, X, D, neighbours=0)
        all_at_once = np.linalg.lstsq(np.column_stack([X, D]), Y, rcond=None)[0][:40]
        assert _median_r(separate, true_KV) > 0.9
        assert _median_r(separate, true_KV) > _median_r(plain, true_KV) + 0.03
        if noise > 0:
            assert _median_r(separate, true_KV) > _median_r(all_at_once, true_KV) + 0.1
    assert last_needed_frame(6.0, 1.5, 14.0) == 14  # 6 s onset + 14 s = 20 s: frame 14 (21 s) is the first at/after
    from mindhier.cli import realtime_commands
    from mindhier.data.bold import timing

    assert realtime_commands.RESPONSE_WINDOW_S == timing.RESPONSE_WINDOW_S
    from mindhier.realtime import session_setup

    assert realtime_commands.CANDIDATE_SETS == session_setup.CANDIDATE_SETS


def _events(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("header", "rows", "kwargs", "expected"),
    [
        ("onset\tduration", ["6\t3"], {}, r"lacks column\(s\) stimulus_index"),
        ("onset\tduration\tstimulus_index", ["6\tthree\t1"], {}, "not a number"),
        ("onset\tduration\tstimulus_index", ["600\t3\t1"], {"run_seconds": 300.0}, "does not belong to this run"),
        ("onset\tduration\tstimulus_index", ["6\t3\t99"], {"n_images": 50}, "does not match the stimulus set"),
        ("onset\tduration\tstimulus_index", ["-1\t3\t1"], {}, "onsets must be finite"),
    ],
)
def test_an_events_table_that_cannot_be_the_runs_is_one_line(tmp_path, header, rows, kwargs, expected):
    with pytest.raises(DataError, match=expected) as caught:
        bids.read_events(_events(tmp_path / "e.tsv", header, rows), **kwargs)
    assert "\n" not in str(caught.value)


def test_events_round_trip_sorted_by_onset(tmp_path):
    events = bids.Events(np.array([10.0, 6.0]), np.array([3.0, 3.0]), np.array([4, 2]), np.array([11, 10]))
    bids.write_events(tmp_path / "e.tsv", events)
    back = bids.read_events(tmp_path / "e.tsv")
    assert back.onset_K.tolist() == [6.0, 10.0] and back.stimulus_K.tolist() == [2, 4]
    assert back.source_row_K.tolist() == [10, 11]


def test_a_damaged_or_non_finite_nifti_is_one_line(tmp_path):
    good = tmp_path / "v.nii.gz"
    bids.write_nifti(good, np.ones((4, 4, 4), np.float32), np.eye(4))
    truncated = tmp_path / "t.nii.gz"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError, match="not a readable NIfTI"):
        bids.load_volume(truncated)
    nan = np.ones((4, 4, 4), np.float32)
    nan[1, 1, 1] = np.nan
    bids.write_nifti(tmp_path / "n.nii.gz", nan, np.eye(4))
    with pytest.raises(DataError, match="NaN or inf"):
        bids.load_volume(tmp_path / "n.nii.gz")
    with pytest.raises(DataError, match="not a BIDS BOLD file name"):
        bids.parse_run(tmp_path / "scan_001.nii.gz")


def test_the_mask_gives_columns_in_c_order_with_their_roi_names(tmp_path):
    roi_V = np.repeat(np.arange(6, dtype=np.int8), [5, 4, 4, 3, 3, 6])
    geometry = make_geometry(roi_V, 2.5, np.random.default_rng(0))
    assert geometry.visual_flat_V.tolist() == sorted(geometry.visual_flat_V.tolist())
    from mindhier.data.bold.simulate_bold import _write_masks

    _write_masks(tmp_path, 1, geometry)
    selection = load_selection(bids.visual_mask_path(tmp_path, 1), bids.rois_path(tmp_path, 1))
    assert selection.flat_V.tolist() == geometry.visual_flat_V.tolist()
    assert (
        selection.roi_labels == ("V1",) * 5 + ("V2",) * 4 + ("V3",) * 4 + ("hV4",) * 3 + ("LO",) * 3 + ("higher",) * 6
    )
    volume = np.arange(np.prod(geometry.shape), dtype=np.float32).reshape(geometry.shape)
    assert selection.take(volume).tolist() == geometry.visual_flat_V.astype(np.float32).tolist()
    with pytest.raises(DataError, match="does not match the voxel mask"):
        selection.take(volume[:-1])
    table = bids.rois_path(tmp_path, 1).with_name("sub-01_space-bold_desc-rois_dseg.tsv")
    table.write_text("index\tname\n1\tV1\n")
    with pytest.raises(DataError, match="does not name"):
        load_selection(bids.visual_mask_path(tmp_path, 1), bids.rois_path(tmp_path, 1))


def test_motion_correction_recovers_a_known_rigid_motion():
    geometry = make_geometry(np.repeat(np.arange(6, dtype=np.int8), 200), 2.5, np.random.default_rng(3))
    reference = geometry.baseline_ABC
    truth = np.array([0.6, -0.4, 0.3, 0.7, -0.5, 0.4])  # degrees, mm
    moved = move_volume(reference.astype(np.float64), truth, 2.5, order=3)
    corrector = MotionCorrector(reference, (2.5, 2.5, 2.5))
    corrected = corrector.correct(moved)
    np.testing.assert_allclose(corrected.motion_6[3:], truth[3:], atol=0.05)
    np.testing.assert_allclose(corrected.motion_6[:3], truth[:3], atol=0.15)
    inner = ndimage.binary_erosion(geometry.mask_ABC, iterations=2)  # away from the skull's edge
    assert np.abs(corrected.volume_ABC - reference)[inner].mean() < 0.3 * np.abs(moved - reference)[inner].mean()
    with pytest.raises(DataError, match="reference is"):
        corrector.correct(reference[:, :, :-1])
    fd = framewise_displacement_F(np.stack([np.zeros(6), truth]))
    assert fd[0] == 0 and fd[1] == pytest.approx(1.6 + np.deg2rad(1.3) * 50)


def test_bold_settings_are_checked():
    with pytest.raises(ConfigError, match="'test' or 'session:N"):
        BoldSimConfig(trials="everything")
    with pytest.raises(ConfigError, match="repetition time"):
        BoldSimConfig(tr=30.0)
    assert BoldSimConfig(trials="session:1,2").selection() == ("session", (1, 2))


def test_simulated_runs_are_bids_with_the_designs_trials(tiny_bold):
    simulated_bold = tiny_bold
    import nibabel as nib

    root = simulated_bold / "bold"
    runs = bids.find_runs(root)
    assert [r.run for r in runs] == list(range(1, len(runs) + 1)) and len(runs) == 72 // 16 + 1  # 72 test trials
    assert json.loads((root / "dataset_description.json").read_text())["BIDSVersion"]
    run = runs[0]
    assert run.bold.name == "sub-01_task-test_run-01_bold.nii.gz" and bids.read_tr(run) == 1.5
    image = nib.load(str(run.bold))
    assert image.get_data_dtype() == np.int16 and image.ndim == 4
    assert image.header.get_zooms()[3] == pytest.approx(1.5)
    events = bids.read_events(run.events)
    assert np.allclose(np.diff(events.onset_K), 4.0) and np.all(events.duration_K == 3.0)
    assert image.shape[-1] == TIMING.n_frames(16)
    manifest = json.loads((simulated_bold / "manifest.json").read_text())
    with h5py.File(simulated_bold / "betas_all_subj01_fp32_renorm.hdf5") as f:
        n_trials = f["betas"].shape[0]
    rows = np.concatenate([bids.read_events(r.events).source_row_K for r in runs])
    test_rows = [i for i in range(n_trials) if i in set(rows.tolist())]
    assert sorted(rows.tolist()) == test_rows and len(rows) == 72  # every test presentation once
    assert manifest["bold"] == "bold/" and manifest["subjects"]["1"]["bold"]["runs"][0]["trials"] == 16
    selection = load_selection(bids.visual_mask_path(root, 1), bids.rois_path(root, 1))
    assert list(selection.roi_labels) == manifest["subjects"]["1"]["roi_labels"]


@pytest.mark.slow
def test_simulated_bold_follows_the_seed(tiny_bold, tmp_path):
    from mindhier.config import tiny
    from mindhier.data.simulator import simulate

    again = tmp_path / "again"
    simulate(tiny(), again, bold=BoldSimConfig(run_trials=16))
    name = "bold/sub-01/func/sub-01_task-test_run-02_bold.nii.gz"
    assert (again / name).read_bytes() == (tiny_bold / name).read_bytes()


@pytest.mark.slow
def test_betas_recover_the_simulators_and_the_pipeline_reads_them(tmp_path, tiny_demo):
    """`mindhier betas` on a simulated session's 12 runs: median voxel correlation with the simulator's betas in
    V1–V3, and the output is a dataset every other command reads (data info, reconstruct)."""
    from mindhier.config import tiny
    from mindhier.data.simulator import simulate

    simulated_bold = tmp_path / "data"
    simulate(tiny(), simulated_bold, bold=BoldSimConfig(trials="session:1"))
    out = tmp_path / "from_bold"
    cli = [sys.executable, "-m", "mindhier"]
    done = subprocess.run(
        [*cli, "betas", "--bold", str(simulated_bold / "bold"), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    table = np.genfromtxt(out / "bold_trials_subj01.tsv", delimiter="\t", names=True, dtype=None, encoding="utf-8")
    with h5py.File(out / "betas_all_subj01_fp32_renorm.hdf5") as f:
        estimated = f["betas"][:]
    with h5py.File(simulated_bold / "betas_all_subj01_fp32_renorm.hdf5") as f:
        truth = f["betas"][:][table["source_row"]]
    labels = np.asarray(json.loads((out / "manifest.json").read_text())["subjects"]["1"]["roi_labels"])
    r = np.array([np.corrcoef(estimated[:, v], truth[:, v])[0, 1] for v in range(truth.shape[1])])
    shared = json.loads((simulated_bold / "stimulus_labels.json").read_text())["images"]
    test_images = {record["index"] for record in shared if record["split"] == "test"}
    seen_test_images = {int(i) for i in table["stimulus_index"]} & test_images
    assert np.median(r[np.isin(labels, ["V1", "V2", "V3"])]) >= 0.7  # tiny volumes: see test_realtime's demo bench
    info = subprocess.run([*cli, "data", "info", str(out), "--json"], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    design = json.loads(info.stdout)["subjects"]["1"]["splits"]
    assert design["train"]["trials"] + design["val"]["trials"] + design["test"]["trials"] == 100  # session 1
    demo, _, code = tiny_demo
    assert code == 0
    recons = tmp_path / "recons"
    made = subprocess.run(
        [
            *cli,
            "reconstruct",
            "--generator",
            str(demo / "generators" / "coarse_to_fine"),
            "--data",
            str(out),
            "--out",
            str(recons),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert len(list(recons.glob("image_*.png"))) == len(seen_test_images) > 0


def test_simulate_flags_make_the_bold_settings():
    from mindhier.cli.main import build_parser
    from mindhier.cli.run_commands import bold_config

    args = build_parser().parse_args(
        ["simulate", "--out", "x", "--bold", "session:2", "--bold-motion", "large", "--tr", "2.0"]
    )
    cfg = bold_config(args)
    assert (cfg.trials, cfg.tr, cfg.jumps, cfg.jump_mm, cfg.motion_mm) == ("session:2", 2.0, 3, 2.0, 0.8)
    assert bold_config(build_parser().parse_args(["simulate", "--out", "x", "--bold"])).trials == "test"
    assert bold_config(build_parser().parse_args(["simulate", "--out", "x"])) is None
    none = bold_config(build_parser().parse_args(["simulate", "--out", "x", "--bold", "--bold-motion", "none"]))
    assert none.motion_mm == 0 and none.jumps == 0

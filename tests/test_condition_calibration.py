"""The brain condition moment-matched to the teacher's features (`alignment.calibration = moments`)."""

from __future__ import annotations

import json

import pytest
import torch

from mindhier import run_layout
from mindhier.errors import ConfigError
from mindhier.models.brain_condition import BrainCondition, stack_levels
from mindhier.models.condition_calibration import (
    MomentSum,
    fit_calibration,
    load_calibration,
    save_calibration,
)
from mindhier.runs import load_encoder

DIMS = (3, 5)


def _levels(n: int, scale: float, shift: float, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 4, d, generator=g) * scale + shift for d in DIMS]


def test_chunked_moments_equal_the_whole():
    levels = _levels(30, 2.0, 1.0, 0)
    whole, chunked = MomentSum(), MomentSum()
    whole.add(levels)
    for start in (0, 7, 19):
        chunked.add([x[start : {0: 7, 7: 19, 19: 30}[start]] for x in levels])
    a, b = whole.moments(), chunked.moments()
    for m in range(len(DIMS)):
        torch.testing.assert_close(a.mean[m], b.mean[m])
        torch.testing.assert_close(a.std[m], b.std[m])
        torch.testing.assert_close(a.std[m], levels[m].flatten(0, 1).std(0), rtol=1e-4, atol=1e-5)


def test_calibrated_predictions_take_the_teachers_moments_and_keep_the_padding():
    teacher = _levels(200, 3.0, 2.0, 1)
    predicted = _levels(50, 0.1, -0.5, 2)  # shrunk and shifted, as a regression's outputs are
    calibration = fit_calibration([teacher], {1: [predicted]})
    out = calibration.apply(stack_levels(predicted), subject=1)
    for m, d in enumerate(DIMS):
        x = out[:, m, :, :d].flatten(0, 1)
        torch.testing.assert_close(x.mean(0), teacher[m].flatten(0, 1).mean(0), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(x.std(0), teacher[m].flatten(0, 1).std(0), rtol=1e-3, atol=1e-3)
        assert torch.all(out[:, m, :, d:] == 0)  # the zero padding of narrower levels is not shifted


def test_a_subject_without_statistics_is_refused():
    calibration = fit_calibration([_levels(10, 1.0, 0.0, 3)], {1: [_levels(10, 1.0, 0.0, 4)]})
    with pytest.raises(ConfigError, match="no statistics for subject 2"):
        calibration.apply(stack_levels(_levels(2, 1.0, 0.0, 5)), subject=2)


def test_the_file_round_trips_and_a_corrupt_one_is_one_clear_error(tmp_path):
    calibration = fit_calibration([_levels(20, 1.0, 0.0, 6)], {1: [_levels(9, 1.0, 0.0, 7)], 4: [_levels(9, 2, 1, 8)]})
    path = tmp_path / "calibration.safetensors"
    save_calibration(path, calibration)
    loaded = load_calibration(path)
    assert sorted(loaded.predicted) == [1, 4] and loaded.level_dims == DIMS
    for a, b in zip(calibration.tensors().values(), loaded.tensors().values(), strict=True):
        assert torch.equal(a, b)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="cannot read the condition calibration"):
        load_calibration(path)


def test_an_encoder_run_fits_its_calibration_on_val_and_the_condition_uses_it(tiny_stage_runs):
    cfg, data, encoder_dir, _ = tiny_stage_runs
    assert cfg.alignment.calibration == "moments"
    files = load_encoder(encoder_dir)
    assert files.calibration is not None and sorted(files.calibration.predicted) == [1, 2]
    raw = BrainCondition(files.model, cfg.alignment.supervision)
    calibrated = BrainCondition(files.model, cfg.alignment.supervision, files.calibration)
    from mindhier.data.nsd.dataset import open_dataset

    val = open_dataset(data.root).split(1, "val")
    voxels = torch.from_numpy(val.voxels())
    before, after = raw.of_voxels(voxels, 1), calibrated.of_voxels(voxels, 1)
    assert torch.equal(before.terminal_BQP, after.terminal_BQP)  # the retrieval embedding is the encoder's own
    dims = files.shapes.level_dims
    torch.testing.assert_close(after.pooled_BP, after.levels_BMQD[:, -1, :, : dims[-1]].mean(1))
    # on the val items it was fitted on, each level's per-channel mean is the teacher's
    teacher_mean = files.calibration.teacher.mean
    for m, d in enumerate(dims):
        got = after.levels_BMQD[:, m, :, :d].flatten(0, 1).mean(0)
        torch.testing.assert_close(got, teacher_mean[m], rtol=1e-3, atol=1e-3)
        assert not torch.allclose(before.levels_BMQD[:, m, :, :d].flatten(0, 1).mean(0), teacher_mean[m], atol=1e-2)


def test_an_encoder_run_without_its_calibration_file_is_refused(tiny_stage_runs, tmp_path):
    import shutil

    _, _, encoder_dir, _ = tiny_stage_runs
    copy = shutil.copytree(encoder_dir, tmp_path / "encoder")
    (copy / run_layout.CONDITION_CALIBRATION).unlink()
    with pytest.raises(ConfigError, match=r"no condition_calibration\.safetensors"):
        load_encoder(copy)
    # an encoder trained without calibration needs no file
    config = json.loads((copy / "config.json").read_text())
    config["config"]["alignment"]["calibration"] = "none"
    (copy / "config.json").write_text(json.dumps(config))
    assert load_encoder(copy).calibration is None

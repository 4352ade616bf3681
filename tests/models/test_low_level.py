"""The ridge low-level decoder: voxels → a blurry image (`encoder.low_level_px`)."""

import pytest
import torch

from mindhier.errors import ConfigError
from mindhier.models.low_level import LowLevelDecoder, fit_subject_ridge, load_low_level, save_low_level

PX = 4


def _world(n: int, seed: int):
    """Voxels that are a noisy linear function of the pixels."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3 * PX * PX, generator=g)
    mixing = torch.randn(3 * PX * PX, 60, generator=torch.Generator().manual_seed(99))
    voxels = (pixels - 0.5) @ mixing + 0.3 * torch.randn(n, 60, generator=g)
    return voxels, pixels


def test_the_ridge_recovers_held_out_images_and_picks_its_penalty_on_val():
    train_v, train_p = _world(400, 0)
    val_v, val_p = _world(60, 1)
    ridge, scores = fit_subject_ridge(train_v, train_p, val_v, val_p, penalties=(1e-3, 10.0, 1e6))
    assert ridge.penalty == max((s, float(p)) for p, s in scores.items())[1]
    assert scores["1e+06"] < scores[f"{ridge.penalty:g}"]  # an absurd penalty predicts the mean image
    decoder = LowLevelDecoder(PX, {3: ridge})
    test_v, test_p = _world(50, 2)
    images = decoder.predict(test_v, subject=3)
    assert images.shape == (50, 3, PX, PX) and images.min() >= 0 and images.max() <= 1
    flat = images.permute(0, 2, 3, 1).reshape(50, -1)
    corr = torch.corrcoef(torch.stack([flat.flatten(), test_p.flatten()]))[0, 1]
    assert corr > 0.8


def test_a_wrong_subject_or_voxel_count_is_one_clear_error():
    ridge, _ = fit_subject_ridge(*_world(100, 0), *_world(20, 1))
    decoder = LowLevelDecoder(PX, {3: ridge})
    with pytest.raises(ConfigError, match="no subject 4"):
        decoder.predict(torch.zeros(2, 60), subject=4)
    with pytest.raises(ConfigError, match="got 59 voxels"):
        decoder.predict(torch.zeros(2, 59), subject=3)


def test_the_file_round_trips_and_a_corrupt_one_is_refused(tmp_path):
    ridge, _ = fit_subject_ridge(*_world(100, 0), *_world(20, 1))
    decoder = LowLevelDecoder(PX, {3: ridge, 5: ridge})
    path = tmp_path / "low_level.safetensors"
    save_low_level(path, decoder)
    loaded = load_low_level(path)
    assert loaded.px == PX and sorted(loaded.subjects) == [3, 5]
    voxels = _world(7, 3)[0]
    assert torch.equal(loaded.predict(voxels, 5), decoder.predict(voxels, 5))
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(ConfigError, match="cannot read the low-level decoder"):
        load_low_level(path)


def test_trials_are_averaged_as_asked_for_any_prediction():
    import pytest
    import torch

    from mindhier.errors import ConfigError
    from mindhier.models.brain_condition import Condition, over_trials

    voxels = torch.arange(24.0).reshape(2, 3, 4)  # [B, T, V]

    def square(rows):  # a non-linear prediction: averaging before or after differs
        return rows**2

    assert torch.equal(over_trials(voxels, "voxels", square), voxels.mean(1) ** 2)
    assert torch.equal(over_trials(voxels, "outputs", square), (voxels**2).mean(1))
    assert torch.equal(over_trials(voxels[:, 0], "outputs", square), voxels[:, 0] ** 2)  # [B, V]: as it is
    pair = over_trials(voxels, "outputs", lambda rows: Condition(rows, rows.sum(1), rows[:, :1]))
    assert isinstance(pair, Condition) and torch.equal(pair.pooled_BP, voxels.sum(2).mean(1))
    with pytest.raises(ConfigError, match="pass voxels in one of those shapes"):
        over_trials(voxels[None], "outputs", square)
    with pytest.raises(ConfigError, match="average must be one of"):
        over_trials(voxels, "median", square)

"""The demo-scale simulation (4,000 + 100 images, 64 px, one subject): slow, run by `make test-slow`."""

import numpy as np
import pytest

from mindhier.config import demo
from mindhier.data.info import describe_dataset
from mindhier.data.simulator import simulate

pytestmark = pytest.mark.slow


def test_demo_preset_dataset_is_complete_and_calibrated(tmp_path):
    cfg = demo()
    result = simulate(cfg, tmp_path / "demo")
    summary = describe_dataset(result.root, cfg.data)
    entry = summary["subjects"]["1"]
    assert 2000 <= entry["n_voxels"] <= 4000
    assert entry["splits"]["test"] == {"trials": 300, "images": 100}
    assert entry["splits"]["train"]["images"] + entry["splits"]["val"]["images"] == 4000
    assert entry["splits"]["val"]["images"] == 200
    configured = np.median(result.subjects[1].model.ncsnr_V)
    s2 = configured**2
    assert entry["median_noise_ceiling_measured"] == pytest.approx(100 * s2 / (s2 + 1 / 3), abs=10)

"""`teacher.cache=false`: the teacher runs inside the training step and gives the feature cache's targets.

On a CPU the teacher computes every image independently of its batch, and the on-the-fly targets are rounded to
the cache's float16, so the targets, the loss curve and the weights equal the cached run's exactly. The run on
2 processes is compared with the 1-process cached run in `test_distributed.py`.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from mindhier import run_layout
from mindhier.data.feature_cache import build_feature_cache
from mindhier.data.nsd import open_dataset
from mindhier.data.online_targets import OnlineTargets
from mindhier.data.target_lookup import TargetLookup
from mindhier.data.teacher_targets import teacher_targets
from mindhier.errors import ConfigError
from mindhier.metrics.encoder_eval import evaluate_encoder
from mindhier.runs import load_encoder
from mindhier.teachers import build_teacher
from mindhier.train.encoder import train_encoder


def on_the_fly(cfg):
    return dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, cache=False))


def short(cfg, steps=12):
    return dataclasses.replace(
        cfg, train_encoder=dataclasses.replace(cfg.train_encoder, steps=steps, eval_every=6, checkpoint_every=6)
    )


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / run_layout.LOG).read_text().splitlines()]


def test_online_targets_equal_the_cache_bit_for_bit(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    teacher = build_teacher(cfg.teacher)
    cached = TargetLookup(build_feature_cache(result.root, teacher, out=tmp_path / "features"))
    with open_dataset(result.root) as dataset:
        online = OnlineTargets(dataset, teacher, batch_size=5)  # chunks of another size than the cache's
        wanted = np.random.default_rng(0).choice(cached.cache.indices, 23)  # unsorted, with repeats
        wanted[3] = wanted[9]
        for name, got in (("get", online.get(wanted)), ("step", online.step_targets(wanted))):
            expected = cached.get(wanted)
            assert len(got) == len(expected) == cfg.encoder.depth
            for m, (a, b) in enumerate(zip(got, expected, strict=True)):
                assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
                assert torch.equal(a, b), f"{name}: level {m + 1}"
        assert not online.has_text and online.get_text(wanted) is None
        assert online.record()["teacher"] == cached.record()["teacher"]  # what `eval encoder` compares


def test_encoder_on_the_fly_trains_exactly_as_with_the_cache(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    data = shutil.copytree(result.root, tmp_path / "data")  # the cached run writes its cache into the dataset
    cached = train_encoder(short(cfg), data, tmp_path / "cached", subjects=(1, 2))
    online = train_encoder(short(on_the_fly(cfg)), data, tmp_path / "online", subjects=(1, 2))
    assert losses(online.run_dir) == losses(cached.run_dir)
    a, b = online.model.state_dict(), cached.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((online.run_dir / run_layout.FEATURES).read_text())
    assert record["on_the_fly"] and record["path"] is None
    assert record["teacher"] == json.loads((cached.run_dir / run_layout.FEATURES).read_text())["teacher"]
    assert load_encoder(online.run_dir).cfg.teacher.cache is False
    # evaluation reads the run's setting: the teacher on the fly again, the cached run's scores
    online_eval = evaluate_encoder(online.run_dir, data, subjects=(1,))
    cached_eval = evaluate_encoder(cached.run_dir, data, subjects=(1,))
    assert online_eval["subjects"] == cached_eval["subjects"]


def test_a_feature_cache_folder_with_the_teacher_on_the_fly_is_refused(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    cfg = on_the_fly(cfg)
    with open_dataset(result.root) as dataset, pytest.raises(ConfigError, match=r"teacher\.cache=false"):
        teacher_targets(cfg.teacher, result.root, dataset, build_teacher(cfg.teacher), features=tmp_path / "f")

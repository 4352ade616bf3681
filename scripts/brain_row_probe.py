"""Where the brain row loses the picture: generator and condition variants on a demo's **validation** split.

    python scripts/brain_row_probe.py --run runs/demo --record results/brain_row_probe.json [--overwrite]

Reads a finished demo folder (its dataset, calibrated encoder, tokenizer and generator prior; the judge from the
default cache) and measures, on the val split (held-out training images, single trials; never the test images):

* coarse-to-fine reconstructions, single shot, PixCorr and the scene judge's colour / category F1, from
  - the prior as it is, with the encoder's predictions as they are, and calibrated (`alignment.calibration`), under
    the prior's own null stream (zeros) and under the encoder's output for zero voxels;
  - the prior fine-tuned on the brain for the demo's former budget (150 steps of 32, calibrated predictions);
* what is linearly decodable from the voxels: ridge regressions (penalty chosen on val) to the teacher's levels
  (cosine per level, beside the encoder's); the encoder's low-level decoder (a ridge regression to a 32 × 32 image,
  `encoder.low_level_px`) alone, and as the start of the first k scales (`sampler.low_level_scales = k`: its tokens
  for scales 1…k, the rest sampled from the calibrated brain condition).

The figures back docs/method.md §5.2; the result file records command, commit and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mindhier.data.feature_cache import build_feature_cache
from mindhier.data.nsd.dataset import open_dataset
from mindhier.data.target_lookup import TargetLookup
from mindhier.metrics.image import pixcorr
from mindhier.metrics.judge import get_judge, judge_scores
from mindhier.metrics.recons_eval import scene_labels
from mindhier.models.brain_condition import BrainCondition
from mindhier.result_files import check_result_path, result_record, write_result
from mindhier.run_layout import load_run_config
from mindhier.sampling.reconstruct import Reconstructor
from mindhier.teachers import build_teacher

PENALTIES = (1e3, 3e3, 1e4, 3e4)
BATCH = 25


def ridge(train_X: torch.Tensor, train_Y: torch.Tensor, penalty: float):
    """X → Y by ridge regression (float64): a function of new X."""
    mean_x, mean_y = train_X.mean(0), train_Y.mean(0)
    centred = train_X - mean_x
    weights = torch.linalg.solve(
        centred.T @ centred + penalty * torch.eye(centred.shape[1], dtype=torch.float64), centred.T @ (train_Y - mean_y)
    )
    return lambda X: (X - mean_x) @ weights + mean_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mindhier")
    args = parser.parse_args()
    check_result_path(args.record, args.overwrite)
    started = time.perf_counter()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data_dir = args.run / "data"
    dataset = open_dataset(data_dir)
    train, val = dataset.split(1, "train"), dataset.split(1, "val")
    voxels = torch.from_numpy(val.voxels())
    truth, keys = val.images(), val.image_index_N.tolist()
    labels = scene_labels(data_dir, val.image_index_N)
    judge = get_judge(args.cache)

    def scores(images: np.ndarray) -> dict[str, float]:
        judged = judge_scores(judge, images, labels)
        return {
            "pixcorr": round(float(pixcorr(images, truth).mean()), 4),
            "colour_f1": round(float(judged["colour_f1"].mean()), 4),
            "category_f1": round(float(judged["category_f1"].mean()), 4),
        }

    prior = Reconstructor.from_runs(args.run / "generators" / "coarse_to_fine")
    if prior.condition.calibration is None:
        sys.exit(f"{args.run} was made without alignment.calibration=moments; run `make demo` with this version")
    raw = BrainCondition(prior.encoder, prior.supervision)
    rows: dict[str, dict] = {}

    def sampled(reconstructor: Reconstructor, condition, null: str) -> np.ndarray:
        reconstructor.trained_on = null
        return reconstructor.sample(condition, 1, keys=keys, batch_size=BATCH).images_BHW3

    calibrated = prior.condition.of_voxels(voxels, 1)
    rows["prior, predictions as they are, null zeros"] = scores(sampled(prior, raw.of_voxels(voxels, 1), "teacher"))
    rows["prior, calibrated, null zeros (the demo)"] = scores(sampled(prior, calibrated, "teacher"))
    rows["prior, calibrated, null encoder(0)"] = scores(sampled(prior, calibrated, "brain"))
    with tempfile.TemporaryDirectory() as tmp:
        tuned = Path(tmp) / "generator"
        command = [
            sys.executable, "-m", "mindhier", "train", "generator", "--data", str(data_dir),
            "--encoder", str(args.run / "encoder"), "--tokenizer", str(args.run / "tokenizer"), "--out", str(tuned),
            "--preset", "demo", "--set", "train_generator.steps=150", "--threads", "2", "--quiet",
        ]  # fmt: skip
        subprocess.run(command, check=True)
        fine_tuned = Reconstructor.from_runs(tuned, args.run / "encoder", args.run / "tokenizer")
        rows["prior fine-tuned on the brain 150 steps, calibrated, null encoder(0)"] = scores(
            sampled(fine_tuned, fine_tuned.condition.of_voxels(voxels, 1), "brain")
        )

    # what a linear read-out gets from the same voxels
    train_X, val_X = torch.from_numpy(train.voxels()).double(), voxels.double()
    teacher = build_teacher(load_run_config(prior.runs["encoder"]).teacher)
    features = TargetLookup(build_feature_cache(data_dir, teacher))
    train_levels, val_levels = features.get(train.image_index_N), features.get(val.image_index_N)
    encoder_levels = raw.of_voxels(voxels, 1).levels_BMQD
    cosines = {"encoder": [], "ridge": [], "ridge_penalty": []}
    for m, (level_tr, level_va) in enumerate(zip(train_levels, val_levels, strict=True)):
        target = level_va.flatten(1).double()
        width = level_va.shape[-1]
        own = encoder_levels[:, m, :, :width].flatten(1).double()
        cosines["encoder"].append(round(float(torch.cosine_similarity(own, target).mean()), 4))
        best = max(
            (float(torch.cosine_similarity(ridge(train_X, level_tr.flatten(1).double(), p)(val_X), target).mean()), p)
            for p in PENALTIES
        )
        cosines["ridge"].append(round(best[0], 4))
        cosines["ridge_penalty"].append(best[1])
    # the encoder's low-level decoder (encoder.low_level_px; its penalty chosen on this split by the fit), alone and
    # as the start of the first k scales (sampler.low_level_scales = k)
    low_level = prior.low_level
    if low_level is None:
        sys.exit(f"{args.run} has no low-level decoder (encoder.low_level_px); run `make demo` with this version")
    ridge_images = low_level.predict(voxels, 1).permute(0, 2, 3, 1).mul(255).round().byte().numpy()
    rows[f"the encoder's low-level image ({low_level.px} px, penalty {low_level.subjects[1].penalty:g})"] = scores(
        ridge_images
    )
    prior.trained_on = "teacher"
    plain_sampler = prior.decoder.sampler
    for first in range(1, len(prior.decoder.model.shapes.scales) - 1):
        prior.decoder.sampler = dataclasses.replace(plain_sampler, low_level_scales=first)
        images = prior.reconstruct(voxels, 1, keys=keys, batch_size=BATCH).images_BHW3
        rows[f"low-level start: scales 1-{first} from the low-level image, the rest from the brain"] = scores(images)
    prior.decoder.sampler = plain_sampler

    numbers = {"protocol": {"split": "val", "subject": 1, "n_images": len(keys), "routing": "coarse_to_fine"}}
    numbers |= {"rows": rows, "level_cosines": cosines}
    record = result_record("brain-row-probe", sys.argv[1:], time.perf_counter() - started, numbers)
    record["command"] = " ".join(["python scripts/brain_row_probe.py", *sys.argv[1:]])
    write_result(args.record, record)
    for name, row in rows.items():
        print(f"{name:75s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print("level cosines", cosines)


if __name__ == "__main__":
    main()

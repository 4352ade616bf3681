"""Where the brain row loses the picture: generator and condition variants on a demo's **validation** split.

    python scripts/brain_row_probe.py --run runs/demo --record results/brain_row_probe.json [--overwrite]

Reads a finished demo folder (its dataset, calibrated encoder, tokenizer and generator prior; the judge from the
default cache) and measures, on the val split (held-out training images, single trials; never the test images):

* coarse-to-fine reconstructions, single shot, PixCorr and the scene judge's colour / category F1, from
  - the prior as it is, with the encoder's predictions as they are, and calibrated (`alignment.calibration`), under
    the prior's own null stream (zeros) and under the encoder's output for zero voxels;
  - the prior fine-tuned on the brain for the demo's former budget (150 steps of 32, calibrated predictions);
* what is linearly decodable from the voxels: ridge regressions (penalty chosen on val) to the teacher's levels
  (cosine per level, beside the encoder's) and to a 32 × 32 image (PixCorr, judge), and that image's first scales
  as the generator's start (its tokens for scales 1…k, the rest sampled from the calibrated brain condition).

The figures back docs/method.md §5.2; the result file records command, commit and machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from mindhier.data.feature_cache import build_feature_cache
from mindhier.data.image_tensors import resize_uint8, to_model_input, unit_to_uint8
from mindhier.data.nsd.dataset import open_dataset
from mindhier.data.target_lookup import TargetLookup
from mindhier.metrics.image import pixcorr
from mindhier.metrics.judge import get_judge, judge_scores
from mindhier.metrics.recons_eval import scene_labels
from mindhier.models.brain_condition import BrainCondition
from mindhier.result_files import check_result_path, result_record, write_result
from mindhier.run_layout import load_run_config
from mindhier.sampling.draws import race
from mindhier.sampling.reconstruct import Reconstructor, item_generator
from mindhier.sampling.scale_ar import ScaleLoop
from mindhier.teachers import build_teacher

PENALTIES = (1e3, 3e3, 1e4, 3e4)
PIXELS = 32
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
    train_pixels = torch.from_numpy(resize_uint8(train.images(), PIXELS).reshape(len(train_X), -1)).double() / 255

    def ridge_image(penalty: float) -> np.ndarray:
        flat = ridge(train_X, train_pixels, penalty)(val_X).clamp(0, 1)
        return (flat.reshape(len(val_X), PIXELS, PIXELS, 3) * 255).round().byte().numpy()

    penalty = max(PENALTIES, key=lambda p: float(pixcorr(ridge_image(p), truth).mean()))
    blurry = ridge_image(penalty)
    rows[f"ridge image {PIXELS} px (penalty {penalty:g})"] = scores(blurry)

    prior.trained_on = "teacher"
    tokenizer, model = prior.tokenizer, prior.decoder.model
    start_tokens = tokenizer.encode(to_model_input(resize_uint8(blurry, tokenizer.cfg.image_px)))
    null = prior.null(1)
    for first in range(1, len(model.shapes.scales) - 1):
        images = []
        for begin in range(0, len(voxels), BATCH):
            part = slice(begin, begin + BATCH)
            count = len(keys[part])
            loop = ScaleLoop(model, tokenizer, prior.decoder.sampler, count)
            loop.load(calibrated.levels_BMQD[part], calibrated.pooled_BP[part], null.levels_BMQD, null.pooled_BP)
            draws = loop.draws([item_generator(prior.decoder.sampler.seed, key) for key in keys[part]])
            f_hat, next_input = None, None
            for k in range(len(model.shapes.scales)):
                _, probs = loop.scale_probabilities(k, next_input)
                drawn = rearrange(race(probs, draws[k]), "(r l) -> r l", r=count)
                f_hat, next_input = loop.advance(k, f_hat, start_tokens[k][part] if k < first else drawn)
            images.append(unit_to_uint8(loop.decode(f_hat)))
        rows[f"ridge image's tokens for scales 1-{first}, the rest from the brain"] = scores(np.concatenate(images))

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

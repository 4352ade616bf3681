"""Both decoders on equal terms, chosen on a demo's **validation** split: start and guidance of each.

    python scripts/decoder_val_probe.py --run runs/demo --record results/decoder_val_probe.json [--overwrite]

Reads a finished demo folder (its dataset, calibrated encoder, tokenizer, and the generator prior as the demo uses
it; the judge from the default cache), trains in a temporary folder what the comparison needs, and measures on the
val split (200 held-out training images, single trials, single shot, per-image seeds; never the test images):

* the scale-wise generator: the prior as it is (the demo's) and fine-tuned on the brain for 150 steps of 32;
* the latent diffusion baseline: the diffusion prior as it is (`train_diffusion.init=prior`, no step, as the
  generator), the prior fine-tuned on the brain with the FLOPs of the generator's 150 steps, and random weights
  trained with that budget (the baseline before it had a prior);
* each at every guidance scale of its grid (the generator's `sampler.cfg_scale`, DDIM-50's `ddim.cfg_scale`),
  scored by PixCorr, SSIM and the scene judge's colour and category F1.

Rule, the same for both decoders: the (start, guidance) with the highest mean of the four val scores (PixCorr,
SSIM, colour F1, category F1: all in [0, 1], higher better; layout and content weigh alike). The result file
records command, commit, machine and every row.
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

from mindhier.data.nsd.dataset import open_dataset
from mindhier.metrics.image import pixcorr, ssim
from mindhier.metrics.judge import get_judge, judge_scores
from mindhier.metrics.recons_eval import scene_labels
from mindhier.result_files import check_result_path, result_record, write_result
from mindhier.sampling.reconstruct import Reconstructor

GENERATOR_GUIDANCE = (0.0, 1.5, 3.0, 4.5, 6.0, 8.0)
DDIM_GUIDANCE = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
SCORES = ("pixcorr", "ssim", "colour_f1", "category_f1")
DDIM_STEPS = 50
BATCH = 25
FINE_TUNE_STEPS = 150  # the generator's former demo budget; the baseline gets its FLOPs


def mean_score(scores: dict[str, float]) -> float:
    return round(sum(scores[m] for m in SCORES) / len(SCORES), 4)


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
    data_dir, encoder, tokenizer = args.run / "data", args.run / "encoder", args.run / "tokenizer"
    with open_dataset(data_dir, subjects=[1]) as dataset:
        val = dataset.split(1, "val")
        voxels, truth, keys = torch.from_numpy(val.voxels()), val.images(), val.image_index_N.tolist()
    labels = scene_labels(data_dir, val.image_index_N)
    judge = get_judge(args.cache)

    def scores(images: np.ndarray) -> dict[str, float]:
        judged = judge_scores(judge, images, labels)
        return {
            "pixcorr": round(float(pixcorr(images, truth).mean()), 4),
            "ssim": round(float(ssim(images, truth).mean()), 4),
            "colour_f1": round(float(judged["colour_f1"].mean()), 4),
            "category_f1": round(float(judged["category_f1"].mean()), 4),
        }

    def train(kind: str, out: Path, *settings: str) -> Path:
        command = [
            sys.executable, "-m", "mindhier", "train", kind, "--data", str(data_dir), "--encoder", str(encoder),
            "--tokenizer", str(tokenizer), "--out", str(out), "--preset", "demo", "--threads", "2", "--quiet",
        ]  # fmt: skip
        for setting in settings:
            command += ["--set", setting]
        subprocess.run(command, check=True)
        return out

    rows: dict[str, dict[str, dict]] = {"scale-wise": {}, "diffusion": {}}
    with tempfile.TemporaryDirectory() as tmp:
        starts = {
            "scale-wise": {
                "prior as it is": args.run / "generators" / "coarse_to_fine",
                f"prior fine-tuned {FINE_TUNE_STEPS} steps": train(
                    "generator", Path(tmp) / "generator", f"train_generator.steps={FINE_TUNE_STEPS}"
                ),
            },
            "diffusion": {
                "prior as it is": train(
                    "diffusion",
                    Path(tmp) / "diffusion_as_is",
                    "train_diffusion.init=prior",
                    "train_diffusion.steps=0",
                    "train_diffusion.match_generator_steps=0",
                ),
                f"prior fine-tuned, the FLOPs of {FINE_TUNE_STEPS} generator steps": train(
                    "diffusion",
                    Path(tmp) / "diffusion_fine_tuned",
                    "train_diffusion.init=prior",
                    "train_diffusion.steps=0",
                    f"train_diffusion.match_generator_steps={FINE_TUNE_STEPS}",
                ),
                f"random weights, the FLOPs of {FINE_TUNE_STEPS} generator steps": train(
                    "diffusion",
                    Path(tmp) / "diffusion_scratch",
                    "train_diffusion.init=",
                    "train_diffusion.steps=0",
                    f"train_diffusion.match_generator_steps={FINE_TUNE_STEPS}",
                ),
            },
        }
        for family, grid in (("scale-wise", GENERATOR_GUIDANCE), ("diffusion", DDIM_GUIDANCE)):
            for start, run in starts[family].items():
                reconstructor = Reconstructor.from_runs(run, encoder, tokenizer)
                base = reconstructor.decoder
                for scale in grid:
                    if family == "scale-wise":
                        decoder = dataclasses.replace(base, sampler=dataclasses.replace(base.sampler, cfg_scale=scale))
                    else:
                        ddim = dataclasses.replace(base.ddim, cfg_scale=scale, steps=DDIM_STEPS)
                        decoder = dataclasses.replace(base, ddim=ddim)
                    reconstructor.decoder = decoder
                    images = reconstructor.reconstruct(voxels, 1, keys=keys, batch_size=BATCH).images_BHW3
                    rows[family].setdefault(start, {})[f"{scale:g}"] = scores(images)
                    print(f"{family:10s} {start:60s} guidance {scale:g}: {rows[family][start][f'{scale:g}']}")

    chosen = {}
    for family, by_start in rows.items():
        best = max(
            ((start, scale, row) for start, by_scale in by_start.items() for scale, row in by_scale.items()),
            key=lambda item: mean_score(item[2]),
        )
        chosen[family] = {"start": best[0], "guidance": float(best[1]), "mean_score": mean_score(best[2])}
        chosen[family] |= {"scores": best[2]}
    numbers = {
        "protocol": {
            "split": "val",
            "subject": 1,
            "n_images": len(keys),
            "single_shot": True,
            "routing": "coarse_to_fine",
            "ddim_steps": DDIM_STEPS,
            "rule": "per decoder, the (start, guidance) with the highest mean of PixCorr, SSIM, colour F1 and category "
            "F1 on the val split",
        },
        "rows": rows,
        "chosen": chosen,
    }
    record = result_record("decoder-val-probe", sys.argv[1:], time.perf_counter() - started, numbers)
    record["command"] = " ".join(["python scripts/decoder_val_probe.py", *sys.argv[1:]])
    write_result(args.record, record)
    for family, choice in chosen.items():
        print(f"chosen {family}: {choice}")


if __name__ == "__main__":
    main()

"""Stage-1 ablation on a dataset: supervision modes × seeds, trained and evaluated the same way.

    python scripts/encoder_ablation.py --data runs/demo/data --out runs/encoder-ablation \\
        [--modes cascaded single] [--seeds 0 1 2] [--preset demo]

Writes one run folder per (mode, seed) and `ablation.json` with every run's test metrics and the mean ±
sd over seeds: retrieval top-1 both ways; per level, two-way identification and cosine of the trained
head where the level was supervised, else of a linear probe fitted on train (ridge chosen on val).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from mindhier.config import preset
from mindhier.fileio import write_json
from mindhier.metrics.encoder_eval import evaluate_encoder
from mindhier.train.encoder import train_encoder


def level_readout(level: dict) -> dict:
    """The head where the level was supervised, else the probe."""
    return {"readout": "head", **level["head"]} if level["head"] else {"readout": "probe", **level["probe"]}


def mean_sd(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--modes", nargs="+", default=["cascaded", "single"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--preset", default="demo")
    args = parser.parse_args()

    base = preset(args.preset)
    runs = []
    for mode in args.modes:
        for seed in args.seeds:
            cfg = dataclasses.replace(
                base,
                alignment=dataclasses.replace(base.alignment, supervision=mode),
                train_encoder=dataclasses.replace(base.train_encoder, seed=seed),
            )
            run_dir = args.out / f"{mode}-seed{seed}"
            trained = train_encoder(cfg, args.data, run_dir, resume=(run_dir / "config.json").exists())
            result = evaluate_encoder(run_dir, args.data)
            for subject, entry in result["subjects"].items():
                runs.append(
                    {
                        "mode": mode,
                        "seed": seed,
                        "subject": subject,
                        "train_seconds": json.loads((run_dir / "train_summary.json").read_text())["seconds"],
                        "best_step": trained.best_step,
                        "retrieval": entry["retrieval"],
                        "levels": [level_readout(level) for level in entry["levels"]],
                    }
                )
            print(f"{mode} seed {seed}: done", flush=True)

    summary = {}
    for mode in args.modes:
        rows = [r for r in runs if r["mode"] == mode]
        n_levels = len(rows[0]["levels"])
        summary[mode] = {
            "brain_to_image_top1": mean_sd([r["retrieval"]["brain_to_image_top1"] for r in rows]),
            "image_to_brain_top1": mean_sd([r["retrieval"]["image_to_brain_top1"] for r in rows]),
            "chance": rows[0]["retrieval"]["chance"],
            "train_seconds": mean_sd([r["train_seconds"] for r in rows]),
            "levels": [
                {
                    "level": m + 1,
                    "readout": rows[0]["levels"][m]["readout"],
                    "two_way_identification": mean_sd([r["levels"][m]["two_way_identification"] for r in rows]),
                    "cosine": mean_sd([r["levels"][m]["cosine"] for r in rows]),
                }
                for m in range(n_levels)
            ],
        }
    write_json(
        args.out / "ablation.json", {"preset": args.preset, "seeds": args.seeds, "summary": summary, "runs": runs}
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

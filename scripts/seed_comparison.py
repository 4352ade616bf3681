"""Paired comparison of reconstruction sets over several seeds of a `demo-long` run (the issue-7 bar).

    python scripts/seed_comparison.py runs/demo-long [--reference coarse_to_fine] \\
        [--against static_terminal shuffled_brain] [--out comparison.json]

For every metric in every seed's `per_image.csv`, the per-image scores are averaged over the seeds (the
same test images in every seed), and the reference is compared with each other set on those per-image
means: mean difference, its bootstrap 95 % interval (10,000 resamples) and the Wilcoxon signed-rank p. Each
seed's own paired result is listed beside it. The tokenizer ceiling is printed as a reference row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mindhier.fileio import write_json
from mindhier.metrics.recons_eval import OFFLINE_HEADLINE_METRICS, read_per_image
from mindhier.metrics.statistics import paired_difference
from mindhier.run_layout import PIPELINE_CEILING, PIPELINE_CONTROL, PIPELINE_EVAL

FIDELITY = OFFLINE_HEADLINE_METRICS


def seed_dirs(run: Path) -> list[Path]:
    dirs = sorted(p for p in run.glob("seed*") if (p / PIPELINE_EVAL).is_dir())
    return dirs or [run]


def per_image(run: Path, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-image scores of one set, averaged over the seeds."""
    loaded = [read_per_image(d / PIPELINE_EVAL / name / "metrics.json") for d in seed_dirs(run)]
    indices = loaded[0][0]
    if any(not np.array_equal(i, indices) for i, _ in loaded):
        sys.exit(f"seed_comparison: the seeds of {name} were evaluated on different images")
    shared = set.intersection(*(set(cols) for _, cols in loaded))
    return indices, {k: np.mean([cols[k] for _, cols in loaded], axis=0) for k in shared}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a demo run folder (with seed* folders for several seeds)")
    parser.add_argument("--reference", default="coarse_to_fine")
    parser.add_argument("--against", nargs="+", default=["static_terminal", PIPELINE_CONTROL])
    parser.add_argument("--metrics", nargs="+", default=list(FIDELITY))
    parser.add_argument("--out", type=Path, help="also write the table as JSON")
    args = parser.parse_args(argv)

    ref_indices, ref = per_image(args.run, args.reference)
    ceiling = (
        per_image(args.run, PIPELINE_CEILING)[1]
        if all((d / PIPELINE_EVAL / PIPELINE_CEILING).is_dir() for d in seed_dirs(args.run))
        else {}
    )
    table: dict = {"seeds": [d.name for d in seed_dirs(args.run)], "reference": args.reference, "rows": {}}
    print(f"{len(table['seeds'])} seed(s); per-image scores averaged over seeds; {len(ref_indices)} test images")
    header = f"{'metric':<22}{args.reference:>12}" + "".join(f"{n[:14]:>44}" for n in args.against) + f"{'ceiling':>10}"
    print(header)
    for metric in args.metrics:
        if metric not in ref:
            continue
        row = {
            "reference": float(ref[metric].mean()),
            "ceiling": float(ceiling[metric].mean()) if metric in ceiling else None,
        }
        cells = []
        for name in args.against:
            indices, other = per_image(args.run, name)
            if not np.array_equal(indices, ref_indices) or metric not in other:
                continue
            pooled = paired_difference(ref[metric], other[metric])
            per_seed = [
                paired_difference(
                    read_per_image(d / PIPELINE_EVAL / args.reference / "metrics.json")[1][metric],
                    read_per_image(d / PIPELINE_EVAL / name / "metrics.json")[1][metric],
                )
                for d in seed_dirs(args.run)
            ]
            row[name] = {"mean": float(other[metric].mean()), "reference_minus": pooled, "per_seed": per_seed}
            lo, hi = pooled["ci95"]
            cells.append(
                f"{other[metric].mean():.3f} Δ{pooled['mean']:+.3f} [{lo:+.3f},{hi:+.3f}] p={pooled['p_wilcoxon']:.1g}"
            )
        table["rows"][metric] = row
        ceiling_cell = f"{row['ceiling']:.3f}" if row["ceiling"] is not None else "—"
        print(f"{metric:<22}{row['reference']:>12.3f}" + "".join(f"{c:>44}" for c in cells) + f"{ceiling_cell:>10}")
    if args.out:
        write_json(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

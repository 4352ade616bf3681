"""`mindhier export`: a reconstruction folder as the files MindEye2's evaluation notebook loads and NSD-named PNGs.

mindhier export --recons FOLDER --out DIR [--name NAME] [--overwrite]

(`metrics/recons_export.py` says what is written; `mindhier eval recons --recons DIR/NAME_all_recons.pt
--subject S --split test` scores the tensor exactly as the folder.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mindhier.cli.options import add_runtime_options, progress_bar


def add_export_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `export` to the `mindhier` subcommands (`commands`: the parser's `add_subparsers()` object)."""
    p = commands.add_parser(
        "export",
        help="a reconstruction folder as the files MindEye2's final_evaluations.ipynb loads, and NSD-named PNGs",
        description="Writes NAME_all_recons.pt (float32 [N, 3, H, W] in [0, 1], rows in ascending stimulus index, "
        "every value the PNG's uint8 / 255); the other files MindEye2's final_evaluations.ipynb loads for model "
        "NAME (NAME_all_blurryrecons.pt: a copy of the reconstructions; NAME_all_clipvoxels.pt, "
        "NAME_all_backbones.pt, NAME_all_prior_out.pt: NaN; NAME_all_predcaptions.pt: empty strings), with "
        "mindeye2_placeholders.json and README_mindeye2.md naming the notebook cells to skip; "
        "NAME_image_indices.npy (0-based index of each row), png/nsdNNNNN.png (NNNNN: NSD's 1-based 73k ID) and "
        "export_manifest.json. For the notebook, the folder goes at MindEyeV2/src/evals/NAME/.",
    )
    p.add_argument(
        "--recons", type=Path, required=True, help="reconstruction folder (image_XXXXXX.png + manifest.json)"
    )
    p.add_argument("--out", type=Path, required=True, help="export folder (must not exist or be empty)")
    p.add_argument("--name", help="file-name prefix: NAME_all_recons.pt (default: the reconstruction folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new one is complete")
    add_runtime_options(p)
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    from mindhier.metrics.recons_export import export_reconstructions

    progress = progress_bar(args)
    try:
        record = export_reconstructions(args.recons, args.out, args.name, args.overwrite, progress)
    finally:
        progress.close()
    print(
        f"{record['n_images']} images of subject {record['subject']}, split {record['split']}, "
        f"{record['height']}×{record['width']} px: {args.out / record['tensor_file']}"
    )
    mindeye2 = record["mindeye2"]
    print(
        f"for MindEye2's final_evaluations.ipynb: place it at MindEyeV2/src/{mindeye2['folder']}, pass "
        f"--all_recons_path={mindeye2['all_recons_path']}, skip cells {', '.join(mindeye2['skip_cells'])} "
        "(README_mindeye2.md)"
    )
    print(f"wrote {args.out}")
    return 0

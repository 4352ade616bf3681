"""`mindhier export`: a reconstruction folder as MindEye2's `*_all_recons.pt` tensor and NSD-named PNGs.

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
        help="a reconstruction folder as MindEye2's *_all_recons.pt tensor and NSD-named PNGs (for other evaluators)",
        description="Writes NAME_all_recons.pt (float32 [N, 3, H, W] in [0, 1], rows in ascending stimulus index, "
        "every value the PNG's uint8 / 255), NAME_image_indices.npy (0-based index of each row), png/nsdNNNNN.png "
        "(NNNNN: NSD's 1-based 73k ID) and export_manifest.json.",
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
    print(f"wrote {args.out}")
    return 0

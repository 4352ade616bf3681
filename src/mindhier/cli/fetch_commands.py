"""`mindhier fetch nsd|weights`: the published data and weights, downloaded, verified and placed where the
reader and the loaders look (`mindhier.fetch`).

mindhier fetch nsd --subjects 1 2 5 7 [--sessions N] [--with-old-test] --to DIR [--cache HF_CACHE]
mindhier fetch weights teacher-clip|switti|var-vqvae|metrics|all [--to DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mindhier.cli.options import IdList, id_range, positive_int


def add_fetch_parser(commands: argparse._SubParsersAction) -> None:
    """Add `fetch` to the `mindhier` subcommands."""
    from mindhier.fetch.sources import WEIGHT_GROUPS

    fetch = commands.add_parser(
        "fetch", help="download the published NSD files and model weights (verified, resumable)"
    ).add_subparsers(dest="fetch_command", required=True)
    p = fetch.add_parser(
        "nsd",
        help="MindEye2's NSD files for some subjects (pscotti/mindeyev2 on the Hugging Face Hub), as a dataset folder",
        description="Needs NSD's terms of use accepted (https://naturalscenesdataset.org). Downloads into the "
        "Hugging Face cache (resumable), verifies every file against the Hub's published digest, links the files "
        "into --to in MindEye2's layout, writes fetch_manifest.json and validates the result as `data info` does.",
    )
    p.add_argument(
        "--subjects", type=id_range, nargs="+", action=IdList, required=True, help="NSD subjects, e.g. 1 2 5 7 or 1..8"
    )
    p.add_argument("--sessions", type=positive_int, help="only the first N training sessions (default: all)")
    p.add_argument("--with-old-test", action="store_true", help="also the older 982-image test split (test_old)")
    p.add_argument("--to", dest="out", type=Path, required=True, metavar="DIR", help="the dataset folder")
    p.add_argument("--cache", type=Path, help="Hugging Face cache to download into (default: huggingface_hub's)")
    p.add_argument("--revision", default="main", help="commit or branch of pscotti/mindeyev2 (default: main)")
    p.add_argument("--overwrite", action="store_true", help="replace files in DIR that differ from the fetched ones")
    p.set_defaults(func=cmd_fetch_nsd)

    p = fetch.add_parser(
        "weights",
        help="the CLIP teacher, Switti, VAR's VQ-VAE and the evaluator's metric networks",
        description="Downloads into the standard caches (the Hugging Face cache and torch hub's checkpoints "
        "folder), where the teacher, `train generator --init switti=…`, `--tokenizer var-vqvae|switti-vqvae` and "
        "`eval recons` find them without flags; or lays out --to DIR like those caches.",
    )
    p.add_argument(
        "groups",
        nargs="+",
        choices=[*WEIGHT_GROUPS, "all"],
        metavar="WEIGHTS",
        help=" | ".join([*WEIGHT_GROUPS, "all"]),
    )
    p.add_argument("--to", dest="out", type=Path, metavar="DIR", help="a folder laid out like the caches")
    p.add_argument("--revision", default="main", help="commit or branch of the Hub repositories (default: main)")
    p.set_defaults(func=cmd_fetch_weights)


def cmd_fetch_nsd(args: argparse.Namespace) -> int:
    from mindhier.data.info import describe_dataset, format_summary
    from mindhier.fetch import download
    from mindhier.fetch.sources import MINDEYE2_REPO, nsd_files

    files = nsd_files(list(args.subjects), args.sessions, args.with_old_test, args.revision)
    root = Path(args.out)
    caches = download.Caches(hub=args.cache, torch_hub=root)
    fetched = download.gather(files, caches, by_hand=lambda f: str(root / f.path))
    placed = download.place(fetched, root, overwrite=args.overwrite)
    print(f"placed {len(placed)} files in {root} ({len(fetched) - len(placed)} already there)")
    summary = describe_dataset(root)
    download.write_manifest(
        root / download.MANIFEST,
        "nsd",
        fetched,
        {
            "repository": MINDEYE2_REPO,
            "revision": args.revision,
            "subjects": list(args.subjects),
            "sessions": args.sessions or "all",
            "with_old_test": args.with_old_test,
        },
    )
    print(format_summary(summary))
    print(f"wrote {root / download.MANIFEST}")
    return 0


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    import torch.hub

    from mindhier.cli.options import default_cache_dir
    from mindhier.fetch import download
    from mindhier.fetch.sources import weight_files

    files = weight_files(list(args.groups), args.revision)
    if args.out is not None:
        hub_cache, torch_hub = Path(args.out) / "huggingface" / "hub", Path(args.out) / "torch" / "hub"
        manifest = Path(args.out) / download.MANIFEST
    else:
        from huggingface_hub import constants

        hub_cache, torch_hub = Path(constants.HF_HUB_CACHE), Path(torch.hub.get_dir())
        manifest = default_cache_dir() / "fetched_weights.json"
    caches = download.Caches(hub=hub_cache, torch_hub=torch_hub)

    def by_hand(file) -> str:
        if file.origin == "url":
            return str(torch_hub / file.path)
        folder = f"{file.repo_type}s--{file.repo_id.replace('/', '--')}"
        return f"{hub_cache / folder} (the Hub's cache layout: `hf download {file.repo_id} {file.filename}`)"

    fetched = download.gather(files, caches, by_hand)
    download.write_manifest(manifest, "weights", fetched, {"groups": list(args.groups), "revision": args.revision})
    for f in fetched:
        print(f"  {f.file.name}: {f.cached} (sha256 {f.sha256[:12]})")
    if args.out is not None:
        print(f"to use them: export HF_HUB_CACHE={hub_cache.resolve()} TORCH_HOME={torch_hub.parent.resolve()}")
    print(f"wrote {manifest}")
    return 0

"""The `mindhier` command: thin subcommands that build a config and call one library function.

Every user error surfaces as one line `mindhier: error: ...` on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mindhier import __version__
from mindhier.errors import MindhierError

EXIT_USER_ERROR = 2


def _add_config_options(parser: argparse.ArgumentParser, default_preset: str = "demo") -> None:
    from mindhier.config import PRESETS

    group = parser.add_argument_group("configuration")
    group.add_argument("--preset", default=default_preset, choices=sorted(PRESETS), help="named preset to start from")
    group.add_argument("--config", type=Path, help="YAML or JSON file applied on top of the preset")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set simulator.n_train=200 (repeatable)",
    )


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _resolve(args: argparse.Namespace, extra: list[str] | None = None):
    from mindhier.config import resolve

    return resolve(args.preset, args.config, [*args.overrides, *(extra or [])])


def _simulator_flags(args: argparse.Namespace) -> list[str]:
    """Explicit simulate flags, as overrides applied after --config/--set."""
    pairs = [
        ("simulator.subjects", ",".join(map(str, args.subjects)) if args.subjects else None),
        ("stimuli.source", args.stimuli),
        ("simulator.n_train", args.n_train),
        ("simulator.n_test", args.n_test),
        ("stimuli.size", args.size),
        ("simulator.seed", args.seed),
        ("simulator.image_store", getattr(args, "image_store", None)),
    ]
    return [f"{key}={value}" for key, value in pairs if value is not None]


def _add_simulator_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", type=int, nargs="+", help="subject ids, e.g. --subjects 1 2")
    parser.add_argument("--stimuli", help="scenes | photos | folder:PATH")
    parser.add_argument("--n-train", type=int, help="unique training images (each shown once)")
    parser.add_argument("--n-test", type=int, help="unique test images (each shown simulator.test_repeats times)")
    parser.add_argument("--size", type=int, help="stimulus side in pixels")
    parser.add_argument("--seed", type=int, help="seed of stimuli, subjects and noise")


def _progress(args: argparse.Namespace):
    from mindhier.progress import TqdmProgress

    return TqdmProgress(enabled=not args.quiet)


def _apply_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


# ------------------------------------------------------------------------------------------ commands


def cmd_simulate(args: argparse.Namespace) -> int:
    from mindhier.data.info import describe_dataset, format_summary
    from mindhier.data.simulator import simulate

    cfg = _resolve(args, _simulator_flags(args))
    _apply_threads(args)
    progress = _progress(args)
    try:
        result = simulate(cfg, args.out, overwrite=args.overwrite, progress=progress)
    finally:
        progress.close()
    print(format_summary(describe_dataset(result.root, cfg.data, verify_images=False)))
    seconds = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    print(f"wrote {result.root} ({seconds})")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from mindhier.data.info import describe_dataset, format_summary

    cfg = _resolve(args)
    summary = describe_dataset(args.dir, cfg.data, verify_images=not args.no_verify_images)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_bench_simulate(args: argparse.Namespace) -> int:
    from mindhier.bench.simulate import bench_simulate
    from mindhier.fileio import write_json

    cfg = _resolve(args, _simulator_flags(args))
    _apply_threads(args)
    progress = _progress(args)
    try:
        record = bench_simulate(cfg, progress=progress)
    finally:
        progress.close()
    write_json(args.out, record)
    print(
        f"simulated {record['n_images']} images for {len(record['subjects'])} subject(s) in "
        f"{record['total_seconds']:.1f} s; wrote {args.out}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mindhier.demo import run_demo

    cfg = _resolve(args)
    _apply_threads(args)
    progress = _progress(args)
    try:
        result = run_demo(cfg, args.out, data=args.data, fresh=args.fresh, progress=progress)
    finally:
        progress.close()
    for line in result.lines:
        print(line)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from mindhier.config import to_dict

    print(json.dumps(to_dict(_resolve(args)), indent=2))
    return 0


# ------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mindhier",
        description="fMRI-to-image reconstruction with hierarchy-to-hierarchy autoregression (MindHier).",
    )
    parser.add_argument("--version", action="version", version=f"mindhier {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("simulate", help="simulate subjects viewing images; write a MindEye2-layout dataset")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    _add_simulator_flags(p)
    p.add_argument("--image-store", choices=["png", "hdf5"], help="stimuli as PNG files or one HDF5 array")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new one is complete")
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_simulate)

    data = commands.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("info", help="validate a dataset and list subjects, splits, ROIs, noise ceilings")
    p.add_argument("dir", type=Path, help="dataset folder (MindEye2 layout)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-verify-images", action="store_true", help="skip decoding every stimulus image")
    _add_config_options(p)
    p.set_defaults(func=cmd_data_info)

    bench = commands.add_parser("bench", help="benchmarks (results written to files)").add_subparsers(
        dest="bench_command", required=True
    )
    p = bench.add_parser("simulate", help="time the simulator stage by stage")
    p.add_argument("--out", type=Path, required=True, help="result file (.json)")
    _add_simulator_flags(p)
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_bench_simulate)

    p = commands.add_parser("demo", help="the main job on the embedded default world")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default: runs/demo)")
    p.add_argument("--data", type=Path, help="use this dataset folder instead of simulating one")
    p.add_argument("--fresh", action="store_true", help="recompute every stage instead of reusing finished ones")
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_demo)

    config = commands.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    p = config.add_parser("show", help="print the resolved configuration")
    _add_config_options(p)
    p.set_defaults(func=cmd_config_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MindhierError as err:
        print(f"mindhier: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("mindhier: interrupted", file=sys.stderr)
        return 130

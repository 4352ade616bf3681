"""Subcommands that make and inspect data and run the whole pipeline: simulate, data info, features, demo, config."""

from __future__ import annotations

import argparse
import json

from mindhier.cli.options import (
    apply_threads,
    default_cache_dir,
    inference_device,
    progress_bar,
    resolve_config,
    simulator_flags,
)


def cmd_simulate(args: argparse.Namespace) -> int:
    from mindhier.data.info import describe_dataset, format_summary
    from mindhier.data.simulator import simulate

    cfg = resolve_config(args, simulator_flags(args))
    bold = bold_config(args)
    apply_threads(args)
    progress = progress_bar(args)
    try:
        result = simulate(cfg, args.out, overwrite=args.overwrite, progress=progress, bold=bold)
    finally:
        progress.close()
    print(format_summary(describe_dataset(result.root, cfg.data, verify_images=False)))
    seconds = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    print(f"wrote {result.root} ({seconds})")
    return 0


MOTION_LEVELS = {
    "none": {"motion_mm": 0.0, "jumps": 0},
    "small": {},
    "large": {"motion_mm": 0.8, "jumps": 3, "jump_mm": 2.0},
}


def bold_config(args: argparse.Namespace):
    """The BOLD simulation asked for by `--bold` (None without it)."""
    if getattr(args, "bold", None) is None:
        return None
    from mindhier.data.bold.simulate_bold import BoldSimConfig

    motion = MOTION_LEVELS[args.bold_motion]
    return BoldSimConfig(trials=args.bold, run_trials=args.bold_run_trials, tr=args.tr, **motion)


def cmd_data_info(args: argparse.Namespace) -> int:
    from mindhier.data.info import describe_dataset, format_summary

    cfg = resolve_config(args)
    summary = describe_dataset(args.dir, cfg.data, verify_images=not args.no_verify_images)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.teachers import build_teacher

    extra = []
    if args.teacher:
        extra.append(f"teacher.name={args.teacher}")
    if args.layers:
        extra.append("teacher.layers=" + ",".join(map(str, args.layers)))
    cfg = resolve_config(args, extra)
    apply_threads(args)
    device = inference_device(args)
    progress = progress_bar(args)
    try:
        cache = build_feature_cache(
            args.data,
            build_teacher(cfg.teacher, device=device),
            out=args.out,
            overwrite=args.overwrite,
            progress=progress,
            batch_size=args.batch_size,
        )
    finally:
        progress.close()
    levels = ", ".join(f"{lvl.name} [{lvl.tokens}×{lvl.dim}]" for lvl in cache.levels)
    print(f"{'reused' if cache.reused else 'wrote'} {cache.path}: {cache.n_images} images; levels {levels}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mindhier.cli.record import ResultRecorder
    from mindhier.config.presets import from_scratch
    from mindhier.demo import run_demo
    from mindhier.result_numbers import demo_numbers

    recorder = ResultRecorder(args, "demo")
    cfg = resolve_config(args, [f"demo.split={args.split}"] if args.split else [])
    if args.from_scratch:
        cfg = from_scratch(cfg)
    apply_threads(args)
    progress = progress_bar(args)
    try:
        result = run_demo(
            cfg,
            args.out,
            data=args.data,
            fresh=args.fresh,
            progress=progress,
            judge_cache=None if args.no_judge else (args.cache or default_cache_dir()),
            with_diffusion=args.with_diffusion,
            device=inference_device(args),
            batch_size=args.batch_size,
        )
    finally:
        progress.close()
    for line in result.lines:
        print(line)
    written = recorder.finish(lambda: demo_numbers(args.out))
    if written is not None:
        print(f"wrote {written}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from mindhier.config import to_dict

    print(json.dumps(to_dict(resolve_config(args)), indent=2))
    return 0

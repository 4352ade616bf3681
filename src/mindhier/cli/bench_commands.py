"""Benchmark subcommands (results written to files): simulate, sampler, decoders."""

from __future__ import annotations

import argparse
from pathlib import Path

from mindhier.cli.options import (
    apply_threads,
    default_cache_dir,
    inference_device,
    progress_bar,
    resolve_config,
    simulator_flags,
)
from mindhier.cli.realtime_commands import replay_speed
from mindhier.cli.record import ResultRecorder
from mindhier.fileio import refuse_existing
from mindhier.result_numbers import decoders_numbers, sampler_numbers


def cmd_bench_simulate(args: argparse.Namespace) -> int:
    from mindhier.bench.simulate import bench_simulate
    from mindhier.fileio import write_json

    cfg = resolve_config(args, simulator_flags(args))
    refuse_existing(args.out, args.overwrite, "benchmark result")
    recorder = ResultRecorder(args, "bench-simulate")
    apply_threads(args)
    progress = progress_bar(args)
    try:
        record = bench_simulate(cfg, progress=progress)
    finally:
        progress.close()
    write_json(args.out, record)
    recorder.finish(lambda: {k: v for k, v in record.items() if k not in ("machine", "provenance", "config")})
    print(
        f"simulated {record['n_images']} images for {len(record['subjects'])} subject(s) in "
        f"{record['total_seconds']:.1f} s; wrote {args.out}"
    )
    return 0


def cmd_bench_sampler(args: argparse.Namespace) -> int:
    from mindhier.bench.sampler import bench_sampler
    from mindhier.fileio import write_json

    cfg = resolve_config(args)
    refuse_existing(args.out, args.overwrite, "benchmark result")
    recorder = ResultRecorder(args, "bench-sampler")
    apply_threads(args)
    record = bench_sampler(cfg, device=inference_device(args), modes=_ordered(args.modes))
    write_json(args.out, record)
    recorder.finish(lambda: sampler_numbers(record))
    for batch, per_mode in record["batches"].items():
        for mode in args.modes:
            row = per_mode[mode]
            print(
                f"batch {batch}, {mode}: {row['sampling_seconds'] * 1e3 / int(batch):.2f} ms/image; sampling / "
                f"teacher-forced = {row['ratio_sampling_to_teacher_forced']}"
            )
    print(f"wrote {args.out}")
    return 0


def cmd_bench_decoders(args: argparse.Namespace) -> int:
    from mindhier.bench.decoders import bench_decoders, summary_lines
    from mindhier.fileio import write_json

    cfg = resolve_config(args)
    refuse_existing(args.out, args.overwrite, "benchmark result")
    recorder = ResultRecorder(args, "bench-decoders")
    apply_threads(args)
    run_dir = args.run or Path("runs") / cfg.preset
    recons_dir = args.out.with_name(args.out.stem + "_recons")
    progress = progress_bar(args)
    try:
        record = bench_decoders(
            cfg,
            run_dir,
            recons_dir,
            judge_cache=None if args.no_judge else (args.cache or default_cache_dir()),
            repeats=args.repeats,
            curve_steps=tuple(args.curve_steps),
            progress=progress,
            device=inference_device(args),
            modes=_ordered(args.modes),
        )
    finally:
        progress.close()
    write_json(args.out, record)
    recorder.finish(lambda: decoders_numbers(record))
    for line in summary_lines(record):
        print(line)
    print(f"wrote {args.out} (reconstructions and their metrics in {recons_dir})")
    return 0


def cmd_bench_realtime(args: argparse.Namespace) -> int:
    from mindhier.bench.realtime import bench_realtime, summary_lines
    from mindhier.fileio import write_json
    from mindhier.result_numbers import realtime_numbers

    refuse_existing(args.out, args.overwrite, "benchmark result")
    recorder = ResultRecorder(args, "bench-realtime")
    apply_threads(args)
    for speed in args.speeds:
        if speed != "max":
            replay_speed(speed)
    progress = progress_bar(args)
    try:
        record = bench_realtime(
            args.model,
            args.data,
            args.offline,
            args.run,
            tuple(args.speeds),
            tuple(args.windows),
            args.workdir,
            progress=progress,
        )
    finally:
        progress.close()
    write_json(args.out, record)
    recorder.finish(lambda: realtime_numbers(record))
    for line in summary_lines(record):
        print(line)
    print(f"wrote {args.out}")
    return 0


def _ordered(modes: list[str]) -> tuple[str, ...]:
    """Eager first, then compiled (the speed options are timed in the last, fastest mode)."""
    return tuple(mode for mode in ("eager", "compiled") if mode in modes)

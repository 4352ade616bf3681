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
        result = run_demo(
            cfg,
            args.out,
            data=args.data,
            fresh=args.fresh,
            progress=progress,
            judge_cache=None if args.no_judge else (args.cache or default_cache_dir()),
            with_diffusion=args.with_diffusion,
        )
    finally:
        progress.close()
    for line in result.lines:
        print(line)
    return 0


def _distributed(args: argparse.Namespace):
    """(device, rank, world_size); under torchrun, initialise the process group from its variables."""
    import os

    import torch

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    wanted = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if world_size > 1:
        backend = "nccl" if wanted == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        device = f"cuda:{local_rank}" if wanted == "cuda" else "cpu"
        if wanted == "cuda":
            torch.cuda.set_device(local_rank)
        return device, rank, world_size
    return wanted, 0, 1


def cmd_features(args: argparse.Namespace) -> int:
    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.teachers import build_teacher

    extra = []
    if args.teacher:
        extra.append(f"teacher.name={args.teacher}")
    if args.layers:
        extra.append("teacher.layers=" + ",".join(map(str, args.layers)))
    cfg = _resolve(args, extra)
    _apply_threads(args)
    progress = _progress(args)
    try:
        cache = build_feature_cache(
            args.data, build_teacher(cfg.teacher), out=args.out, overwrite=args.overwrite, progress=progress
        )
    finally:
        progress.close()
    levels = ", ".join(f"{lvl.name} [{lvl.tokens}×{lvl.dim}]" for lvl in cache.levels)
    print(f"{'reused' if cache.reused else 'wrote'} {cache.path}: {cache.n_images} images; levels {levels}")
    return 0


def cmd_train_encoder(args: argparse.Namespace) -> int:
    from mindhier.train.encoder import train_encoder

    cfg = _resolve(args)
    _apply_threads(args)
    device, rank, world_size = _distributed(args)
    progress = _progress(args) if rank == 0 else None
    try:
        run = train_encoder(
            cfg,
            args.data,
            args.out,
            subjects=tuple(args.subjects) if args.subjects else None,
            features=args.features,
            resume=args.resume,
            device=device,
            rank=rank,
            world_size=world_size,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    if rank == 0:
        print(
            f"trained {run.steps} steps in {run.seconds:.1f} s; best val retrieval top-1 {run.best_val:.3f} "
            f"at step {run.best_step}; run: {run.run_dir}"
        )
    return 0


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from mindhier.fileio import read_json
    from mindhier.train.tokenizer import SUMMARY_FILE, train_tokenizer

    cfg = _resolve(args)
    _apply_threads(args)
    device, rank, world_size = _distributed(args)
    progress = _progress(args) if rank == 0 else None
    try:
        run_dir = train_tokenizer(
            cfg,
            args.data,
            args.out,
            resume=args.resume,
            device=device,
            rank=rank,
            world_size=world_size,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    if rank == 0:
        summary = read_json(run_dir / SUMMARY_FILE, "training summary")
        final = summary.get("final_val", {})
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in final.items())
        print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s; val: {metrics}; run: {run_dir}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from mindhier.data.token_cache import build_token_cache

    _apply_threads(args)
    progress = _progress(args)
    try:
        cache = build_token_cache(args.data, args.run, out=args.out, overwrite=args.overwrite, progress=progress)
    finally:
        progress.close()
    scales = "×".join(str(s) for s in cache.scales)
    print(f"{'reused' if cache.reused else 'wrote'} {cache.path}: {len(cache.indices)} images, scales {scales}")
    return 0


def _train_decoder(args: argparse.Namespace, train, summary_file: str) -> dict | None:
    """Train a Stage-2 decoder (generator or diffusion baseline) on a frozen encoder and tokenizer."""
    from mindhier.fileio import read_json

    cfg = _resolve(args)
    _apply_threads(args)
    device, rank, world_size = _distributed(args)
    progress = _progress(args) if rank == 0 else None
    try:
        run_dir = train(
            cfg,
            args.data,
            args.encoder,
            args.tokenizer,
            args.out,
            subjects=tuple(args.subjects) if args.subjects else None,
            resume=args.resume,
            device=device,
            rank=rank,
            world_size=world_size,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    return {**read_json(run_dir / summary_file, "training summary"), "run": run_dir} if rank == 0 else None


def cmd_train_generator(args: argparse.Namespace) -> int:
    from mindhier.train.generator import SUMMARY_FILE, train_generator

    summary = _train_decoder(args, train_generator, SUMMARY_FILE)
    if summary is not None:
        print(
            f"trained a {summary['routing']} generator ({summary['parameters']:,} parameters) for {summary['steps']} "
            f"steps in {summary['seconds']:.1f} s; best val loss {summary['best_val_loss']:.3f}; run: {summary['run']}"
        )
    return 0


def cmd_train_diffusion(args: argparse.Namespace) -> int:
    from mindhier.train.diffusion import SUMMARY_FILE, train_diffusion

    summary = _train_decoder(args, train_diffusion, SUMMARY_FILE)
    if summary is not None:
        print(
            f"trained the diffusion baseline ({summary['parameters']:,} parameters, "
            f"{summary['parameter_ratio']:.3f}× the generator's) for {summary['steps']} steps "
            f"({summary['training_flops']:.3g} training FLOPs; generator {summary['generator_training_flops']:.3g}) "
            f"in {summary['seconds']:.1f} s; best val loss {summary['best_val_loss']:.4f}; run: {summary['run']}"
        )
    return 0


def cmd_bench_sampler(args: argparse.Namespace) -> int:
    from mindhier.bench.sampler import bench_sampler
    from mindhier.fileio import write_json

    cfg = _resolve(args)
    _apply_threads(args)
    record = bench_sampler(cfg)
    write_json(args.out, record)
    ratio = record["ratio_sampling_to_teacher_forced"]
    print(f"sampler: {record['images_per_second']} images/s; sampling / teacher-forced = {ratio}; wrote {args.out}")
    return 0


def cmd_bench_decoders(args: argparse.Namespace) -> int:
    from mindhier.bench.decoders import bench_decoders, summary_lines
    from mindhier.fileio import write_json

    cfg = _resolve(args)
    _apply_threads(args)
    run_dir = args.run or Path("runs") / cfg.preset
    recons_dir = args.out.with_name(args.out.stem + "_recons")
    progress = _progress(args)
    try:
        record = bench_decoders(
            cfg,
            run_dir,
            recons_dir,
            judge_cache=None if args.no_judge else (args.cache or default_cache_dir()),
            repeats=args.repeats,
            curve_steps=tuple(args.curve_steps),
            progress=progress,
        )
    finally:
        progress.close()
    write_json(args.out, record)
    for line in summary_lines(record):
        print(line)
    print(f"wrote {args.out} (reconstructions and their metrics in {recons_dir})")
    return 0


def _weights_option(pairs: list[str]) -> dict[str, str]:
    from mindhier.errors import ConfigError

    weights = {}
    for item in pairs:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--weights expects name=PATH (e.g. alexnet=/models/alexnet.pth), got {item!r}")
        weights[name] = path
    return weights


def default_cache_dir() -> Path:
    """The user's cache for trained helper networks (the judge); the CLI's choice, not the library's."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mindhier"


def cmd_eval_recons(args: argparse.Namespace) -> int:
    from mindhier.metrics.extractors import build_extractors
    from mindhier.metrics.judge import get_judge
    from mindhier.metrics.recons_eval import evaluate_reconstructions, format_metrics

    _apply_threads(args)
    progress = _progress(args)
    try:
        extractors = build_extractors(weights=_weights_option(args.weights), torch_hub_dir=args.torch_hub)
        judge = None if args.no_judge else get_judge(args.cache or default_cache_dir(), progress=progress)
        record = evaluate_reconstructions(
            args.recons,
            args.data,
            args.out,
            subject=args.subject,
            split=args.split,
            extractors=extractors,
            judge=judge,
            progress=progress,
        )
    finally:
        progress.close()
    print(format_metrics(record))
    print(f"wrote {args.out}")
    return 0


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from mindhier.metrics.recons_eval import compare, format_comparison

    print(format_comparison(compare(args.metrics)))
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from mindhier.config import apply_overrides
    from mindhier.errors import ConfigError
    from mindhier.runs import is_diffusion_run, load_generator, load_run_config
    from mindhier.sampling.reconstruct import Reconstructor, write_reconstructions

    _apply_threads(args)
    run_cfg = apply_overrides(load_run_config(args.generator), args.overrides)
    if is_diffusion_run(args.generator):
        if args.routing not in (None, "static_terminal"):
            raise ConfigError(f"{args.generator} is the diffusion baseline: its guidance is static_terminal")
        sampler = run_cfg.ddim
    else:
        load_generator(args.generator, routing=args.routing)  # refuses a routing it was not trained with
        sampler = run_cfg.sampler
    reconstructor = Reconstructor.from_runs(args.generator, args.encoder, args.tokenizer, sampler)
    subject = args.subject or next(iter(reconstructor.encoder.shapes.voxels))
    progress = _progress(args)
    try:
        out = write_reconstructions(
            reconstructor,
            args.data,
            args.out,
            subject,
            args.split,
            args.samples,
            args.select,
            args.average,
            args.seed,
            args.strips,
            args.shuffle_brain,
            args.determinism,
            args.overwrite,
            progress,
        )
    finally:
        progress.close()
    print(f"wrote {out}")
    return 0


def cmd_ceiling(args: argparse.Namespace) -> int:
    from mindhier.sampling.reconstruct import write_tokenizer_ceiling

    out = write_tokenizer_ceiling(args.tokenizer, args.data, args.out, args.subject, args.split, args.overwrite)
    print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mindhier.report.html import build_report

    print(f"report: {build_report(args.runs, args.out)}")
    return 0


def cmd_eval_encoder(args: argparse.Namespace) -> int:
    from mindhier.fileio import write_json
    from mindhier.metrics.encoder_eval import evaluate_encoder, format_encoder_eval

    _apply_threads(args)
    progress = _progress(args)
    try:
        result = evaluate_encoder(
            args.run,
            args.data,
            subjects=tuple(args.subjects) if args.subjects else None,
            split=args.split,
            features=args.features,
            progress=progress,
        )
    finally:
        progress.close()
    out = (args.out or args.run) / "encoder_eval.json"
    write_json(out, result)
    print(format_encoder_eval(result))
    print(f"wrote {out}")
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
    p = bench.add_parser("decoders", help="scale-wise sampler against the diffusion baseline: speed and quality")
    p.add_argument("--out", type=Path, required=True, help="result file (.json)")
    p.add_argument("--run", type=Path, help="demo run folder to train or reuse (default: runs/<preset>)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per variant and batch (median reported)")
    p.add_argument(
        "--curve-steps", type=int, nargs="+", default=[5, 10, 25, 50, 100], help="DDIM steps of the quality curve"
    )
    p.add_argument("--cache", type=Path, help="cache for the scene judge (default: ~/.cache/mindhier)")
    p.add_argument("--no-judge", action="store_true", help="skip the scene judge")
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_bench_decoders)

    p = bench.add_parser("sampler", help="time scale-wise sampling against one teacher-forced forward")
    p.add_argument("--out", type=Path, required=True, help="result file (.json)")
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_bench_sampler)

    p = commands.add_parser("demo", help="the main job on the embedded default world")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default: runs/demo)")
    p.add_argument("--data", type=Path, help="use this dataset folder instead of simulating one")
    p.add_argument("--fresh", action="store_true", help="recompute every stage instead of reusing finished ones")
    p.add_argument("--cache", type=Path, help="cache for the scene judge (default: ~/.cache/mindhier)")
    p.add_argument("--no-judge", action="store_true", help="skip the scene judge")
    p.add_argument(
        "--with-diffusion", action="store_true", help="add the latent diffusion baseline (matched size and FLOPs)"
    )
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("features", help="cache a teacher's feature hierarchy for a dataset's stimuli")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (MindEye2 layout)")
    p.add_argument("--teacher", help="efficientnet-lite0 | clip (default: the preset's)")
    p.add_argument("--layers", type=int, nargs="+", help="1-based teacher layers, shallow to deep")
    p.add_argument("--out", type=Path, help="cache folder (default: DATA/features/<teacher>-<key>)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache made with another configuration")
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_features)

    train = commands.add_parser("train", help="train a stage").add_subparsers(dest="train_command", required=True)
    p = train.add_parser("encoder", help="Stage 1: the hierarchical fMRI encoder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (MindEye2 layout)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--subjects", type=int, nargs="+", help="subjects to train on (default: all in the dataset)")
    p.add_argument("--features", type=Path, help="feature cache folder (default: built or reused under DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available); torchrun sets ranks")
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_train_encoder)

    p = train.add_parser("tokenizer", help="Stage 2a: the multi-scale residual VQ tokenizer (images only)")
    p.add_argument("--data", required=True, help="dataset folder (its train/val stimuli) or folder:PATH of images")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available); torchrun sets ranks")
    _add_config_options(p)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_train_tokenizer)

    for name, what, func in (
        ("generator", "Stage 2b: the scale-wise generator on a frozen encoder and tokenizer", cmd_train_generator),
        ("diffusion", "the latent diffusion baseline on the same frozen encoder and tokenizer", cmd_train_diffusion),
    ):
        p = train.add_parser(name, help=what)
        p.add_argument("--data", type=Path, required=True, help="dataset folder")
        p.add_argument("--encoder", type=Path, required=True, help="encoder run folder")
        p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer run folder")
        p.add_argument("--out", type=Path, required=True, help="run folder")
        p.add_argument("--subjects", "--subject", type=int, nargs="+", help="subjects (default: the encoder's first)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        p.add_argument("--device", help="cpu | cuda (default: cuda when available); torchrun sets ranks")
        _add_config_options(p)
        _add_runtime_options(p)
        p.set_defaults(func=func)

    p = commands.add_parser("tokenize", help="cache every stimulus's multi-scale tokens under a trained tokenizer")
    p.add_argument("--run", type=Path, required=True, help="tokenizer run folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--out", type=Path, help="cache folder (default: DATA/tokens/tokenizer-<key>)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache made with another tokenizer")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_tokenize)

    p = commands.add_parser("reconstruct", help="reconstruct every test image from brain activity")
    p.add_argument("--generator", type=Path, required=True, help="generator (or diffusion baseline) run folder")
    p.add_argument("--encoder", type=Path, help="encoder run (default: the one the generator was trained with)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer run (default: the one the generator was trained with)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--subject", type=int, help="default: the encoder's first subject")
    p.add_argument("--split", default="test", choices=["test", "val", "test_old"])
    p.add_argument("--samples", type=int, default=1, help="N candidates per image (default 1: single shot)")
    p.add_argument(
        "--select",
        default="first",
        choices=["first", "brain"],
        help="keep the first sample, or the one agreeing best with the brain's predicted embedding",
    )
    p.add_argument(
        "--average",
        default="voxels",
        choices=["voxels", "outputs"],
        help="average test repetitions as voxels or as encoder outputs",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strips", action="store_true", help="also write the coarse-to-fine strip of every image")
    p.add_argument("--shuffle-brain", action="store_true", help="control: permute brain inputs across images")
    p.add_argument("--determinism", type=int, default=0, metavar="R", help="also reconstruct under R − 1 more seeds")
    p.add_argument("--routing", help="refuse unless the generator was trained with this routing")
    p.add_argument("--out", type=Path, required=True, help="output folder (image_XXXXXX.png + manifest.json)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sampler settings, e.g. --set sampler.cfg_scale=4",
    )
    _add_runtime_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = commands.add_parser("ceiling", help="the tokenizer's reconstructions of the true test images (a reference)")
    p.add_argument("--tokenizer", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--subject", type=int, default=1)
    p.add_argument("--split", default="test", choices=["test", "val", "test_old"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_ceiling)

    p = commands.add_parser("report", help="a static HTML report of pipeline runs (opens from disk)")
    p.add_argument("runs", type=Path, nargs="+", help="pipeline run folders (as `mindhier demo` writes them)")
    p.add_argument("--out", type=Path, required=True, help="report folder (index.html + figures)")
    p.set_defaults(func=cmd_report)

    evaluate = commands.add_parser("eval", help="evaluate a trained stage").add_subparsers(
        dest="eval_command", required=True
    )
    p = evaluate.add_parser("recons", help="score a folder of reconstructions with the field's metrics")
    p.add_argument("--recons", type=Path, required=True, help="folder of image_XXXXXX.png + manifest.json")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (for the true images)")
    p.add_argument("--subject", type=int, help="default: the manifest's")
    p.add_argument("--split", choices=["test", "val", "test_old"], help="default: the manifest's")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json and per_image.csv")
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="explicit weights file of a metric network, e.g. alexnet=/models/alexnet-owt-7be5be79.pth",
    )
    p.add_argument("--torch-hub", type=Path, help="torch hub directory to look in (default: torch's)")
    p.add_argument("--cache", type=Path, help="cache for the judge network (default: ~/.cache/mindhier)")
    p.add_argument("--no-judge", action="store_true", help="skip the scene judge")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_eval_recons)
    p = evaluate.add_parser("compare", help="paired comparison of several metrics.json on the same images")
    p.add_argument("metrics", type=Path, nargs="+", help="metrics.json files; the first is the reference")
    p.set_defaults(func=cmd_eval_compare)

    p = evaluate.add_parser("encoder", help="retrieval, identification and alignment per level on held-out data")
    p.add_argument("--run", type=Path, required=True, help="encoder run folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--subjects", "--subject", type=int, nargs="+", help="subjects (default: the run's)")
    p.add_argument("--split", default="test", choices=["test", "val", "test_old"])
    p.add_argument("--features", type=Path, help="feature cache folder (default: built or reused under DATA)")
    p.add_argument("--out", type=Path, help="folder for encoder_eval.json (default: the run folder)")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_eval_encoder)

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

"""Training subcommands: encoder, tokenizer (+ token cache), generator, diffusion baseline."""

from __future__ import annotations

import argparse

from mindhier.cli.options import apply_threads, distributed_setup, progress_bar, resolve_config


def _train(args: argparse.Namespace, train, *inputs, **options):
    """Resolve the config, set threads and (under torchrun) the process group, and run `train(cfg, *inputs, ...)`
    with a progress bar on rank 0. Returns (what `train` returned, rank)."""
    cfg = resolve_config(args)
    apply_threads(args)
    device, rank, world_size = distributed_setup(args)
    progress = progress_bar(args) if rank == 0 else None
    try:
        result = train(cfg, *inputs, device=device, rank=rank, world_size=world_size, progress=progress, **options)
    finally:
        if progress is not None:
            progress.close()
    return result, rank


def cmd_train_encoder(args: argparse.Namespace) -> int:
    from mindhier.train.encoder import train_encoder

    run, rank = _train(
        args,
        train_encoder,
        args.data,
        args.out,
        subjects=tuple(args.subjects) if args.subjects else None,
        features=args.features,
        resume=args.resume,
    )
    if rank == 0:
        print(
            f"trained {run.steps} steps in {run.seconds:.1f} s; best val retrieval top-1 {run.best_val:.3f} "
            f"at step {run.best_step}; run: {run.run_dir}"
        )
    return 0


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from mindhier.fileio import read_json
    from mindhier.train.tokenizer import SUMMARY_FILE, train_tokenizer

    run_dir, rank = _train(args, train_tokenizer, args.data, args.out, resume=args.resume)
    if rank == 0:
        summary = read_json(run_dir / SUMMARY_FILE, "training summary")
        final = summary.get("final_val", {})
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in final.items())
        print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s; val: {metrics}; run: {run_dir}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from mindhier.data.token_cache import build_token_cache

    apply_threads(args)
    progress = progress_bar(args)
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

    run_dir, rank = _train(
        args,
        train,
        args.data,
        args.encoder,
        args.tokenizer,
        args.out,
        subjects=tuple(args.subjects) if args.subjects else None,
        resume=args.resume,
    )
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

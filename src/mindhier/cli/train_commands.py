"""Training subcommands: encoder, tokenizer (+ token cache), generator, diffusion baseline.

Every training command runs the same way alone or under `torchrun` (one process per GPU): the process group
is started from torchrun's variables, rank 0 draws the progress bar and prints, and every loop returns a
`TrainResult` whose summary the command prints.
"""

from __future__ import annotations

import argparse
import sys

from mindhier.cli.options import (
    apply_threads,
    distributed_setup,
    inference_device,
    progress_bar,
    resolve_config,
)
from mindhier.cli.provisional_run import provisional_run


def _train(args: argparse.Namespace, train, *inputs, cfg=None, **options):
    """Resolve the config (unless given), set threads and (under torchrun) the process group, and run
    `train(cfg, *inputs, ...)` with a progress bar on rank 0. Returns (the `TrainResult`, rank)."""
    import torch.distributed as dist

    cfg = cfg or resolve_config(args)
    apply_threads(args)
    device, rank, world_size = distributed_setup(args)
    progress = progress_bar(args) if rank == 0 else None
    try:
        with provisional_run(getattr(args, "out", None)):
            result = train(cfg, *inputs, device=device, rank=rank, world_size=world_size, progress=progress, **options)
    finally:
        if progress is not None:
            progress.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        for notice in result.summary.get("notices", []):
            print(f"mindhier: {notice}", file=sys.stderr)
    return result, rank


def _where(summary: dict) -> str:
    return f"{summary['world_size']} process(es), {summary['strategy']}, {summary['device']}"


def _best(summary: dict, digits: int = 3) -> str:
    if summary["best_val"] is None:
        return "none (validation never scored; the final weights are kept)"
    return f"{summary['best_val']:.{digits}f} at step {summary['best_step']}"


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
        s = run.summary
        print(
            f"trained {s['steps']} steps in {s['seconds']:.1f} s ({_where(s)}); best val retrieval top-1 {_best(s)}; "
            f"run: {run.run_dir}"
        )
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from mindhier.config import apply_overrides
    from mindhier.run_layout import load_run_config
    from mindhier.train.adapt import adapt_encoder, shared_encoder_run

    if args.preset or args.config:
        cfg = resolve_config(args)  # adapt_encoder refuses a config whose model differs from the shared run's
    else:  # the shared run's own config, with --set and --sessions on top
        sessions = [f"data.sessions={','.join(map(str, args.sessions))}"] if args.sessions else []
        cfg = apply_overrides(load_run_config(shared_encoder_run(args.run)), [*args.overrides, *sessions])
    run, rank = _train(
        args,
        adapt_encoder,
        args.run,
        args.data,
        args.subject,
        args.out,
        cfg=cfg,
        features=args.features,
        resume=args.resume,
    )
    if rank == 0:
        s = run.summary
        print(
            f"adapted {s['adapted_from']} (subjects {', '.join(map(str, s['shared_subjects']))}) to subject "
            f"{args.subject} on sessions {s['sessions']} ({s['train_trials'][str(args.subject)]} trials): {s['steps']} "
            f"steps in {s['seconds']:.1f} s ({_where(s)}); best val retrieval top-1 {_best(s)}; run: {run.run_dir}"
        )
    return 0


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from mindhier.train.tokenizer import train_tokenizer

    run, rank = _train(args, train_tokenizer, args.data, args.out, resume=args.resume)
    if rank == 0:
        s = run.summary
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in s.get("final_val", {}).items())
        print(f"trained {s['steps']} steps in {s['seconds']:.1f} s ({_where(s)}); val: {metrics}; run: {run.run_dir}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from mindhier.data.token_cache import build_token_cache
    from mindhier.runs import load_tokenizer
    from mindhier.tokenizer_source import tokenizer_source

    apply_threads(args)
    source = tokenizer_source(args.run, resolve_config(args).tokenizer)
    tokenizer = load_tokenizer(source, device=inference_device(args))
    progress = progress_bar(args)
    try:
        cache = build_token_cache(
            args.data,
            tokenizer,
            source.identity(),
            out=args.out,
            overwrite=args.overwrite,
            progress=progress,
            batch_size=args.batch_size,
        )
    finally:
        progress.close()
    scales = "×".join(str(s) for s in cache.scales)
    print(f"{'reused' if cache.reused else 'wrote'} {cache.path}: {len(cache.indices)} images, scales {scales}")
    return 0


def _train_decoder(args: argparse.Namespace, train):
    """Train a Stage-2 decoder (generator or diffusion baseline) on a frozen encoder and tokenizer."""
    return _train(
        args,
        train,
        args.data,
        args.encoder,
        args.tokenizer,
        args.out,
        subjects=tuple(args.subjects) if args.subjects else None,
        resume=args.resume,
    )


def cmd_train_generator(args: argparse.Namespace) -> int:
    from mindhier.train.generator import train_generator

    if args.init is not None:
        args.overrides = [*args.overrides, f"train_generator.init={args.init}"]
    run, rank = _train_decoder(args, train_generator)
    if rank == 0:
        s = run.summary
        init = s["init"]
        if "loaded" in init:
            total = init["loaded"] + init["new"]
            print(
                f"init {init['source']}: loaded {init['loaded']} of {total} generator tensors; {init['new']} of the "
                f"modules MindHier adds kept their fresh initialisation; {init['ignored']} checkpoint tensors unused"
            )
        print(
            f"trained a {s['routing']} generator ({s['parameters']:,} parameters) for {s['steps']} steps in "
            f"{s['seconds']:.1f} s ({_where(s)}); best val loss {_best(s)}; run: {run.run_dir}"
        )
    return 0


def cmd_train_diffusion(args: argparse.Namespace) -> int:
    from mindhier.train.diffusion import train_diffusion

    run, rank = _train_decoder(args, train_diffusion)
    if rank == 0:
        s = run.summary
        print(
            f"trained the diffusion baseline ({s['parameters']:,} parameters, "
            f"{s['parameter_ratio']:.3f}× the generator's) for {s['steps']} steps "
            f"({s['training_flops']:.3g} training FLOPs; generator {s['generator_training_flops']:.3g}) "
            f"in {s['seconds']:.1f} s ({_where(s)}); best val loss {_best(s, 4)}; run: {run.run_dir}"
        )
    return 0

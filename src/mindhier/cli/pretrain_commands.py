"""`mindhier pretrain tokenizer|generator`: train, export and verify the embedded world's priors.

mindhier pretrain tokenizer --out RUN [--images 40000] [--val-images 512]     train on the pretraining stream
mindhier pretrain generator --out RUN [--tokenizer prior|RUN] [--images …]    (after the tokenizer prior)
mindhier pretrain diffusion --out RUN [--tokenizer prior|RUN] [--images …]    the baseline's prior, equal terms
mindhier pretrain tokenizer --export RUN [--to DIR]                            write the prior + model card
mindhier pretrain generator --evaluate RUN [--val-images 512]                 condition use per scale, the
                           [--direct-decoder] [--no-judge]                    oracle per routing (and what the
                                                                              condition holds) on held-out
                                                                              stream images; --export carries
                                                                              them into the model card
mindhier pretrain tokenizer --verify [--steps N]                               rerun the shipped prior's first
                                                                              steps; exit 2 unless every loss
                                                                              agrees with the card's (first step
                                                                              1e-5, every step 5 % relative)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from mindhier.cli.options import add_config_options, add_runtime_options, device_name, positive_int, progress_bar


def add_pretrain_parser(commands) -> None:
    pretrain = commands.add_parser(
        "pretrain", help="the embedded world's priors: train, export, verify"
    ).add_subparsers(dest="pretrain_command", required=True)
    for kind, what in (
        ("tokenizer", "the multi-scale VQ tokenizer prior, on the pretraining stream"),
        ("generator", "the generator prior, conditioned on the teacher's features of the pretraining stream"),
        (
            "diffusion",
            "the diffusion baseline's prior, on the same stream and condition with the generator prior's FLOPs",
        ),
    ):
        p = pretrain.add_parser(kind, help=what)
        action = p.add_mutually_exclusive_group(required=True)
        action.add_argument("--out", type=Path, help="pretraining run folder")
        action.add_argument(
            "--export", type=Path, metavar="RUN", help="write RUN's weights and model card as the prior"
        )
        action.add_argument("--verify", action="store_true", help="rerun the shipped prior's first steps and compare")
        if kind == "generator":
            action.add_argument(
                "--evaluate",
                type=Path,
                metavar="RUN",
                help="measure RUN on --val-images held-out stream images: condition use per scale "
                "(RUN/condition_use.json) and single-shot oracle reconstructions per routing (RUN/oracle.json); "
                "--export puts them in the model card",
            )
            p.add_argument(
                "--direct-decoder",
                action="store_true",
                help="with --evaluate: also train and score a direct decoder from the teacher's levels to pixels "
                "on --images stream images, at most 4000 (RUN/direct_decoder.json): what the condition holds at all",
            )
            p.add_argument(
                "--decoder-steps", type=positive_int, default=1500, help="with --direct-decoder: training steps"
            )
            p.add_argument("--no-judge", action="store_true", help="with --evaluate: no scene-judge scores")
            p.add_argument("--cache", type=Path, help="with --evaluate: cache folder of the scene judge")
            p.add_argument(
                "--record",
                type=Path,
                metavar="FILE",
                help="with --evaluate: also write the figures as a result file (results/…json); --set sampler.KEY=V "
                "changes the oracle's sampler",
            )
        p.add_argument("--images", type=positive_int, default=40_000, help="stream images to train on (default 40000)")
        p.add_argument("--val-images", type=positive_int, default=512, help="stream test-split images to validate on")
        if kind != "tokenizer":
            p.add_argument(
                "--tokenizer", default="prior", help="prior (default) or a tokenizer run: the tokens or latents learnt"
            )
        p.add_argument("--priors", type=Path, help="priors folder to export into or verify (default: the package's)")
        p.add_argument(
            "--steps", type=positive_int, help="with --verify: how many of the recorded first steps to rerun"
        )
        p.add_argument("--resume", action="store_true", help="continue the pretraining run in --out")
        p.add_argument("--overwrite", action="store_true", help="with --evaluate: replace the run's records")
        p.add_argument("--device", type=device_name, help="cpu | cuda (default: cuda when available)")
        add_config_options(p)
        add_runtime_options(p)
        p.set_defaults(func=cmd_pretrain, kind=kind)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mindhier.cli.train_commands import _train

    kind = args.kind
    if args.verify:
        from mindhier.train.pretrain import verify_prior

        progress = progress_bar(args)
        try:
            card = None
            if args.priors is not None:
                from mindhier.fileio import read_json

                card = read_json(args.priors / f"{kind}.json", f"{kind} prior model card")
            result = verify_prior(kind, args.steps, card=card, progress=progress)
        finally:
            progress.close()
        tolerance = result["tolerance"]
        bounds = f"first step within {tolerance['first_step']:g}, every step within {tolerance['drift']:g} relative"
        if result["matches"]:
            mark = "match bit for bit"
        elif result["within_tolerance"]:
            mark = (
                f"match within the bounds ({bounds}; from step {result['first_different_step']} this CPU sums in "
                f"another order than the card's, largest difference {result['max_relative_difference']:.1e})"
            )
        else:
            mark = (
                f"DIFFER from step {result['first_different_step']} (first step {result['first_step_difference']:.1e}, "
                f"largest {result['max_relative_difference']:.1e}; required: {bounds})"
            )
        print(f"{kind} prior: the first {result['steps']} steps rerun on {result['threads']} threads: {mark}")
        print(json.dumps({"losses": result["losses"], "recorded": result["expected"]}))
        return 0 if result["within_tolerance"] else 2
    if getattr(args, "evaluate", None) is not None:
        return _evaluate(args)
    if args.export:
        from mindhier.train.pretrain import export_prior

        print(f"wrote {export_prior(kind, args.export, args.priors)} and its model card")
        return 0
    from mindhier.train.pretrain import pretrain_diffusion, pretrain_generator, pretrain_tokenizer

    command = shlex.join(["mindhier", *sys.argv[1:]])
    options = {"command": command, "resume": args.resume}
    if kind == "tokenizer":
        run, rank = _train(args, pretrain_tokenizer, args.out, args.images, args.val_images, **options)
    else:
        pretrain = pretrain_generator if kind == "generator" else pretrain_diffusion
        run, rank = _train(args, pretrain, args.out, args.images, args.val_images, args.tokenizer, **options)
    if rank == 0:
        s = run.summary
        print(f"pretrained the {kind} prior: {s['steps']} steps in {s['seconds']:.1f} s; best val {s['best_val']}")
        print(f"run: {run.run_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """`--evaluate RUN`: condition use, the stream oracle and (with --direct-decoder) the direct decoder."""
    from mindhier.cli.options import default_cache_dir
    from mindhier.cli.record import ResultRecorder
    from mindhier.fileio import refuse_existing
    from mindhier.metrics.condition_use import format_condition_use
    from mindhier.train import prior_quality

    recorder = ResultRecorder(args, "prior")
    run_dir, device = args.evaluate, args.device or "cpu"
    sampler = _sampler_overrides(run_dir, args.overrides)
    names = [prior_quality.CONDITION_USE, prior_quality.ORACLE]
    if args.direct_decoder:
        names.append(prior_quality.DIRECT_DECODER)
    for name in names:  # before any work: one refusal, nothing written
        refuse_existing(run_dir / name, args.overwrite, f"record {name} of {run_dir}")
    progress = progress_bar(args)
    try:
        judge = None
        if not args.no_judge:
            from mindhier.metrics.judge import get_judge

            judge = get_judge(args.cache or default_cache_dir(), progress=progress)
        use = prior_quality.stream_condition_use(run_dir, args.val_images, device, progress, args.overwrite)
        oracle = prior_quality.stream_oracle(
            run_dir,
            min(args.val_images, 256),
            sampler=sampler,
            judge=judge,
            device=device,
            progress=progress,
            overwrite=args.overwrite,
        )
        direct = None
        if args.direct_decoder:
            direct = prior_quality.stream_direct_decoder(
                run_dir,
                min(args.images, 4000),
                min(args.val_images, 256),
                steps=args.decoder_steps,
                judge=judge,
                device=device,
                progress=progress,
                overwrite=args.overwrite,
            )
    finally:
        progress.close()
    print(format_condition_use(f"{run_dir}, teacher features of {use['images']}", use))
    print(prior_quality.format_scores(f"oracle, {oracle['images']}", oracle["rows"]))
    if direct is not None:
        print(prior_quality.format_scores(f"direct decoder, {direct['images']}", {"direct decoder": direct["scores"]}))
    from mindhier.result_numbers import prior_numbers

    written = recorder.finish(lambda: prior_numbers(run_dir))
    if written is not None:
        print(f"result file: {written}")
    return 0


def _sampler_overrides(run_dir: Path, overrides: list[str]):
    """The run's sampler with the `--set sampler.KEY=VALUE` overrides (the only sections --evaluate reads)."""
    from mindhier.config import apply_overrides
    from mindhier.errors import ConfigError
    from mindhier.run_layout import load_run_config

    others = [o for o in overrides if not o.startswith("sampler.")]
    if others:
        raise ConfigError(
            f"--evaluate takes only --set sampler.KEY=VALUE overrides, got {', '.join(others)};"
            " drop the other --set options"
        )
    return apply_overrides(load_run_config(run_dir), overrides).sampler

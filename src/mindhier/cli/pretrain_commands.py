"""`mindhier pretrain tokenizer|generator`: train, export and verify the embedded world's priors.

mindhier pretrain tokenizer --out RUN [--images 40000] [--val-images 512]     train on the pretraining stream
mindhier pretrain generator --out RUN [--tokenizer prior|RUN] [--images …]    (after the tokenizer prior)
mindhier pretrain tokenizer --export RUN [--to DIR]                            write the prior + model card
mindhier pretrain generator --condition-use RUN [--val-images 512]            condition use per scale on
                                                                              held-out stream images
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

from mindhier.cli.options import add_config_options, add_runtime_options, positive_int, progress_bar


def add_pretrain_parser(commands) -> None:
    pretrain = commands.add_parser(
        "pretrain", help="the embedded world's priors: train, export, verify"
    ).add_subparsers(dest="pretrain_command", required=True)
    for kind, what in (
        ("tokenizer", "the multi-scale VQ tokenizer prior, on the pretraining stream"),
        ("generator", "the generator prior, conditioned on the teacher's features of the pretraining stream"),
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
                "--condition-use",
                type=Path,
                metavar="RUN",
                help="measure RUN's condition use per scale on --val-images held-out stream images "
                "(RUN/condition_use.json; --export puts it in the model card)",
            )
        p.add_argument("--images", type=positive_int, default=40_000, help="stream images to train on (default 40000)")
        p.add_argument("--val-images", type=positive_int, default=512, help="stream test-split images to validate on")
        if kind == "generator":
            p.add_argument("--tokenizer", default="prior", help="prior (default) or a tokenizer run: the token targets")
        p.add_argument("--priors", type=Path, help="priors folder to export into or verify (default: the package's)")
        p.add_argument(
            "--steps", type=positive_int, help="with --verify: how many of the recorded first steps to rerun"
        )
        p.add_argument("--resume", action="store_true", help="continue the pretraining run in --out")
        p.add_argument("--overwrite", action="store_true", help="with --condition-use: replace the run's record")
        p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
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
    if getattr(args, "condition_use", None) is not None:
        from mindhier.metrics.condition_use import format_condition_use
        from mindhier.train.pretrain import stream_condition_use

        progress = progress_bar(args)
        try:
            record = stream_condition_use(
                args.condition_use, args.val_images, args.device or "cpu", progress, args.overwrite
            )
        finally:
            progress.close()
        print(format_condition_use(f"{args.condition_use}, teacher features of {record['images']}", record))
        return 0
    if args.export:
        from mindhier.train.pretrain import export_prior

        print(f"wrote {export_prior(kind, args.export, args.priors)} and its model card")
        return 0
    from mindhier.train.pretrain import pretrain_generator, pretrain_tokenizer

    command = shlex.join(["mindhier", *sys.argv[1:]])
    options = {"command": command, "resume": args.resume}
    if kind == "tokenizer":
        run, rank = _train(args, pretrain_tokenizer, args.out, args.images, args.val_images, **options)
    else:
        run, rank = _train(args, pretrain_generator, args.out, args.images, args.val_images, args.tokenizer, **options)
    if rank == 0:
        s = run.summary
        print(f"pretrained the {kind} prior: {s['steps']} steps in {s['seconds']:.1f} s; best val {s['best_val']}")
        print(f"run: {run.run_dir}")
    return 0

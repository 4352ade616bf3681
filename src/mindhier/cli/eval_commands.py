"""Reconstruction and evaluation subcommands: reconstruct, ceiling, eval recons / compare / encoder, report."""

from __future__ import annotations

import argparse

from mindhier.cli.options import (
    apply_threads,
    default_cache_dir,
    inference_device,
    progress_bar,
    resolve_config,
    weights_option,
)

SAMPLING_SECTIONS = ("sampler.", "ddim.")  # what `reconstruct --set` may change: how to sample, not what was trained


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from mindhier import run_layout
    from mindhier.config import apply_overrides
    from mindhier.errors import ConfigError
    from mindhier.runs import load_generator
    from mindhier.sampling.reconstruct import Reconstructor, write_reconstructions

    trained = [o for o in args.overrides if not o.partition("=")[0].strip().startswith(SAMPLING_SECTIONS)]
    if trained:
        raise ConfigError(
            f"--set {trained[0]} changes a trained component, which its weights fix; reconstruct takes only "
            f"{'/'.join(s.rstrip('.') for s in SAMPLING_SECTIONS)} settings (train a new run to change the model)"
        )
    apply_threads(args)
    device = inference_device(args)
    run_cfg = apply_overrides(run_layout.load_run_config(args.generator), args.overrides)
    if run_layout.run_kind(args.generator) == "diffusion":
        if args.routing not in (None, "static_terminal"):
            raise ConfigError(
                f"{args.generator} is the diffusion baseline: its guidance is static_terminal;"
                " pass a scale-wise generator, or leave out --routing"
            )
        sampler = run_cfg.ddim
    else:
        load_generator(args.generator, routing=args.routing)  # refuses a routing it was not trained with
        sampler = run_cfg.sampler
    reconstructor = Reconstructor.from_runs(args.generator, args.encoder, args.tokenizer, sampler, device=device)
    reconstructor.decoder.compile = args.compile
    subject = args.subject or next(iter(reconstructor.encoder.shapes.voxels))
    progress = progress_bar(args)
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
            batch_size=args.batch_size,
        )
    finally:
        progress.close()
    print(f"wrote {out}")
    return 0


def cmd_ceiling(args: argparse.Namespace) -> int:
    from mindhier.sampling.reconstruct import write_tokenizer_ceiling

    out = write_tokenizer_ceiling(
        args.tokenizer,
        args.data,
        args.out,
        args.subject,
        args.split,
        args.overwrite,
        device=inference_device(args),
        batch_size=args.batch_size,
        tokenizer_cfg=resolve_config(args).tokenizer,
    )
    print(f"wrote {out}")
    return 0


def cmd_eval_recons(args: argparse.Namespace) -> int:
    from mindhier.fileio import refuse_existing
    from mindhier.metrics.extractors import build_extractors
    from mindhier.metrics.judge import get_judge
    from mindhier.metrics.recons_eval import METRICS_FILE, evaluate_reconstructions, format_metrics, read_recons_input

    refuse_existing(args.out / METRICS_FILE, args.overwrite, "metrics file")
    weights = weights_option(args.weights)
    apply_threads(args)
    device = inference_device(args)
    # the inputs first: a bad folder or tensor is refused before metric networks load or the judge trains
    inputs = read_recons_input(args.recons, args.data, args.subject, args.split, args.indices)
    progress = progress_bar(args)
    try:
        extractors = build_extractors(
            weights=weights,
            torch_hub_dir=args.torch_hub,
            device=device,
            batch_size=args.batch_size,
        )
        judge = None if args.no_judge else get_judge(args.cache or default_cache_dir(), progress=progress)
        record = evaluate_reconstructions(
            inputs,
            args.data,
            args.out,
            extractors=extractors,
            judge=judge,
            progress=progress,
        )
    finally:
        progress.close()
    print(format_metrics(record))
    print(f"wrote {args.out}")
    return 0


def cmd_eval_condition(args: argparse.Namespace) -> int:
    from mindhier.fileio import refuse_existing, write_json
    from mindhier.metrics.condition_use import format_condition_use
    from mindhier.sampling.condition_use_run import measure_condition_use

    if args.out is not None:
        refuse_existing(args.out, args.overwrite, "condition-use record")
    apply_threads(args)
    progress = progress_bar(args)
    try:
        record = measure_condition_use(
            args.generator,
            args.data,
            subject=args.subject,
            split=args.split,
            inputs=tuple(dict.fromkeys(args.inputs)),
            device=inference_device(args),
            batch_size=args.batch_size,
            seed=args.seed,
            progress=progress,
        )
    finally:
        progress.close()
    for name, arm in record["inputs"].items():
        print(format_condition_use(f"{name} inputs, split {record['split']}", arm))
    if args.out is not None:
        write_json(args.out, record)
        print(f"wrote {args.out}")
    return 0


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from mindhier.metrics.recons_eval import compare, format_comparison

    print(format_comparison(compare(args.metrics)))
    return 0


def cmd_eval_table(args: argparse.Namespace) -> int:
    from mindhier.fileio import atomic_path, refuse_existing, write_json
    from mindhier.metrics.subject_table import format_table, subject_table

    if args.out is not None:
        refuse_existing(args.out, args.overwrite, "table file")
    table = subject_table(args.metrics, reference=not args.no_reference)
    text = format_table(table)
    print(text)
    if args.out is not None:
        write_json(args.out.with_suffix(".json"), table)
        with atomic_path(args.out) as tmp:
            tmp.write_text(text + "\n")
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def cmd_eval_encoder(args: argparse.Namespace) -> int:
    from mindhier import run_layout
    from mindhier.fileio import refuse_existing, write_json
    from mindhier.metrics.encoder_eval import evaluate_encoder, format_encoder_eval

    out = (args.out or args.run) / run_layout.ENCODER_EVAL
    refuse_existing(out, args.overwrite, "encoder evaluation")
    apply_threads(args)
    progress = progress_bar(args)
    try:
        result = evaluate_encoder(
            args.run,
            args.data,
            subjects=tuple(args.subjects) if args.subjects else None,
            split=args.split,
            features=args.features,
            progress=progress,
            device=inference_device(args),
            batch_size=args.batch_size,
        )
    finally:
        progress.close()
    write_json(out, result)
    print(format_encoder_eval(result))
    print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mindhier.fileio import read_json
    from mindhier.report.html import build_report
    from mindhier.report.speed_quality import validate_decoders_record

    bench_records = [  # every file is checked before anything is written
        validate_decoders_record(read_json(path, "benchmark record"), path) for path in args.bench or ()
    ]
    index = build_report(args.runs, args.out, overwrite=args.overwrite, bench_records=bench_records)
    print(f"report: {index}")
    return 0


def cmd_eval_adaptation(args: argparse.Namespace) -> int:
    from mindhier.cli.options import resolve_config
    from mindhier.cli.record import ResultRecorder
    from mindhier.demo.adaptation import run_adaptation_study

    recorder = ResultRecorder(args, "adaptation")
    cfg = resolve_config(args)
    apply_threads(args)
    progress = progress_bar(args)
    try:
        result = run_adaptation_study(
            cfg,
            args.out,
            data=args.data,
            fresh=args.fresh,
            progress=progress,
            judge_cache=None if args.no_judge else (args.cache or default_cache_dir()),
            device=inference_device(args),
            batch_size=args.batch_size,
        )
    finally:
        progress.close()
    for line in result.lines:
        print(line)
    from mindhier.result_numbers import adaptation_numbers

    written = recorder.finish(lambda: adaptation_numbers(args.out))
    if written is not None:
        print(f"result file: {written}")
    return 0

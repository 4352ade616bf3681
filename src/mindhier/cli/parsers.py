"""The arguments of the command groups whose handlers live in `run_commands`, `train_commands`, `eval_commands`
and `bench_commands`: one builder per group, which `main.build_parser` composes (`plan`, `pretrain`, `export` and
`fetch` keep their builders beside their handlers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mindhier.cli.bench_commands import cmd_bench_decoders, cmd_bench_realtime, cmd_bench_sampler, cmd_bench_simulate
from mindhier.cli.eval_commands import (
    cmd_ceiling,
    cmd_eval_adaptation,
    cmd_eval_compare,
    cmd_eval_condition,
    cmd_eval_encoder,
    cmd_eval_recons,
    cmd_eval_table,
    cmd_reconstruct,
    cmd_report,
)
from mindhier.cli.options import (
    add_config_options,
    add_device_options,
    add_modes_option,
    add_runtime_options,
    add_sessions_option,
    add_simulator_flags,
    add_subjects_option,
    determinism_count,
    device_name,
    non_negative_int,
    positive_int,
)
from mindhier.cli.run_commands import cmd_config_show, cmd_data_info, cmd_demo, cmd_features, cmd_simulate
from mindhier.cli.train_commands import (
    cmd_adapt,
    cmd_tokenize,
    cmd_train_diffusion,
    cmd_train_encoder,
    cmd_train_generator,
    cmd_train_tokenizer,
)
from mindhier.sampling import PIPELINE_BATCH

TOKENIZER_HELP = (
    "tokenizer run folder, a VQ-VAE weights file in VAR's key layout (loaded into the config's tokenizer "
    "section; --preset nsd-paper is VAR's), or var-vqvae | switti-vqvae (fetched weights)"
)


def add_record_option(parser: argparse.ArgumentParser) -> None:
    """`--record FILE`: the measurement also as a small result JSON (the demo and the benchmarks)."""
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write this measurement as a small result JSON (command, commit, machine, wall time, the "
        "numbers) — e.g. results/demo.json",
    )


def add_bold_flags(parser: argparse.ArgumentParser) -> None:
    """`simulate --bold`: the scanner runs behind the betas, as a BIDS folder `bold/` in the dataset."""
    parser.add_argument(
        "--bold",
        nargs="?",
        const="test",
        default=None,
        metavar="TRIALS",
        help="also write the BOLD runs that would have produced the betas (BIDS, bold/): 'test' (default: every "
        "test-image presentation, in runs of --bold-run-trials) or 'session:N[,M]' (those sessions' 12 runs each)",
    )
    parser.add_argument("--bold-run-trials", type=positive_int, default=63, help="trials per run of --bold test")
    parser.add_argument("--tr", type=float, default=1.5, help="repetition time of the BOLD runs, seconds")
    parser.add_argument(
        "--bold-motion",
        choices=["none", "small", "large"],
        default="small",
        help="head motion: none, small (a slow wander of sd 0.3 mm and one brief 1 mm jump per run; default) or "
        "large (sd 0.8 mm and 3 jumps of 2 mm per run)",
    )


def add_run_commands(commands: argparse._SubParsersAction) -> None:
    """Make and inspect data, and run the whole pipeline: simulate, data info, demo, features."""
    p = commands.add_parser("simulate", help="simulate subjects viewing images; write a MindEye2-layout dataset")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    add_simulator_flags(p)
    p.add_argument("--image-store", choices=["png", "hdf5"], help="stimuli as PNG files or one HDF5 array")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new one is complete")
    add_bold_flags(p)
    add_config_options(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_simulate)

    data = commands.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("info", help="validate a dataset and list subjects, splits, ROIs, noise ceilings")
    p.add_argument("dir", type=Path, help="dataset folder (MindEye2 layout)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-verify-images", action="store_true", help="skip decoding every stimulus image")
    add_sessions_option(p)
    add_config_options(p)
    p.set_defaults(func=cmd_data_info)

    p = commands.add_parser("demo", help="the main job on the embedded default world")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default: runs/demo)")
    p.add_argument("--data", type=Path, help="use this dataset folder instead of simulating one")
    p.add_argument("--fresh", action="store_true", help="recompute every stage instead of reusing finished ones")
    p.add_argument("--cache", type=Path, help="cache for the scene judge (default: ~/.cache/mindhier)")
    p.add_argument("--no-judge", action="store_true", help="skip the scene judge")
    p.add_argument(
        "--with-diffusion", action="store_true", help="add the latent diffusion baseline (matched size and FLOPs)"
    )
    p.add_argument(
        "--from-scratch", action="store_true", help="train the tokenizer and generator from random weights (no priors)"
    )
    p.add_argument(
        "--split",
        choices=["test", "test_old"],
        help="the test split reconstructed and scored (demo.split; default test: MindEye2's new_test)",
    )
    add_sessions_option(p)
    add_device_options(
        p,
        PIPELINE_BATCH,
        f"brain inputs sampled together when reconstructing (default {PIPELINE_BATCH}; the same tokens as one at "
        "a time, pixels up to rounding)",
    )
    add_config_options(p)
    add_record_option(p)
    p.add_argument("--overwrite", action="store_true", help="with --record: replace an existing result file")
    add_runtime_options(p)
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("features", help="cache a teacher's feature hierarchy for a dataset's stimuli")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (MindEye2 layout)")
    p.add_argument("--teacher", help="efficientnet-lite0 | clip (default: the preset's)")
    p.add_argument("--layers", type=positive_int, nargs="+", help="1-based teacher layers, shallow to deep")
    p.add_argument("--out", type=Path, help="cache folder (default: DATA/features/<teacher>-<key>)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache made with another configuration")
    add_device_options(p, 64, "images per teacher forward (default 64)")
    add_config_options(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_features)


def add_bench_commands(commands: argparse._SubParsersAction) -> None:
    """Benchmarks, each writing a result file: bench simulate | decoders | sampler."""
    bench = commands.add_parser("bench", help="benchmarks (results written to files)").add_subparsers(
        dest="bench_command", required=True
    )
    p = bench.add_parser("simulate", help="time the simulator stage by stage")
    p.add_argument("--out", type=Path, required=True, help="result file (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    add_simulator_flags(p)
    add_config_options(p)
    add_record_option(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_bench_simulate)
    p = bench.add_parser("decoders", help="scale-wise sampler against the diffusion baseline: speed and quality")
    p.add_argument("--out", type=Path, required=True, help="result file (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    p.add_argument("--run", type=Path, help="demo run folder to train or reuse (default: runs/<preset>)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs per variant and batch (median reported)")
    p.add_argument(
        "--curve-steps",
        type=positive_int,
        nargs="+",
        default=[5, 10, 25, 50, 100],
        help="DDIM steps of the quality curve",
    )
    p.add_argument("--cache", type=Path, help="cache for the scene judge (default: ~/.cache/mindhier)")
    p.add_argument("--no-judge", action="store_true", help="skip the scene judge")
    add_modes_option(p)
    add_device_options(p)
    add_config_options(p)
    add_record_option(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_bench_decoders)

    p = bench.add_parser(
        "realtime", help="a simulated session through `realtime`: latency vs the TR, betas and decoding vs offline"
    )
    p.add_argument("--model", type=Path, required=True, help="generator run, or a `mindhier demo` output folder")
    p.add_argument("--data", type=Path, required=True, help="a dataset simulated with --bold (its bold/ runs)")
    p.add_argument("--offline", type=Path, required=True, help="`mindhier betas --bold DATA/bold` output")
    p.add_argument("--run", type=positive_int, default=1, help="which BOLD run to replay (default 1)")
    p.add_argument("--speeds", nargs="+", default=["1x", "max"], help="replay speeds (default: 1x max)")
    p.add_argument(
        "--windows",
        nargs="+",
        type=float,
        default=[14.0, 18.0],
        help="shorter response windows (s) also replayed at maximum speed, for the trade-off (default: 14 18)",
    )
    p.add_argument("--workdir", type=Path, help="where the replays write (default: a temporary folder)")
    p.add_argument("--out", type=Path, required=True, help="result file (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    add_record_option(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_bench_realtime)

    p = bench.add_parser("sampler", help="time scale-wise sampling against one teacher-forced forward")
    p.add_argument("--out", type=Path, required=True, help="result file (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    add_modes_option(p)
    add_device_options(p)
    add_config_options(p)
    add_record_option(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_bench_sampler)


def add_train_commands(commands: argparse._SubParsersAction) -> None:
    """Train a stage, adapt a shared encoder to a new subject, tokenize the stimuli."""
    train = commands.add_parser("train", help="train a stage").add_subparsers(dest="train_command", required=True)
    p = train.add_parser("encoder", help="Stage 1: the hierarchical fMRI encoder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (MindEye2 layout)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    add_subjects_option(p, "subjects to train on, e.g. 1 2 or 1..4 (default: all in the dataset)")
    add_sessions_option(p)
    p.add_argument("--features", type=Path, help="feature cache folder (default: built or reused under DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", type=device_name, help="cpu | cuda (default: cuda when available); torchrun sets ranks")
    add_config_options(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_train_encoder)

    p = train.add_parser("tokenizer", help="Stage 2a: the multi-scale residual VQ tokenizer (images only)")
    p.add_argument("--data", required=True, help="dataset folder (its train/val stimuli) or folder:PATH of images")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", type=device_name, help="cpu | cuda (default: cuda when available); torchrun sets ranks")
    add_config_options(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_train_tokenizer)

    for name, what, func in (
        ("generator", "Stage 2b: the scale-wise generator on a frozen encoder and tokenizer", cmd_train_generator),
        ("diffusion", "the latent diffusion baseline on the same frozen encoder and tokenizer", cmd_train_diffusion),
    ):
        p = train.add_parser(name, help=what)
        p.add_argument("--data", type=Path, required=True, help="dataset folder")
        p.add_argument("--encoder", type=Path, required=True, help="encoder run folder")
        p.add_argument("--tokenizer", type=Path, required=True, help=TOKENIZER_HELP)
        p.add_argument("--out", type=Path, required=True, help="run folder")
        add_subjects_option(p, "subjects, pooled (default: the encoder's first)", "--subject")
        add_sessions_option(p)
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        p.add_argument(
            "--device", type=device_name, help="cpu | cuda (default: cuda when available); torchrun sets ranks"
        )
        if name == "generator":
            p.add_argument(
                "--init",
                metavar="START",
                help="train_generator.init: switti=FILE|REPO (a Switti checkpoint, as the paper starts; a bare "
                "`switti`: yresearch/Switti from the Hugging Face cache), prior, a generator run or a weights file",
            )
        add_config_options(p)
        add_runtime_options(p)
        p.set_defaults(func=func)

    p = commands.add_parser("adapt", help="add a new subject to a shared model from little data (a new input layer)")
    p.add_argument("--run", type=Path, required=True, help="the shared model: an encoder run or a pipeline folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder holding the new subject (MindEye2 layout)")
    p.add_argument("--subject", type=positive_int, required=True, help="the new subject's id in --data")
    p.add_argument("--out", type=Path, required=True, help="run folder of the adapted encoder")
    add_sessions_option(p)
    p.add_argument("--features", type=Path, help="feature cache folder (default: built or reused under DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", type=device_name, help="cpu | cuda (default: cuda when available); torchrun sets ranks")
    add_config_options(p, default_preset=None)
    add_runtime_options(p)
    p.set_defaults(func=cmd_adapt)

    p = commands.add_parser("tokenize", help="cache every stimulus's multi-scale tokens under a trained tokenizer")
    p.add_argument("--run", "--tokenizer", type=Path, required=True, help=TOKENIZER_HELP)
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--out", type=Path, help="cache folder (default: DATA/tokens/tokenizer-<key>)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache made with another tokenizer")
    add_device_options(p, 128, "images per tokenizer forward (default 128)")
    add_config_options(p, default_preset="nsd-paper")
    add_runtime_options(p)
    p.set_defaults(func=cmd_tokenize)


def add_eval_commands(commands: argparse._SubParsersAction) -> None:
    """Reconstruct, the tokenizer ceiling, the HTML report, and eval recons | compare | table | encoder | adaptation."""
    p = commands.add_parser("reconstruct", help="reconstruct every test image from brain activity")
    p.add_argument("--generator", type=Path, required=True, help="generator (or diffusion baseline) run folder")
    p.add_argument("--encoder", type=Path, help="encoder run (default: the one the generator was trained with)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer run, VQ-VAE file or name (default: the generator's own)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--subject", type=positive_int, help="default: the encoder's first subject")
    p.add_argument("--split", default="test", choices=["test", "val", "test_old"])
    p.add_argument("--samples", type=positive_int, default=1, help="N candidates per image (default 1: single shot)")
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
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--strips", action="store_true", help="also write the coarse-to-fine strip of every image")
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the sampling steps with torch.compile (CUDA graphs on a GPU): the same tokens, faster after a "
        "first call that compiles (minutes on a CPU)",
    )
    p.add_argument("--shuffle-brain", action="store_true", help="control: permute brain inputs across images")
    p.add_argument(
        "--determinism", type=determinism_count, default=0, metavar="R", help="also reconstruct under R − 1 more seeds"
    )
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
    add_device_options(
        p, 1, "brain inputs sampled together (default 1; larger batches give the same tokens, pixels up to rounding)"
    )
    add_runtime_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = commands.add_parser("ceiling", help="the tokenizer's reconstructions of the true test images (a reference)")
    p.add_argument("--tokenizer", type=Path, required=True, help=TOKENIZER_HELP)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--subject", type=positive_int, default=1)
    p.add_argument("--split", default="test", choices=["test", "val", "test_old"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    add_device_options(p, 64)
    add_config_options(p, default_preset="nsd-paper")
    p.set_defaults(func=cmd_ceiling)

    p = commands.add_parser("report", help="a static HTML report of pipeline runs (opens from disk)")
    p.add_argument("runs", type=Path, nargs="+", help="pipeline run folders (as `mindhier demo` writes them)")
    p.add_argument("--out", type=Path, required=True, help="report folder (index.html + figures)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new report is complete")
    p.add_argument(
        "--bench",
        type=Path,
        action="append",
        metavar="FILE.json",
        help="a `mindhier bench decoders --out` result: adds its speed-quality table and plots (repeatable)",
    )
    p.set_defaults(func=cmd_report)

    evaluate = commands.add_parser("eval", help="evaluate a trained stage").add_subparsers(
        dest="eval_command", required=True
    )
    p = evaluate.add_parser("recons", help="score a folder of reconstructions with the field's metrics")
    p.add_argument(
        "--recons",
        type=Path,
        required=True,
        help="folder of image_XXXXXX.png + manifest.json, or a tensor file [N, 3, H, W] in [0, 1] (uint8 0..255: "
        "/ 255) with one row per split image in ascending stimulus index, e.g. MindEye2's *_all_recons.pt "
        "(needs --subject and --split)",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset folder (for the true images)")
    p.add_argument("--subject", type=positive_int, help="default: the manifest's (required with a tensor)")
    p.add_argument(
        "--split", choices=["test", "val", "test_old"], help="default: the manifest's (required with a tensor)"
    )
    p.add_argument(
        "--indices",
        type=Path,
        metavar="FILE",
        help="with a tensor: the stimulus index of each row (.npy or .json, as mindhier export writes it), "
        "checked against the split's order",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json and per_image.csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing metrics.json")
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
    add_device_options(p, 64, "images per metric-network forward (default 64)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_eval_recons)
    p = evaluate.add_parser("compare", help="paired comparison of several metrics.json on the same images")
    p.add_argument("metrics", type=Path, nargs="+", help="metrics.json files; the first is the reference")
    p.set_defaults(func=cmd_eval_compare)

    p = evaluate.add_parser("table", help="the field's table: each metric per subject and averaged over subjects")
    p.add_argument("metrics", type=Path, nargs="+", help="one metrics.json per subject (same split and protocol)")
    p.add_argument("--out", type=Path, help="also write the table (.md) and its data (.json beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table file")
    p.add_argument(
        "--no-reference", action="store_true", help="leave out the published rows of the same split (ref. rows)"
    )
    p.set_defaults(func=cmd_eval_table)

    p = evaluate.add_parser("encoder", help="retrieval, identification and alignment per level on held-out data")
    p.add_argument("--run", type=Path, required=True, help="encoder run folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    add_subjects_option(p, "subjects (default: the run's)", "--subject")
    p.add_argument("--split", default="test", choices=["test", "val", "test_old"])
    p.add_argument("--features", type=Path, help="feature cache folder (default: built or reused under DATA)")
    p.add_argument("--out", type=Path, help="folder for encoder_eval.json (default: the run folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing encoder_eval.json")
    add_device_options(p, 256, "brain inputs per encoder forward (default 256)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_eval_encoder)

    p = evaluate.add_parser(
        "condition",
        help="how much a generator uses its condition per scale: teacher-forced NLL and accuracy with the true, "
        "null and shuffled condition",
    )
    p.add_argument("--generator", type=Path, required=True, help="scale-wise generator run folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (images, voxels, feature cache)")
    p.add_argument("--subject", type=positive_int, help="default: the encoder's first subject")
    p.add_argument("--split", default="val", choices=["val", "test", "test_old"], help="default: val")
    p.add_argument(
        "--inputs",
        nargs="+",
        default=["brain", "teacher"],
        choices=["brain", "teacher"],
        help="conditions to measure: the encoder on the voxels, the teacher's features of the images (default both)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the shuffle and the bootstrap")
    p.add_argument("--out", type=Path, help="also write the record (JSON) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_device_options(p, 64, "images per teacher-forced forward (default 64)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_eval_condition)

    p = evaluate.add_parser(
        "adaptation", help="a new subject from 1, 2, 4 sessions and all: adapted from a shared model vs from scratch"
    )
    p.add_argument("--out", type=Path, default=Path("runs/adapt"), help="study folder (default: runs/adapt)")
    p.add_argument("--data", type=Path, help="use this dataset folder instead of simulating the preset's subjects")
    p.add_argument("--fresh", action="store_true", help="recompute every stage instead of reusing finished ones")
    p.add_argument("--cache", type=Path, help="cache for the scene judge (default: ~/.cache/mindhier)")
    p.add_argument("--no-judge", action="store_true", help="skip the scene judge")
    p.add_argument(
        "--record", type=Path, metavar="FILE", help="also write the headline figures as a result file (results/…json)"
    )
    p.add_argument("--overwrite", action="store_true", help="with --record: replace an existing result file")
    add_device_options(p, PIPELINE_BATCH, f"brain inputs sampled together (default {PIPELINE_BATCH})")
    add_config_options(p, default_preset="adapt")
    add_runtime_options(p)
    p.set_defaults(func=cmd_eval_adaptation)


def add_config_commands(commands: argparse._SubParsersAction) -> None:
    """config show."""
    config = commands.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    p = config.add_parser("show", help="print the resolved configuration")
    add_config_options(p)
    p.set_defaults(func=cmd_config_show)

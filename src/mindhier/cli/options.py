"""Options and runtime set-up shared by the subcommands: config options, threads, progress bars, torchrun."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (argparse prints the one-line error and exits 2)."""
    return _bounded_int(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number ≥ 0 (seeds, counts that may be zero)."""
    return _bounded_int(text, 0)


def _bounded_int(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def add_config_options(parser: argparse.ArgumentParser, default_preset: str = "demo") -> None:
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


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_device_options(parser: argparse.ArgumentParser, batch_default: int | None = None, batch_help: str = "") -> None:
    """`--device` (and `--batch-size` when the command batches) for commands that run networks."""
    parser.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available, else cpu)")
    if batch_default is not None:
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=batch_default,
            help=batch_help or f"items per batch (default {batch_default})",
        )


def inference_device(args: argparse.Namespace) -> str:
    """The device a non-training command runs on; a CUDA device that is not there is a user error."""
    import torch

    from mindhier.errors import ConfigError

    wanted = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {wanted} asked for, but torch sees no CUDA device; pass --device cpu")
    if getattr(args, "batch_size", 1) is not None and getattr(args, "batch_size", 1) < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    return wanted


def resolve_config(args: argparse.Namespace, extra: list[str] | None = None):
    from mindhier.config import resolve

    return resolve(args.preset, args.config, [*args.overrides, *(extra or [])])


def simulator_flags(args: argparse.Namespace) -> list[str]:
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


def add_simulator_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", type=positive_int, nargs="+", help="subject ids, e.g. --subjects 1 2")
    parser.add_argument("--stimuli", help="scenes | photos | folder:PATH")
    parser.add_argument("--n-train", type=positive_int, help="unique training images (each shown once)")
    parser.add_argument(
        "--n-test", type=positive_int, help="unique test images (each shown simulator.test_repeats times)"
    )
    parser.add_argument("--size", type=positive_int, help="stimulus side in pixels")
    parser.add_argument("--seed", type=non_negative_int, help="seed of stimuli, subjects and noise")


def progress_bar(args: argparse.Namespace):
    from mindhier.progress import TqdmProgress

    return TqdmProgress(enabled=not args.quiet)


def apply_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def distributed_setup(args: argparse.Namespace):
    """(device, rank, world_size); under torchrun (any process count), initialise the process group from its
    variables, so `torchrun --nproc_per_node 1` trains with the configured DDP/FSDP wrapping for real."""
    import os

    import torch

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    wanted = inference_device(args)
    if "TORCHELASTIC_RUN_ID" in os.environ or world_size > 1:  # under torchrun, even with one process
        backend = "nccl" if wanted.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
        device = f"cuda:{local_rank}" if wanted.startswith("cuda") else "cpu"
        if wanted.startswith("cuda"):
            torch.cuda.set_device(local_rank)
        return device, rank, world_size
    return wanted, 0, 1


def weights_option(pairs: list[str]) -> dict[str, str]:
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

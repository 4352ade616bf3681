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


def device_name(text: str) -> str:
    """An argparse type: cpu, cuda or cuda:N (whether it exists is checked where the device is used)."""
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}; pass one of those")
    return text


def thread_count(text: str) -> int:
    """An argparse type: torch CPU threads, 1 up to 4 × this machine's cores."""
    import os

    cores = os.cpu_count() or 1
    return _bounded_int(text, 1, 4 * cores, f"4 × the {cores} cores of this machine")


LARGEST_INT = 2**63 - 1  # torch's int64: a larger count or seed overflows where it is used
MAX_DETERMINISM = 64  # as demo.consistency_samples: each repeat reconstructs the whole split again


def determinism_count(text: str) -> int:
    """An argparse type: how many seeds reconstruct the split for the consistency measures, 0..64."""
    return _bounded_int(text, 0, MAX_DETERMINISM, "each repeat reconstructs the whole split again")


def _bounded_int(
    text: str, least: int, most: int = LARGEST_INT, why: str = "the largest whole number torch stores"
) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}; pass digits, e.g. 4") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}; pass {least} or more")
    if value > most:
        raise argparse.ArgumentTypeError(f"must be at most {most} ({why}), got {value}; pass {most} or less")
    return value


def bounded_int(least: int, most: int, why: str):
    """An argparse type factory: a whole number in [least, most] (`why`: the reason for the upper bound)."""
    return lambda text: _bounded_int(text, least, most, why)


def positive_float(most: float, why: str):
    """An argparse type factory: a finite number in (0, most] (`why`: the reason for the upper bound)."""

    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}; pass digits, e.g. 0.5") from None
        if not math.isfinite(value) or not 0 < value <= most:
            raise argparse.ArgumentTypeError(f"must be in (0, {most:g}] ({why}), got {text}; pass a value in range")
        return value

    return parse


def id_range(text: str) -> list[int]:
    """An argparse type: a subject id `3` or a range `1..8` (both ends included)."""
    first, sep, last = text.partition("..")
    low = positive_int(first)
    if not sep:
        return [low]
    high = positive_int(last)
    if high < low:
        raise argparse.ArgumentTypeError(f"a range runs upwards, got {text!r}; write it low..high, e.g. 1..8")
    return list(range(low, high + 1))


class IdList(argparse.Action):
    """`--subjects 1 2 5..8` → [1, 2, 5, 6, 7, 8] (with `type=id_range`, `nargs="+"`)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        ids = [i for chunk in values for i in chunk]
        if len(set(ids)) != len(ids):
            parser.error(f"{option_string} names a subject twice: {' '.join(map(str, ids))}; name each once")
        setattr(namespace, self.dest, ids)


def add_subjects_option(parser: argparse.ArgumentParser, what: str, *aliases: str) -> None:
    parser.add_argument("--subjects", *aliases, type=id_range, nargs="+", action=IdList, help=what)


def session_list(text: str) -> tuple[int, ...]:
    """An argparse type for `--sessions`: `N` (the first N sessions), `1,3,5` (those) or `2..4` (a range)."""
    if "," not in text and ".." not in text:
        return tuple(range(1, positive_int(text) + 1))
    sessions = [s for part in text.split(",") if part.strip() for s in id_range(part.strip())]
    if not sessions or len(set(sessions)) != len(sessions):
        raise argparse.ArgumentTypeError(f"expected distinct sessions, got {text!r}; write e.g. 1,3,5 or 2..4")
    return tuple(sessions)


def add_sessions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sessions",
        type=session_list,
        metavar="N|LIST",
        help="train on the first N scan sessions of each subject (NSD: 750 trials each), or a list 1,3,5; "
        "the test split never changes (default: all)",
    )


def add_config_options(parser: argparse.ArgumentParser, default_preset: str | None = "demo") -> None:
    from mindhier.config import PRESETS

    group = parser.add_argument_group("configuration")
    where = f"(default {default_preset})" if default_preset else "(default: the shared run's own config)"
    group.add_argument(
        "--preset", default=default_preset, choices=sorted(PRESETS), help=f"named preset to start from {where}"
    )
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
    parser.add_argument("--threads", type=thread_count, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_device_options(parser: argparse.ArgumentParser, batch_default: int | None = None, batch_help: str = "") -> None:
    """`--device` (and `--batch-size` when the command batches) for commands that run networks."""
    parser.add_argument(
        "--device", type=device_name, help="cpu | cuda | cuda:N (default: cuda when available, else cpu)"
    )
    if batch_default is not None:
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=batch_default,
            help=batch_help or f"items per batch (default {batch_default})",
        )


def add_modes_option(parser: argparse.ArgumentParser) -> None:
    """`--modes` of the speed benchmarks: eager and/or compiled (`torch.compile`) decoders."""
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["eager", "compiled"],
        default=["eager", "compiled"],
        help="execution modes to time (default both; compiling takes minutes on a CPU, then is cached on disk)",
    )


def inference_device(args: argparse.Namespace) -> str:
    """The device a non-training command runs on; a CUDA device that is not there is a user error."""
    import torch

    from mindhier.errors import ConfigError

    wanted = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {wanted} asked for, but torch sees no CUDA device; pass --device cpu")
    if getattr(args, "batch_size", 1) is not None and getattr(args, "batch_size", 1) < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}; pass 1 or more")
    return wanted


def resolve_config(args: argparse.Namespace, extra: list[str] | None = None):
    from mindhier.config import resolve

    sessions = getattr(args, "sessions", None)
    flags = [f"data.sessions={','.join(map(str, sessions))}"] if sessions else []
    return resolve(args.preset, args.config, [*args.overrides, *flags, *(extra or [])])


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
    add_subjects_option(parser, "subject ids, e.g. --subjects 1 2 or --subjects 1..8")
    parser.add_argument("--stimuli", help="scenes | photos | folder:PATH")
    parser.add_argument("--n-train", type=positive_int, help="unique training images (each shown once)")
    parser.add_argument(
        "--n-test", type=positive_int, help="unique test images (each shown simulator.test_repeats times)"
    )
    parser.add_argument("--size", type=positive_int, help="stimulus side in pixels")
    parser.add_argument("--seed", type=non_negative_int, help="seed of stimuli, subjects and noise")


PROGRESS_VARIABLE = "MINDHIER_PROGRESS"  # "1": draw progress bars even when stderr is not a terminal (a log file)


def progress_bar(args: argparse.Namespace):
    """Progress bars on stderr, only when stderr is a terminal (or MINDHIER_PROGRESS=1), never with --quiet: a
    redirected or captured stderr holds nothing but warnings and the one-line error."""
    import os
    import sys

    from mindhier.progress import TqdmProgress

    wanted = sys.stderr.isatty() or os.environ.get(PROGRESS_VARIABLE) == "1"
    return TqdmProgress(enabled=wanted and not getattr(args, "quiet", False))


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
            raise ConfigError(
                f"--weights expects name=PATH (e.g. alexnet=/models/alexnet.pth), got {item!r};"
                " write --weights name=PATH"
            )
        weights[name] = path
    return weights


def default_cache_dir() -> Path:
    """The user's cache for trained helper networks (the judge); the CLI's choice, not the library's."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mindhier"

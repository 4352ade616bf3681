"""The `mindhier` argument parser and entry point."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from mindhier._version import __version__
from mindhier.cli.disk_errors import os_error_line, output_folders
from mindhier.cli.export_commands import add_export_parser
from mindhier.cli.fetch_commands import add_fetch_parser
from mindhier.cli.one_line_parser import EXIT_USER_ERROR, OneLineArgumentParser
from mindhier.cli.output_overlap import refuse_overlapping_output
from mindhier.cli.parsers import (
    add_bench_commands,
    add_config_commands,
    add_eval_commands,
    add_run_commands,
    add_train_commands,
)
from mindhier.cli.plan_commands import add_plan_parser
from mindhier.cli.pretrain_commands import add_pretrain_parser
from mindhier.cli.realtime_commands import add_realtime_parsers
from mindhier.errors import ConfigError, DataError, MindhierError, WeightsError
from mindhier.output_lock import hold_output


def build_parser() -> argparse.ArgumentParser:
    """`mindhier`'s parser: one builder per command group (`cli/parsers.py`, and beside the handlers of plan,
    pretrain, export and fetch)."""
    parser = OneLineArgumentParser(
        prog="mindhier",
        description="fMRI-to-image reconstruction with hierarchy-to-hierarchy autoregression (MindHier).",
    )
    parser.add_argument("--version", action="version", version=f"mindhier {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_commands(commands)
    add_bench_commands(commands)
    add_train_commands(commands)
    add_eval_commands(commands)
    add_plan_parser(commands)
    add_pretrain_parser(commands)
    add_realtime_parsers(commands)
    add_export_parser(commands)
    add_fetch_parser(commands)
    add_config_commands(commands)
    return parser


_GENERAL_FIXES = {  # for messages composed at run time; every literal message names its own fix
    ConfigError: "check the options and config values (mindhier config show prints them)",
    DataError: "check the dataset (mindhier data info DIR says what is wrong)",
    WeightsError: "check the weights file, or train or fetch it again",
}


def error_line(err: MindhierError) -> str:
    """The error as one line `<problem>; <fix>`."""
    text = " ".join(str(err).split())
    if "; " in text:
        return text
    fix = next((fix for kind, fix in _GENERAL_FIXES.items() if isinstance(err, kind)), "see mindhier --help")
    return f"{text}; {fix}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: recorded by `--record` result files
    try:
        refuse_overlapping_output(args)
        with contextlib.ExitStack() as held:
            for folder in output_folders(args):
                held.enter_context(hold_output(folder))
            return args.func(args)
    except MindhierError as err:
        print(f"mindhier: error: {error_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:
        print(f"mindhier: error: {os_error_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("mindhier: interrupted", file=sys.stderr)
        return 130

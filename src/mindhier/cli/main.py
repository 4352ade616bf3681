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
from mindhier.cli.parsers import (
    add_bench_commands,
    add_config_commands,
    add_eval_commands,
    add_run_commands,
    add_train_commands,
)
from mindhier.cli.plan_commands import add_plan_parser
from mindhier.cli.pretrain_commands import add_pretrain_parser
from mindhier.errors import MindhierError
from mindhier.output_lock import hold_output

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """`mindhier`'s parser: one builder per command group (`cli/parsers.py`, and beside the handlers of plan,
    pretrain, export and fetch)."""
    parser = argparse.ArgumentParser(
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
    add_export_parser(commands)
    add_fetch_parser(commands)
    add_config_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: recorded by `--record` result files
    try:
        with contextlib.ExitStack() as held:
            for folder in output_folders(args):
                held.enter_context(hold_output(folder))
            return args.func(args)
    except MindhierError as err:
        print(f"mindhier: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:
        print(f"mindhier: error: {os_error_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("mindhier: interrupted", file=sys.stderr)
        return 130

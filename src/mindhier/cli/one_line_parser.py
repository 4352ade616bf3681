"""Argument errors as the one line every other error is: `mindhier: error: <problem>; <fix>`, exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USER_ERROR = 2


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse without the usage block on errors (it stays behind `--help`): one line that names the problem
    and the fix — the message's own fix after `; ` when it has one, else where the options are listed."""

    def error(self, message: str) -> NoReturn:
        problem = " ".join(message.split())  # argparse's messages may wrap
        fix = "" if "; " in problem else f"; see '{self.prog} --help' for the options"
        print(f"mindhier: error: {problem}{fix}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)

"""The `mindhier` command: thin subcommands that build a config and call one library function.

Every user error surfaces as one line `mindhier: error: ...` on stderr and exit status 2; no traceback.
Parser and entry point in `main.py`; the subcommands grouped by concept (`run_commands`, `train_commands`,
`eval_commands`, `bench_commands`); shared options in `options.py`.
"""

from mindhier.cli.main import EXIT_USER_ERROR, build_parser, main

__all__ = ["EXIT_USER_ERROR", "build_parser", "main"]

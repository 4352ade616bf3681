"""An output never overlaps an input: `--out` that is or contains a folder the command reads is refused before
anything is written, and so is an existing `--out` inside an input when `--overwrite` would replace it (part of the
input). A new output inside an input is allowed: nothing of the input is touched (`report RUN --out RUN/report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mindhier.errors import ConfigError

INPUT_OPTIONS = ("data", "dir", "run", "encoder", "generator", "tokenizer", "recons", "runs", "metrics")
CACHE_COMMANDS = ("features", "tokenize")  # their --out is a cache that lives inside --data by design


def _flag(name: str) -> str:
    return name if name in ("dir", "runs", "metrics") else f"--{name}"


def input_paths(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(flag, resolved path) of every existing input the command was given."""
    found = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, Path)) and Path(item).exists():
                found.append((_flag(name), Path(item).resolve()))
    return found


def refuse_overlapping_output(args: argparse.Namespace) -> None:
    out = getattr(args, "out", None)
    if out is None:
        return
    target = Path(out).resolve()
    replaces = bool(getattr(args, "overwrite", False)) and target.exists()
    for flag, source in input_paths(args):
        inside = target.is_relative_to(source) and target != source and replaces
        if inside and flag == "--data" and getattr(args, "command", "") in CACHE_COMMANDS:
            continue
        if target == source or source.is_relative_to(target) or inside:
            relation = "is" if target == source else "contains" if source.is_relative_to(target) else "lies inside"
            raise ConfigError(
                f"--out {out} {relation} the input {flag} {source}; choose an output folder outside every input"
            )

"""What produced an output: package version, git revision, library versions, machine.

Written beside every output (with the resolved config), so a number can be traced to the code
that made it. Nothing here depends on the time of day, so identical runs write identical files.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

from mindhier._version import __version__

SOURCE_DIR = Path(__file__).resolve().parent  # the package's source tree (a git checkout when installed editable)


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The git commit of the package's source tree, with `-dirty` if it has local changes.

    Returns "unknown" when the package is not installed from a git checkout.
    """
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=SOURCE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=SOURCE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if status else rev


def provenance() -> dict[str, Any]:
    """Version information recorded beside every output."""
    import numpy
    import torch

    return {
        "mindhier_version": __version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on (recorded in benchmark files, not in configs)."""
    import os

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info

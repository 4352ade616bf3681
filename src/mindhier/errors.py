"""The package's error types.

Every error a user can cause (a bad flag, a missing file, a corrupt dataset, a checkpoint from another
config) is raised as a `MindhierError` whose message is one line that names the problem and the fix.
The CLI prints that line and exits non-zero, with no traceback.
"""

from __future__ import annotations


class MindhierError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(MindhierError):
    """An invalid configuration: unknown key, wrong type, impossible value."""


class DataError(MindhierError):
    """A dataset that is missing, malformed or inconsistent."""


class WeightsError(MindhierError):
    """Pretrained weights that are absent or do not fit the network."""


class NonFiniteTrainingError(MindhierError):
    """Training produced a NaN or infinite loss or weights: the run stops instead of saving them."""

"""Progress reporting without printing.

Library code never prints: a long loop takes an optional `progress` callback and calls it as
`progress(task, done, total)`. The CLI passes `TqdmProgress()`, which turns the calls into one
progress bar per task; tests pass nothing, or a list-collecting callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[str, int, int], None]


def report(progress: ProgressFn | None, task: str, done: int, total: int) -> None:
    """Call `progress` if there is one."""
    if progress is not None:
        progress(task, done, total)


class TqdmProgress:
    """A `ProgressFn` that draws one tqdm bar per task name (used by the CLI only)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self._bars.get(task)
        if bar is None:
            bar = tqdm(total=total, desc=task, unit="it", leave=True, dynamic_ncols=True)
            self._bars[task] = bar
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self._bars[task]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

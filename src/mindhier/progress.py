"""Progress reporting without printing.

Library code never prints: a long loop takes an optional `progress` callback and calls it as
`progress(task, done, total)`, or `progress(task, done, total, info)` with a small dict of live numbers
(a loss, a learning rate). The CLI passes `TqdmProgress()`, which turns the calls into one progress
bar per task; tests pass nothing, or a list-collecting callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressFn = Callable[..., None]  # (task: str, done: int, total: int[, info: dict]) -> None


def report(progress: ProgressFn | None, task: str, done: int, total: int, info: dict[str, Any] | None = None) -> None:
    """Call `progress` if there is one (with `info` only when given)."""
    if progress is None:
        return
    if info is None:
        progress(task, done, total)
    else:
        progress(task, done, total, info)


class TqdmProgress:
    """A `ProgressFn` that draws one tqdm bar per task name (used by the CLI only)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, task: str, done: int, total: int, info: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self._bars.get(task)
        if bar is None:
            bar = tqdm(total=total, desc=task, unit="it", leave=True, dynamic_ncols=True)
            self._bars[task] = bar
        bar.total = total
        if info:
            bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in info.items()}, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self._bars[task]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

"""Best-on-validation weights: which step's weights later stages use.

A score counts as a new best only when it is a finite number better than every earlier one (a NaN or an
infinite score never is), in the direction the stage measures (`higher` for retrieval, `lower` for
losses). When validation never produces a best — no val split, or only NaN scores — the final weights are
the ones kept, so a finished run always has its `<kind>.safetensors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class BestKeeper:
    higher_is_better: bool
    best: float | None = None
    best_step: int = 0

    def offer(self, score: float, step: int) -> bool:
        """Record `score` at `step`; True when it is the new best (the caller then saves the weights)."""
        if not math.isfinite(score):
            return False
        if self.best is None or (score > self.best if self.higher_is_better else score < self.best):
            self.best, self.best_step = float(score), step
            return True
        return False

    @property
    def has_best(self) -> bool:
        return self.best is not None

    def state(self) -> dict:
        return {"best": self.best, "best_step": self.best_step}

    def restore(self, state: dict) -> None:
        self.best, self.best_step = state["best"], int(state["best_step"])

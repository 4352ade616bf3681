"""When trials happen and volumes are acquired in a run: NSD-like timing (3 s on, 1 s off) at a chosen TR.

A run opens with `lead_in_s` of rest, shows its trials back to back (`on_s` + `off_s` each) and closes with
`tail_s` of rest, long enough for the last response to return to baseline. Frame f is acquired at f · TR
(the acquisition start of the volume; slice timing is not modelled).

Shape letters (docs/glossary.md): F frames (volumes), K trials of a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mindhier.errors import ConfigError

# a trial's beta is estimated once this much of the run after its onset is in. The response to a 3 s event peaks
# ≈ 5–6 s after onset, but its LSS beta needs the responses of the next trials to be seen too: on the demo's first
# run, a 14 s window gave real-time retrieval top-1 0.381, 18 s 0.429, 22 s 0.508, against 0.556 from the whole run
# (bench realtime measures the trade-off); 22 s is the default, `--window` chooses
RESPONSE_WINDOW_S = 22.0


@dataclass(frozen=True)
class RunTiming:
    tr: float = 1.5  # seconds per volume (NSD at 7 T: 1.6; 3 T real-time sessions: ≈ 1.5)
    on_s: float = 3.0  # stimulus duration (NSD: 3 s)
    off_s: float = 1.0  # blank between stimuli (NSD: 1 s)
    lead_in_s: float = 6.0  # rest before the first trial
    tail_s: float = 16.0  # rest after the last trial

    def __post_init__(self) -> None:
        if not 0.2 <= self.tr <= 5.0:
            raise ConfigError(f"the repetition time must lie in [0.2, 5] s, got {self.tr}; pass --tr 1.5 or similar")
        if self.on_s <= 0 or self.off_s < 0 or self.lead_in_s < 0 or self.tail_s < 0:
            raise ConfigError("trial timing needs on_s > 0 and off_s, lead_in_s, tail_s >= 0; fix the timing")

    @property
    def trial_s(self) -> float:
        return self.on_s + self.off_s

    def onsets_K(self, n_trials: int) -> np.ndarray:
        return self.lead_in_s + self.trial_s * np.arange(n_trials, dtype=np.float64)

    def n_frames(self, n_trials: int) -> int:
        return math.ceil((self.lead_in_s + self.trial_s * n_trials + self.tail_s) / self.tr)

    def frame_times_F(self, n_frames: int) -> np.ndarray:
        return self.tr * np.arange(n_frames, dtype=np.float64)


def last_needed_frame(onset_s: float, tr: float, window_s: float = RESPONSE_WINDOW_S) -> int:
    """The index of the last volume a trial's beta waits for: the one acquired at or after onset + window."""
    return math.ceil((onset_s + window_s) / tr - 1e-9)


def check_window(window_s: float) -> float:
    if not 4.0 <= window_s <= 60.0:
        raise ConfigError(f"the response window must lie in [4, 60] s after onset, got {window_s}; e.g. --window 22")
    return float(window_s)

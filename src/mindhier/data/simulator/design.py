"""The NSD-like experimental design: which image is shown at which trial, in which session and run.

Training images are shown once and test images `repeats` times (NSD: 3), all in one random order that
is cut into scan sessions of `session_trials` trials (NSD: 750) with 12 runs each, so repetitions of
a test image fall in different sessions, as in NSD. Trial t is row t of the betas file.

Shape letters (docs/glossary.md): T trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mindhier.data import layout

RUNS_PER_SESSION = 12


@dataclass(frozen=True)
class TrialDesign:
    image_T: np.ndarray  # int64 stimulus index shown at each trial
    session_T: np.ndarray  # int64, 1-based
    run_T: np.ndarray  # int64, 1-based within the session
    trial_in_run_T: np.ndarray  # int64, 1-based within the run
    is_test_T: np.ndarray  # bool: a trial of a test (shared) image
    is_old_T: np.ndarray  # bool: the image was shown on an earlier trial

    @property
    def n_trials(self) -> int:
        return int(self.image_T.shape[0])

    @property
    def n_sessions(self) -> int:
        return int(self.session_T.max())

    def behav(self, subject: int) -> np.ndarray:
        """MindEye2's behav rows [T, 17] (int64, -1 where NSD would have NaN)."""
        behav = np.full((self.n_trials, layout.BEHAV_WIDTH), -1, dtype=np.int64)
        behav[:, layout.BEHAV_IMAGE] = self.image_T
        behav[:, 1] = subject
        behav[:, layout.BEHAV_SESSION] = self.session_T
        behav[:, layout.BEHAV_RUN] = self.run_T
        behav[:, layout.BEHAV_TRIAL] = self.trial_in_run_T
        behav[:, layout.BEHAV_ROW] = np.arange(self.n_trials)
        behav[:, layout.BEHAV_ISOLD] = self.is_old_T
        behav[:, layout.BEHAV_SHARED] = self.is_test_T
        return behav


def make_design(
    train_images: np.ndarray,
    test_images: np.ndarray,
    repeats: int,
    session_trials: int,
    rng: np.random.Generator,
) -> TrialDesign:
    shown = np.concatenate([np.asarray(train_images), np.repeat(np.asarray(test_images), repeats)])
    is_test = np.concatenate([np.zeros(len(train_images), bool), np.ones(len(test_images) * repeats, bool)])
    order = rng.permutation(len(shown))
    image_T, is_test_T = shown[order].astype(np.int64), is_test[order]

    trial = np.arange(len(image_T))
    session_T = trial // session_trials + 1
    within_session = trial % session_trials
    run_T = within_session * RUNS_PER_SESSION // session_trials + 1
    run_start = np.ceil((run_T - 1) * session_trials / RUNS_PER_SESSION).astype(np.int64)
    trial_in_run_T = within_session - run_start + 1

    _, first = np.unique(image_T, return_index=True)
    is_old_T = np.ones(len(image_T), bool)
    is_old_T[first] = False
    return TrialDesign(image_T, session_T, run_T, trial_in_run_T, is_test_T, is_old_T)

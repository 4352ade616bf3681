"""A trial's beta from the data so far equals the offline fit on the same frames, and its z-score uses only the
statistics of earlier trials; the event log survives a torn last line."""

from __future__ import annotations

import json

import numpy as np

from mindhier.data.bold.lss import drift_basis_FP, lss_betas_KV, percent_signal_change, trial_regressors_FK
from mindhier.data.bold.timing import RunTiming, last_needed_frame
from mindhier.realtime.event_log import EVENTS_FILE, EventLog
from mindhier.realtime.online_betas import PRIOR_TRIALS, OnlineRun, TrialStatistics


def test_the_online_beta_is_the_offline_fit_on_the_frames_so_far():
    timing = RunTiming(tr=1.5)
    rng = np.random.default_rng(0)
    onsets = timing.onsets_K(12)
    n_frames = timing.n_frames(12)
    times = timing.frame_times_F(n_frames)
    X = trial_regressors_FK(times, onsets, np.full(12, 3.0))
    Y = 500 + X @ rng.normal(size=(12, 9)) + rng.normal(0, 0.2, (n_frames, 9))
    online = OnlineRun(9, onsets, np.full(12, 3.0))
    k = 4
    upto = last_needed_frame(onsets[k], timing.tr, 14.0)
    for f in range(upto + 1):
        online.add(times[f], Y[f])
    started = np.flatnonzero(onsets <= times[upto])
    assert len(started) < 12  # later trials have not started: they are not in the model
    seen = slice(0, upto + 1)
    expected = lss_betas_KV(Y[seen], X[seen][:, started], drift_basis_FP(times[seen]), trials=[k])
    expected = percent_signal_change(expected, Y[seen].mean(axis=0))[0]
    np.testing.assert_allclose(online.beta(k), expected, rtol=0, atol=2e-5)  # Y is kept in float32 online


def test_z_scores_use_earlier_trials_and_become_the_plain_running_ones():
    rng = np.random.default_rng(1)
    betas = 3.0 + 2.0 * rng.normal(size=(400, 5))
    stats = TrialStatistics(5)
    first = stats.z_score(betas[0])
    assert np.all(np.isfinite(first))  # the first trial: prior mean 0 and its own pooled scale
    z = []
    for beta in betas:
        z.append(stats.z_score(beta))
        stats.add(beta)
    k = 399
    earlier = betas[:k]
    n = k
    mean = earlier.sum(axis=0) / (n + PRIOR_TRIALS)
    var = ((n - 1) * earlier.var(axis=0, ddof=1) + PRIOR_TRIALS * earlier.var(axis=0, ddof=1).mean()) / (
        n - 1 + PRIOR_TRIALS
    )
    np.testing.assert_allclose(z[k], (betas[k] - mean) / np.sqrt(var), rtol=1e-6)
    plain = (betas[k] - earlier.mean(axis=0)) / earlier.std(axis=0, ddof=1)
    assert np.abs(z[k] - plain).max() < 0.1


def test_the_event_log_cuts_a_torn_line_and_knows_the_done_trials(tmp_path):
    log = EventLog(tmp_path)
    log.append({"type": "start"})
    log.append({"type": "trial", "trial": 1, "beta": "b"})
    log.close()
    with open(tmp_path / EVENTS_FILE, "a") as f:
        f.write('{"type": "trial", "trial": 2, "be')  # the process died here
    again = EventLog(tmp_path)
    assert list(again.done_trials()) == [1]
    again.append({"type": "trial", "trial": 2, "beta": "c"})
    again.close()
    lines = (tmp_path / EVENTS_FILE).read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["start", "trial", "trial"]

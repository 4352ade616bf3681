"""Named points where a crash test kills the process, to prove that a crash anywhere leaves a usable state.

`MINDHIER_KILL_AT=NAME#N` makes the N-th arrival at the point NAME (default the first) kill this process
with SIGKILL, exactly as an out-of-memory killer or a pre-empted job would: no `finally`, no flush. Unset
(always, outside tests) a point costs one dictionary lookup. The points are listed in `POINTS`, so a test
can cover every one and a typo in a test is an error.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "MINDHIER_KILL_AT"
POINTS = (
    "atomic-write.before-rename",  # a file written in full under its temporary name, not yet renamed
    "resume-point.before-manifest",  # every tensor and state file of a resume point written, no manifest yet
    "resume-point.before-rename",  # a complete resume point still under its partial name
    "resume-point.after-rename",  # the new resume point visible, the older ones not yet pruned
    "log.after-write",  # a log record appended, the step's resume point not yet written
    "best-weights.after-write",  # new best-on-val weights written, the resume point not yet
    "realtime.after-image",  # a real-time trial's beta and image written, its event-log line not yet
)
_arrivals: Counter[str] = Counter()


def reach(name: str) -> None:
    """Kill this process here if the test asked for it (`MINDHIER_KILL_AT`)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition("#")
    if target not in POINTS:
        raise ValueError(f"{ENV}={spec!r} names no fault point; known: {', '.join(POINTS)}")
    if target != name:
        return
    _arrivals[name] += 1
    if _arrivals[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

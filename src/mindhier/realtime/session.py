"""A real-time session: volumes in, one reconstruction per trial out, as soon as the trial's response is in.

Per volume (`Arrival`): motion correction to the session's reference volume (its first), the visual voxels, the motion
estimate and framewise displacement logged. Per trial, once the volume `window_s` after its onset (default
`timing.RESPONSE_WINDOW_S`) has been processed (`timing.last_needed_frame`): its LSS beta from the data so far, z-scored
with the earlier trials' statistics (`online_betas`), the encoder and a single-shot reconstruction, retrieval over the
candidate set, the image, beta and timings written (atomically) and then the trial's line appended to `events.jsonl`.

Latency is measured from the arrival of the trial's last needed volume (the moment the file was complete and
read) to the image's rename on disk, and split into motion correction (of that volume), beta, decoding and
writing.

A restarted session reads its event log (`event_log`): trials already logged are not decoded again — their
raw betas are read back into the running statistics — and the volumes are processed again from the source
(a watched folder keeps its files; a replay starts over), so every later trial sees the same data it would have
seen without the crash. Registration is seeded, so the volumes give the same numbers the second time.

Shape letters (docs/glossary.md): V voxels, K trials, H/W pixels.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mindhier import fault_points
from mindhier.data.bold import bids
from mindhier.data.bold.head_motion import framewise_displacement_F
from mindhier.data.bold.motion_correction import MotionCorrector
from mindhier.data.bold.timing import RESPONSE_WINDOW_S, last_needed_frame
from mindhier.data.bold.voxel_selection import VoxelSelection
from mindhier.errors import DataError
from mindhier.fileio import atomic_path, remove_stale_temporaries
from mindhier.realtime.event_log import EventLog
from mindhier.realtime.online_betas import OnlineRun, TrialStatistics
from mindhier.realtime.trial_decoder import TrialDecoder
from mindhier.realtime.volume_source import Arrival


@dataclass
class SessionPlan:
    """What the session knows before the first volume."""

    name: str  # the run's name, e.g. sub-01_task-test_run-01
    subject: int
    tr: float
    n_frames: int
    events: bids.Events
    selection: VoxelSelection
    voxel_mm: tuple[float, float, float]
    stimulus_images: Any = None  # an ImageStore of the dataset the events index (quality and the page), or None
    candidates: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    window_s: float = RESPONSE_WINDOW_S  # a trial is decoded once the volume this long after its onset is in

    def identity(self) -> dict[str, Any]:
        return {
            "run": self.name,
            "subject": self.subject,
            "tr": self.tr,
            "n_frames": self.n_frames,
            "window_s": self.window_s,
            "n_trials": len(self.events),
            "n_voxels": self.selection.n_voxels,
            "stimuli": [int(s) for s in self.events.stimulus_K],
        }


def trial_file(k: int, suffix: str) -> str:
    return f"trials/trial_{k + 1:04d}{suffix}"


def stimulus_file(index: int) -> str:
    return f"stimuli/stimulus_{index:06d}.png"


def write_png(path: Path, image_HW3: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image_HW3).save(tmp, format="PNG")


def _write_beta(path: Path, raw_V: np.ndarray, z_V: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, raw=raw_V.astype(np.float32), z=z_V.astype(np.float32))


class RealtimeSession:
    def __init__(
        self, out: Path, plan: SessionPlan, decoder: TrialDecoder, registration_threads: int | None = None
    ) -> None:
        self.out, self.plan, self.decoder = out, plan, decoder
        if decoder.n_voxels != plan.selection.n_voxels:
            raise DataError(
                f"the voxel mask selects {plan.selection.n_voxels} voxels, the model's encoder takes "
                f"{decoder.n_voxels} for subject {decoder.subject}; use the mask the model was trained on"
            )
        self.registration_threads = registration_threads
        (out / "trials").mkdir(parents=True, exist_ok=True)
        for folder in ("trials", "stimuli", "candidates"):  # a write cut short by a crash left its temporary file
            if (out / folder).is_dir():
                remove_stale_temporaries(out / folder)
        self.log = EventLog(out)
        self._check_resume()
        self.done = self.log.done_trials()
        self.stats = TrialStatistics(plan.selection.n_voxels)
        for k in sorted(self.done):
            self.stats.add(np.load(out / self.done[k]["beta"])["raw"])
        onsets = plan.events.onset_K
        last = [last_needed_frame(o, plan.tr, plan.window_s) for o in onsets]
        self.last_needed_K = np.minimum(last, plan.n_frames - 1)
        self.online = OnlineRun(plan.selection.n_voxels, onsets, plan.events.duration_K)
        self.corrector: MotionCorrector | None = None
        self._logged_volumes = {int(r["volume"]) for r in self.log.records if r.get("type") == "volume"}
        self._motion: list[np.ndarray] = []
        self._mc_seconds = 0.0
        self._next_trial = 0

    def _check_resume(self) -> None:
        starts = [r for r in self.log.records if r.get("type") == "start"]
        identity = self.plan.identity()
        if starts and {k: starts[0].get(k) for k in identity} != identity:
            raise DataError(
                f"{self.out} holds the event log of another session ({starts[0].get('run')}); pass a "
                "new --out, or --overwrite to start this one afresh"
            )
        if not starts:
            self.log.append(
                {
                    "type": "start",
                    "time": time.time(),
                    **identity,
                    "has_stimuli": self.plan.stimulus_images is not None,
                    "candidates": len(self.plan.candidates),
                }
            )
        else:
            self.log.append({"type": "resume", "time": time.time(), "trials_done": len(self.log.done_trials())})

    def run(self, source: Iterable[Arrival]) -> dict[str, Any]:
        last = None
        for arrival in source:
            last = arrival
            self._volume(arrival)
            self._decode_ready(arrival.frame, arrival.arrived)
        if last is not None:
            self._decode_ready(self.plan.n_frames, last.arrived)  # the run ended: decode what is left
        record = {"type": "end", "time": time.time(), "trials": len(self.done)}
        self.log.append(record)
        self.log.close()
        return record

    # ------------------------------------------------------------------------------------------- volumes

    def _volume(self, arrival: Arrival) -> None:
        frame = arrival.frame
        if arrival.volume_ABC is None:
            self.log.append({"type": "error", "volume": frame + 1, "message": arrival.error or "volume lost"})
            return
        clock = time.perf_counter()
        try:
            if tuple(arrival.volume_ABC.shape) != self.plan.selection.shape:  # before it could become the reference
                raise DataError(
                    f"volume {frame + 1} has shape {tuple(arrival.volume_ABC.shape)}, the voxel mask "
                    f"{self.plan.selection.shape}; it is skipped: check the scanner export's grid"
                )
            if self.corrector is None:
                self.corrector = MotionCorrector(arrival.volume_ABC, self.plan.voxel_mm, self.registration_threads)
            corrected = self.corrector.correct(arrival.volume_ABC)
            voxels = self.plan.selection.take(corrected.volume_ABC)
        except DataError as err:
            self.log.append({"type": "error", "volume": frame + 1, "message": str(err)})
            return
        self.online.add(frame * self.plan.tr, voxels)
        previous = self._motion[-1] if self._motion else corrected.motion_6
        self._motion.append(corrected.motion_6)
        fd = float(framewise_displacement_F(np.stack([previous, corrected.motion_6]))[-1])
        self._mc_seconds = time.perf_counter() - clock
        if frame + 1 not in self._logged_volumes:
            self.log.append(
                {
                    "type": "volume",
                    "volume": frame + 1,
                    "arrived": arrival.arrived,
                    "fd_mm": round(fd, 4),
                    "rotation_deg": [round(float(v), 4) for v in corrected.motion_6[:3]],
                    "translation_mm": [round(float(v), 4) for v in corrected.motion_6[3:]],
                    "motion_correction_s": round(self._mc_seconds, 4),
                }
            )

    # -------------------------------------------------------------------------------------------- trials

    def _decode_ready(self, frame: int, arrived: float) -> None:
        while self._next_trial < len(self.plan.events) and self.last_needed_K[self._next_trial] <= frame:
            k = self._next_trial
            self._next_trial += 1
            if k + 1 in self.done or self.online.n_frames == 0:  # `done` is keyed by trial number (1-based)
                continue
            self._trial(k, arrived)

    def _trial(self, k: int, arrived: float) -> None:
        plan, out = self.plan, self.out
        stimulus = int(plan.events.stimulus_K[k])
        clock = time.perf_counter()
        raw = self.online.beta(k)
        z = self.stats.z_score(raw)
        beta_s = time.perf_counter() - clock
        decoded = self.decoder.decode(z, key=k + 1)
        decode_s = time.perf_counter() - clock - beta_s
        _write_beta(out / trial_file(k, ".npz"), raw, z)
        write_png(out / trial_file(k, ".png"), decoded.image_HW3)
        written = time.time()
        write_s = time.perf_counter() - clock - beta_s - decode_s
        self.stats.add(raw)
        record: dict[str, Any] = {
            "type": "trial",
            "trial": k + 1,
            "stimulus": stimulus,
            "onset": float(plan.events.onset_K[k]),
            "image": trial_file(k, ".png"),
            "beta": trial_file(k, ".npz"),
            "last_volume": int(self.last_needed_K[k]) + 1,
            "latency_s": {
                "total": round(written - arrived, 4),
                "motion_correction": round(self._mc_seconds, 4),
                "beta": round(beta_s, 4),
                "decode": round(decode_s, 4),
                "write": round(write_s, 4),
            },
            "stimulus_image": None,
            "quality": None,
            "retrieval": None,
            "retrieval_correct": None,
            "warmup": False,
        }
        if plan.stimulus_images is not None:
            truth = plan.stimulus_images.load(np.asarray([stimulus]))[0]
            if not (out / stimulus_file(stimulus)).exists():
                write_png(out / stimulus_file(stimulus), truth)
            from mindhier.metrics.image import pixcorr

            record["stimulus_image"] = stimulus_file(stimulus)
            record["quality"] = {"pixcorr": round(float(pixcorr(decoded.image_HW3[None], truth[None])[0]), 4)}
        if decoded.top_indices:
            record["retrieval"] = [
                {"stimulus": s, "score": score, "image": f"candidates/stimulus_{s:06d}.png"}
                for s, score in zip(decoded.top_indices, decoded.top_scores, strict=True)
            ]
            record["retrieval_correct"] = decoded.top_indices[0] == stimulus if stimulus in plan.candidates else None
        fault_points.reach("realtime.after-image")
        self.log.append(record)
        self.done[k + 1] = record

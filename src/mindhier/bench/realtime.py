"""`mindhier bench realtime`: a simulated session replayed through `mindhier realtime`, measured.

1. Latency: the run replayed at each speed (1× real time, and max = each volume as soon as the last is done); per
   trial, the time from its last needed volume's arrival to its image on disk (median, p99, max), against the TR,
   with the parts (motion correction of that volume, beta, decoding, writing).
   The response window (how long after a trial's onset its beta is estimated) trades delay for accuracy: the
   default and shorter ones are replayed at maximum speed on the same trials.
2. Real-time betas against the offline ones (`mindhier betas` on the same runs, which sees each run whole):
   per-voxel correlation over the run's trials, median over the visual ROIs (V1–LO) and per ROI; both also
   against the simulator's true betas.
3. Decoding from real-time against offline betas on the same trials, same seeds: retrieval top-1 over the
   candidate set, PixCorr, SSIM and the offline perceptual proxies (EfficientNet-Lite, labelled proxy), each
   as a paired difference with a bootstrap 95 % interval, and the top-1 ratio.

Shape letters (docs/glossary.md): K trials, V voxels.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mindhier.config import ROI_NAMES
from mindhier.data import layout
from mindhier.data.bold.timing import RESPONSE_WINDOW_S
from mindhier.data.image_decode import read_rgb
from mindhier.errors import DataError
from mindhier.progress import ProgressFn, report

VISUAL_ROIS = ("V1", "V2", "V3", "hV4", "LO")
PROXIES = ("lite0_late", "lite2_late")


def _session(
    model: Path, run: Path, data: Path, out: Path, speed: float | None, window_s: float = RESPONSE_WINDOW_S
) -> list[dict[str, Any]]:
    """Replay `run` through a fresh real-time session into `out`; its event log's records."""
    from mindhier.realtime.session_setup import SessionRequest, open_session

    request = SessionRequest(
        model=model, out=out, replay=run, speed=speed, data=data, overwrite=True, window_s=window_s
    )
    session, source = open_session(request)
    session.run(source)
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def _latency(records: list[dict[str, Any]], tr: float) -> dict[str, Any]:
    trials = [r for r in records if r.get("type") == "trial"]
    total = np.asarray([r["latency_s"]["total"] for r in trials])
    parts = {k: round(float(np.median([r["latency_s"][k] for r in trials])), 4) for k in trials[0]["latency_s"]}
    return {
        "trials": len(trials),
        "median_s": round(float(np.median(total)), 4),
        "p99_s": round(float(np.percentile(total, 99)), 4),
        "max_s": round(float(total.max()), 4),
        "tr_s": tr,
        "p99_over_tr": round(float(np.percentile(total, 99)) / tr, 3),
        "share_within_tr": round(float((total < tr).mean()), 4),
        "median_parts_s": parts,
        "errors": sum(1 for r in records if r.get("type") == "error"),
    }


def _voxel_correlations(a_KV: np.ndarray, b_KV: np.ndarray) -> np.ndarray:
    a = a_KV - a_KV.mean(axis=0)
    b = b_KV - b_KV.mean(axis=0)
    return (a * b).sum(axis=0) / np.maximum(np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0)), 1e-12)


def _by_roi(correlation_V: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    visual = np.isin(labels, VISUAL_ROIS)
    early = np.isin(labels, ("V1", "V2", "V3"))
    return {
        "median_visual": round(float(np.median(correlation_V[visual])), 4),
        "median_v1_v3": round(float(np.median(correlation_V[early])), 4),
        "median_all": round(float(np.median(correlation_V)), 4),
        "per_roi": {
            r: round(float(np.median(correlation_V[labels == r])), 4) for r in ROI_NAMES if (labels == r).any()
        },
    }


def bench_realtime(
    model: Path,
    data: Path,
    offline: Path,
    run_index: int = 1,
    speeds: tuple[str, ...] = ("1x", "max"),
    windows: tuple[float, ...] = (14.0, 18.0),
    workdir: Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    from mindhier.data.bold import bids
    from mindhier.data.nsd.betas import BetasFile
    from mindhier.metrics.extractors import build_extractor
    from mindhier.metrics.statistics import bootstrap_ci, paired_difference
    from mindhier.metrics.suite import evaluate
    from mindhier.provenance import machine, provenance
    from mindhier.realtime.trial_decoder import TrialDecoder

    runs = bids.find_runs(data / "bold")
    if not 1 <= run_index <= len(runs):
        raise DataError(f"--run {run_index}: {data / 'bold'} holds runs 1..{len(runs)}; pick one of them")
    run = runs[run_index - 1]
    tr = bids.read_tr(run)
    events = bids.read_events(run.events)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="mindhier-bench-realtime-"))
    record: dict[str, Any] = {
        "window_s": RESPONSE_WINDOW_S,
        "run": run.stem,
        "trials": len(events),
        "tr_s": tr,
        "model": str(model),
        "data": str(data),
        "offline": str(offline),
        "latency": {},
    }
    sessions = {}
    for i, speed in enumerate(speeds):
        report(progress, "replays", i, len(speeds))
        clock = time.perf_counter()
        rate = None if speed == "max" else float(speed.rstrip("x"))
        sessions[speed] = _session(model, run.bold, data, workdir / f"replay_{speed}", rate)
        record["latency"][speed] = {**_latency(sessions[speed], tr), "wall_s": round(time.perf_counter() - clock, 1)}
    report(progress, "replays", len(speeds), len(speeds))
    reference = sessions["max"] if "max" in sessions else sessions[speeds[0]]
    folder = workdir / ("replay_max" if "max" in sessions else f"replay_{speeds[0]}")
    trials = sorted((r for r in reference if r.get("type") == "trial"), key=lambda r: r["trial"])
    if len(trials) != len(events):
        raise DataError(f"the replay decoded {len(trials)} of {len(events)} trials; see {folder / 'events.jsonl'}")
    realtime_KV = np.stack([np.load(folder / r["beta"])["z"] for r in trials])

    # offline betas of the same trials: `mindhier betas` wrote this run's trials in run order
    table = np.genfromtxt(
        offline / f"bold_trials_subj{run.subject:02d}.tsv", delimiter="\t", names=True, dtype=None, encoding="utf-8"
    )
    rows = np.flatnonzero(
        (table["run"] == run.run) & (np.char.strip(table["session"].astype(str)) == (run.session or "-"))
    )
    if len(rows) != len(events):
        raise DataError(
            f"{offline} holds {len(rows)} trials of {run.stem}, the run has {len(events)}; rerun "
            "`mindhier betas` on the same BOLD folder"
        )
    offline_KV = BetasFile(layout.betas_path(offline, run.subject)).read_rows(table["row"][rows])
    truth_KV = BetasFile(layout.betas_path(data, run.subject)).read_rows(events.source_row_K)
    manifest = json.loads((offline / layout.MANIFEST).read_text())
    labels = np.asarray(manifest["subjects"][str(run.subject)]["roi_labels"])
    record["betas"] = {
        "realtime_vs_offline": _by_roi(_voxel_correlations(realtime_KV, offline_KV), labels),
        "realtime_vs_truth": _by_roi(_voxel_correlations(realtime_KV, truth_KV), labels),
        "offline_vs_truth": _by_roi(_voxel_correlations(offline_KV, truth_KV), labels),
        "protocol": "Pearson r per voxel over the run's trials; realtime = each trial's z-scored beta as decoded",
    }

    # decoding, same trials and seeds (the key of trial k is k, as in the session)
    decoder = TrialDecoder(model, run.subject)
    from mindhier.data.nsd.images import find_image_store

    store = find_image_store(data, json.loads((data / layout.MANIFEST).read_text()))
    from mindhier.data.bold.betas_from_bold import stimulus_splits

    splits = stimulus_splits(data, int(manifest["n_images"]))
    candidates = np.flatnonzero(splits == "test")
    decoder.set_candidates(candidates, store.load(candidates))
    realtime_images = np.stack([read_rgb(folder / r["image"]) for r in trials])
    offline_images, offline_correct = [], []
    for k in range(len(trials)):
        decoded = decoder.decode(offline_KV[k], key=k + 1)
        offline_images.append(decoded.image_HW3)
        offline_correct.append(float(decoded.top_indices[0] == int(events.stimulus_K[k])))
        report(progress, "offline decoding", k + 1, len(trials))
    realtime_correct = [float(bool(r["retrieval_correct"])) for r in trials]
    truths = store.load(events.stimulus_K)
    extractors = [build_extractor(name) for name in PROXIES]
    scored = {
        "realtime": evaluate(realtime_images, truths, extractors),
        "offline": evaluate(np.stack(offline_images), truths, extractors),
    }
    metrics: dict[str, Any] = {
        "retrieval_top1": {
            "realtime": bootstrap_ci(realtime_correct),
            "offline": bootstrap_ci(offline_correct),
            "difference": paired_difference(realtime_correct, offline_correct),
            "ratio": round(float(np.mean(realtime_correct)) / max(float(np.mean(offline_correct)), 1e-12), 4),
            "candidates": len(candidates),
            "chance": round(1 / len(candidates), 4),
        }
    }
    for name, values in scored["realtime"].per_image.items():
        summary = scored["realtime"].summary.get(name, {})
        metrics[name] = {
            "realtime": bootstrap_ci(values),
            "offline": bootstrap_ci(scored["offline"].per_image[name]),
            "difference": paired_difference(values, scored["offline"].per_image[name]),
            "kind": summary.get("kind", ""),
            "note": summary.get("note", ""),
        }
    # the response window's trade-off: shorter windows decode sooner (max-speed replays, same trials)
    offline_top1 = float(np.mean(offline_correct))
    record["windows"] = {}
    for window in sorted({*windows, RESPONSE_WINDOW_S}):
        if window == RESPONSE_WINDOW_S:
            records_w, folder_w = reference, folder
        else:
            folder_w = workdir / f"replay_max_window{window:g}"
            records_w = _session(model, run.bold, data, folder_w, None, window)
        trials_w = sorted((r for r in records_w if r.get("type") == "trial"), key=lambda r: r["trial"])
        betas_w = np.stack([np.load(folder_w / r["beta"])["z"] for r in trials_w])
        top1 = float(np.mean([bool(r["retrieval_correct"]) for r in trials_w]))
        record["windows"][f"{window:g}"] = {
            "decoded_after_onset_s": window,
            "retrieval_top1": round(top1, 4),
            "ratio_to_offline": round(top1 / max(offline_top1, 1e-12), 4),
            "betas_vs_offline_median_visual": _by_roi(_voxel_correlations(betas_w, offline_KV), labels)[
                "median_visual"
            ],
            "latency_p99_s_max_speed": _latency(records_w, tr)["p99_s"],
        }
        report(progress, "window sweep", len(record["windows"]), len({*windows, RESPONSE_WINDOW_S}))
    record["decoding"] = {
        "metrics": metrics,
        "protocol": (
            f"the {len(trials)} trials of {run.stem} (held-out test images, single trials, no repeat "
            "averaging), one sample each with the session's per-trial seed; retrieval among the dataset's "
            f"{len(candidates)} test images (teacher terminal embedding vs the encoder's prediction); "
            "proxies are EfficientNet-Lite networks, not the paper's metric networks"
        ),
        "extractors": [e for e in scored["realtime"].extractors],
    }
    record["machine"] = machine()
    record["provenance"] = provenance()
    return record


def summary_lines(record: dict[str, Any]) -> list[str]:
    lines = []
    for speed, row in record["latency"].items():
        lines.append(
            f"{speed}: {row['trials']} trials, latency median {row['median_s'] * 1e3:.0f} ms, p99 "
            f"{row['p99_s'] * 1e3:.0f} ms (TR {row['tr_s'] * 1e3:.0f} ms), {row['share_within_tr']:.0%} within one TR"
        )
    betas = record["betas"]
    lines.append(
        f"betas: real-time vs offline median r {betas['realtime_vs_offline']['median_visual']:.3f} (visual ROIs); "
        f"offline vs truth V1–V3 {betas['offline_vs_truth']['median_v1_v3']:.3f}"
    )
    top1 = record["decoding"]["metrics"]["retrieval_top1"]
    lines.append(
        f"retrieval top-1: real-time {top1['realtime']['mean']:.3f}, offline {top1['offline']['mean']:.3f} "
        f"(ratio {top1['ratio']:.2f}, chance {top1['chance']:.3f})"
    )
    return lines

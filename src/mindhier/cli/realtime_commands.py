"""`mindhier betas` (BOLD runs → single-trial betas in MindEye2's layout) and `mindhier realtime` (a session
decoded trial by trial as volumes arrive, with an optional live page)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mindhier.cli.options import add_runtime_options, apply_threads, non_negative_int, positive_int, progress_bar
from mindhier.errors import ConfigError

CANDIDATE_SETS = ("test", "run", "none")  # kept equal to realtime.session_setup's (importing it loads torch)
RESPONSE_WINDOW_S = 22.0  # kept equal to data.bold.timing's (a test checks)


def add_realtime_parsers(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("betas", help="single-trial betas from BOLD runs (motion correction, LSS GLM)")
    p.add_argument("--bold", type=Path, required=True, help="BIDS folder of BOLD runs (e.g. DATA/bold from simulate)")
    p.add_argument("--out", type=Path, required=True, help="output dataset folder (MindEye2 layout)")
    p.add_argument("--stimuli", type=Path, help="the dataset whose images the events index (default: --bold's parent)")
    p.add_argument("--mask", type=Path, help="visual voxel mask NIfTI (default: the BIDS derivative desc-visual_mask)")
    p.add_argument("--rois", type=Path, help="ROI segmentation dseg.nii.gz (+ .tsv) (default: the BIDS derivative)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new one is complete")
    add_runtime_options(p)
    p.set_defaults(func=cmd_betas)

    p = commands.add_parser("realtime", help="decode trials as BOLD volumes arrive (watch a folder or replay a run)")
    p.add_argument("--model", type=Path, required=True, help="generator run, or a `mindhier demo` output folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--replay", type=Path, metavar="BOLD_RUN", help="a recorded 4-D run (_bold.nii.gz) to stream")
    source.add_argument("--watch", type=Path, metavar="DIR", help="a folder receiving one 3-D volume file per TR")
    p.add_argument("--speed", default="1x", help="replay speed: 1x (real time), 2x, …, or max")
    p.add_argument("--events", type=Path, help="the session's events.tsv (with --watch; --replay reads the run's)")
    p.add_argument("--tr", type=float, help="repetition time in seconds (with --watch; --replay reads the sidecar)")
    p.add_argument("--frames", type=positive_int, help="volumes in the run (with --watch; default: from the events)")
    p.add_argument("--first-volume", type=non_negative_int, default=1, help="number of the first volume file")
    p.add_argument("--bids", type=Path, help="the BIDS folder holding the masks (default: found above the run)")
    p.add_argument("--mask", type=Path, help="visual voxel mask NIfTI (default: the BIDS derivative)")
    p.add_argument("--rois", type=Path, help="ROI segmentation (default: the BIDS derivative)")
    p.add_argument(
        "--data",
        type=Path,
        help="the dataset the events index, for stimuli and retrieval (default: the "
        "BIDS folder's parent when it is one)",
    )
    p.add_argument("--subject", type=positive_int, help="subject id (default: the run's sub- label)")
    p.add_argument(
        "--candidates",
        choices=CANDIDATE_SETS,
        default="test",
        help="retrieval candidates: the dataset's test images (default), the run's images, or none",
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="sampling seed (each trial draws from (seed, trial))"
    )
    p.add_argument(
        "--window",
        type=float,
        default=RESPONSE_WINDOW_S,
        metavar="S",
        help=f"decode a trial once the volume S seconds after its onset is in (default {RESPONSE_WINDOW_S:g}; shorter "
        "is sooner and less accurate: `bench realtime` measures the trade-off)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder: events.jsonl, trials/, stimuli/")
    p.add_argument("--overwrite", action="store_true", help="start afresh, removing this command's earlier outputs")
    p.add_argument("--serve", action="store_true", help="serve the live page while decoding")
    p.add_argument("--port", type=non_negative_int, default=8765, help="live page port (0: any free port)")
    p.add_argument(
        "--linger",
        type=float,
        default=None,
        metavar="S",
        help="with --serve: keep the page up S seconds after the run (default: until Ctrl-C)",
    )
    add_runtime_options(p)
    p.set_defaults(func=cmd_realtime)


def cmd_betas(args: argparse.Namespace) -> int:
    from mindhier.data.bold.betas_from_bold import write_betas_dataset

    apply_threads(args)
    progress = progress_bar(args)
    clock = time.perf_counter()
    try:
        result = write_betas_dataset(args.bold, args.out, args.stimuli, args.mask, args.rois, args.overwrite, progress)
    finally:
        progress.close()
    for subject, entry in result["subjects"].items():
        print(
            f"subject {subject}: {entry['n_trials']} trials × {entry['n_voxels']} voxels from {len(entry['runs'])} runs"
        )
    print(f"wrote {args.out} in {time.perf_counter() - clock:.0f} s")
    return 0


def replay_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        speed = float(text.rstrip("x"))
    except ValueError:
        speed = -1.0
    if not speed > 0:
        raise ConfigError(f"--speed takes a rate or max, got {text!r}; e.g. --speed 1x, 2x, 0.5x or max")
    return speed


def cmd_realtime(args: argparse.Namespace) -> int:
    from mindhier.realtime.session_setup import SessionRequest, open_session

    apply_threads(args)
    request = SessionRequest(
        model=args.model,
        out=args.out,
        replay=args.replay,
        watch=args.watch,
        speed=replay_speed(args.speed),
        events=args.events,
        tr=args.tr,
        frames=args.frames,
        first_volume=args.first_volume,
        bids_root=args.bids,
        mask=args.mask,
        rois=args.rois,
        data=args.data,
        subject=args.subject,
        candidates=args.candidates,
        seed=args.seed,
        overwrite=args.overwrite,
        window_s=args.window,
    )
    session, source = open_session(request)
    page = None
    if args.serve:
        from mindhier.realtime.live_page import LivePage

        page = LivePage(args.out, port=args.port).start()
        print(f"live page: {page.url}", flush=True)
    try:
        record = session.run(source)
        print(f"decoded {record['trials']} of {len(session.plan.events)} trials into {args.out}")
        for note in getattr(source, "notes", []):
            print(f"note: {note}", file=sys.stderr)
        if page is not None:
            _linger(args.linger)
    finally:
        if page is not None:
            page.stop()
    return 0


def _linger(seconds: float | None) -> None:
    if seconds is None:
        print("the run is over; the page stays up until Ctrl-C", flush=True)
        while True:
            time.sleep(3600)
    time.sleep(max(0.0, seconds))

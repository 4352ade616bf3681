"""`mindhier realtime` on the tiny world's simulated scanner runs: every trial decoded from a replay with its
image, beta, retrieval and timings; bad inputs are one line; (slow) a session killed mid-run continues from its
event log to the same results, a watched folder with a wrong volume goes on, and the live page shows a replay."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mindhier.cli import main
from mindhier.data.bold import bids

RUN_TRIALS = 16  # conftest's tiny_bold


def _run(tiny_bold: Path, number: int = 1) -> Path:
    return tiny_bold / "bold" / "sub-01" / "func" / f"sub-01_task-test_run-{number:02d}_bold.nii.gz"


def _realtime(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["realtime", *argv, "--quiet"])
    return code, out.getvalue(), err.getvalue()


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def _trials(out: Path) -> dict[int, dict]:
    return {r["trial"]: r for r in _records(out) if r["type"] == "trial"}


def test_a_replay_decodes_every_trial_with_its_files_and_timings(tiny_bold, tiny_demo, tmp_path):
    demo, _, code = tiny_demo
    assert code == 0
    out = tmp_path / "session"
    code, printed, err = _realtime(
        "--model", str(demo), "--replay", str(_run(tiny_bold)), "--speed", "max", "--out", str(out)
    )
    assert code == 0, err
    assert f"decoded {RUN_TRIALS} of {RUN_TRIALS} trials" in printed
    records = _records(out)
    assert records[0]["type"] == "start" and records[-1]["type"] == "end"
    n_frames = bids.load_volume(_run(tiny_bold))[1].shape[-1]
    assert [r["volume"] for r in records if r["type"] == "volume"] == list(range(1, n_frames + 1))
    trials = _trials(out)
    assert sorted(trials) == list(range(1, RUN_TRIALS + 1))
    events = bids.read_events(_run(tiny_bold).with_name("sub-01_task-test_run-01_events.tsv"))
    manifest = json.loads((tiny_bold / "manifest.json").read_text())
    labels = json.loads((tiny_bold / "stimulus_labels.json").read_text())["images"]
    test_images = {r["index"] for r in labels if r["split"] == "test"}
    for k, record in trials.items():
        assert record["stimulus"] == int(events.stimulus_K[k - 1])
        with Image.open(out / record["image"]) as image:
            assert image.size[0] > 0 and image.format == "PNG"
        beta = np.load(out / record["beta"])
        assert beta["z"].shape == (manifest["subjects"]["1"]["n_voxels"],) and np.all(np.isfinite(beta["z"]))
        latency = record["latency_s"]
        assert latency["total"] >= latency["decode"] > 0 and latency["beta"] > 0
        assert len(record["retrieval"]) == 5 and {c["stimulus"] for c in record["retrieval"]} <= test_images
        assert record["retrieval_correct"] == (record["retrieval"][0]["stimulus"] == record["stimulus"])
        assert -1 <= record["quality"]["pixcorr"] <= 1 and (out / record["stimulus_image"]).is_file()
        # a trial is decoded once the volume `--window` s after its onset is in, not before
        assert record["last_volume"] == min(int(np.ceil((record["onset"] + 22.0) / 1.5 - 1e-9)), n_frames - 1) + 1
    # the real-time betas follow the simulator's betas of these trials (its tiny volumes: a loose bound)
    from mindhier.data.nsd.betas import BetasFile

    truth = BetasFile(tiny_bold / "betas_all_subj01_fp32_renorm.hdf5").read_rows(events.source_row_K)
    realtime = np.stack([np.load(out / trials[k]["beta"])["z"] for k in sorted(trials)])
    r = [np.corrcoef(realtime[:, v], truth[:, v])[0, 1] for v in range(truth.shape[1])]
    assert np.median(r) > 0.5


def test_bad_inputs_are_one_line_and_write_nothing(tiny_bold, tmp_path):
    run = _run(tiny_bold)
    broken = tmp_path / "bids"
    shutil.copytree(tiny_bold / "bold", broken)
    func = broken / "sub-01" / "func"
    events = func / "sub-01_task-test_run-01_events.tsv"
    lines = events.read_text().splitlines()
    events.write_text(
        "\n".join([lines[0], *lines[1:], lines[-1].replace(lines[-1].split("\t")[0], "9999.0", 1)]) + "\n"
    )
    cases = {
        "events": (func / run.name, "does not belong to this run"),
    }
    corrupt = func / "sub-01_task-test_run-02_bold.nii.gz"
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    cases["corrupt"] = (corrupt, "not a readable NIfTI")
    for name, (replay, expected) in cases.items():
        out = tmp_path / f"out_{name}"
        code, _, err = _realtime(
            "--model", str(tmp_path / "no-model"), "--replay", str(replay), "--data", str(tiny_bold), "--out", str(out)
        )
        assert code == 2, err
        assert expected in err and err.count("\n") == 1, err
        assert not (out / "events.jsonl").exists()


@pytest.mark.slow
def test_a_killed_session_continues_from_its_event_log_to_the_same_results(tiny_bold, tiny_demo, tmp_path):
    demo, _, _ = tiny_demo
    argv = [
        sys.executable,
        "-m",
        "mindhier",
        "realtime",
        "--model",
        str(demo),
        "--replay",
        str(_run(tiny_bold)),
        "--speed",
        "max",
        "--quiet",
    ]
    whole = subprocess.run([*argv, "--out", str(tmp_path / "whole")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    env = {**os.environ, "MINDHIER_KILL_AT": "realtime.after-image#6"}
    killed = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, env=env)
    assert killed.returncode == -9, killed.stderr
    assert sorted(_trials(out)) == [1, 2, 3, 4, 5]  # trial 6's files written, its line not: it is not done
    env = {**os.environ, "MINDHIER_KILL_AT": "atomic-write.before-rename#3"}  # inside trial 7's beta write
    killed = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, env=env)
    assert killed.returncode == -9, killed.stderr
    assert list((out / "trials").glob(".*.tmp"))  # the write cut short left its temporary file
    resumed = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((out / "trials").glob(".*")) and len(list((out / "trials").glob("*.png"))) == RUN_TRIALS
    lines = [r for r in _records(out) if r["type"] == "trial"]
    assert sorted(r["trial"] for r in lines) == list(range(1, RUN_TRIALS + 1))  # each trial logged once
    assert any(r["type"] == "resume" for r in _records(out))
    reference = _trials(tmp_path / "whole")
    for k, record in _trials(out).items():
        np.testing.assert_allclose(
            np.load(out / record["beta"])["z"], np.load(tmp_path / "whole" / reference[k]["beta"])["z"], atol=1e-5
        )
        assert np.array_equal(
            np.asarray(Image.open(out / record["image"])),
            np.asarray(Image.open(tmp_path / "whole" / reference[k]["image"])),
        )
    other_run = [*argv[: argv.index("--replay") + 1], str(_run(tiny_bold, 2)), "--speed", "max", "--quiet"]
    other = subprocess.run([*other_run, "--out", str(out)], capture_output=True, text=True)
    assert other.returncode == 2 and "event log of another session" in other.stderr


@pytest.mark.slow
def test_a_watched_folder_with_a_wrong_volume_goes_on(tiny_bold, tiny_demo, tmp_path):
    demo, _, _ = tiny_demo
    _, series = bids.load_volume(_run(tiny_bold))
    folder = tmp_path / "scanner"
    folder.mkdir()

    def scanner():
        order = list(range(series.shape[-1]))
        order[2], order[3] = order[3], order[2]  # two volumes out of order
        for f in order:
            volume = series[..., f] if f != 4 else series[:-1, :, :, f]  # volume 5 has the wrong shape
            bids.write_nifti(folder / f"vol_{f + 1:05d}.nii.gz", volume, np.eye(4))
            time.sleep(0.02)

    writer = threading.Thread(target=scanner)
    writer.start()
    code, _, err = _realtime(
        "--model",
        str(demo),
        "--watch",
        str(folder),
        "--events",
        str(_run(tiny_bold).with_name("sub-01_task-test_run-01_events.tsv")),
        "--tr",
        "1.5",
        "--frames",
        str(series.shape[-1]),
        "--bids",
        str(tiny_bold / "bold"),
        "--data",
        str(tiny_bold),
        "--out",
        str(tmp_path / "out"),
    )
    writer.join()
    assert code == 0, err
    records = _records(tmp_path / "out")
    errors = [r for r in records if r["type"] == "error"]
    assert len(errors) == 1 and errors[0]["volume"] == 5 and "shape" in errors[0]["message"]
    assert sorted(_trials(tmp_path / "out")) == list(range(1, RUN_TRIALS + 1))


@pytest.mark.slow
def test_the_live_page_shows_a_replay_in_a_real_browser(tiny_bold, tiny_demo, tmp_path):
    from browser import launch_chromium, sync_playwright_or_skip

    from mindhier.realtime.live_page import LivePage

    demo, _, _ = tiny_demo
    out = tmp_path / "live"
    out.mkdir()
    sync_playwright = sync_playwright_or_skip()
    with LivePage(out) as page_server, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_server.url)
        result = {}
        replay = threading.Thread(
            target=lambda: result.update(
                code=_realtime(
                    "--model", str(demo), "--replay", str(_run(tiny_bold)), "--speed", "4x", "--out", str(out)
                )[0]
            )
        )
        replay.start()
        page.wait_for_function("document.querySelectorAll('.trial').length >= 1", timeout=60_000)
        first_seen = len(_trials(out))
        page.wait_for_function(f"document.querySelectorAll('.trial').length >= {RUN_TRIALS}", timeout=120_000)
        replay.join()
        assert result["code"] == 0 and first_seen < RUN_TRIALS  # trials appeared while the replay ran
        assert page.inner_text("#trials-decoded").strip() == str(RUN_TRIALS)
        loaded = page.evaluate(
            "Array.from(document.querySelectorAll('.trial img')).filter(i => i.naturalWidth > 0).length"
        )
        assert loaded >= RUN_TRIALS
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.std() > 5

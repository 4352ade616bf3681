"""The live page of real-time decoding: its event stream follows events.jsonl line by line, its file route stays
inside the output folder, and (slow, in headless Chromium) the page shows trials as a replay appends them."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import httpx
from browser import launch_chromium, sync_playwright_or_skip
from PIL import Image
from starlette.testclient import TestClient

from mindhier.realtime.live_page import EVENTS_FILE, CompleteLines, LivePage, create_app, file_under

GIVE_UP_SECONDS = 5.0  # a stream that never ends is stopped after this, so a broken test fails instead of hanging


def line(**event) -> str:
    return json.dumps(event) + "\n"


START = line(type="start", time=1.0, tr=1.5, n_trials=2, run="sub-01_task-nsd_run-01", subject=1)
VOLUME = line(type="volume", volume=1, arrived=2.0, fd_mm=0.08, translation_mm=[0, 0, 0], rotation_deg=[0, 0, 0])
TRIAL = line(type="trial", trial=1, stimulus=7, image="trials/trial_0001.png", latency_s={"total": 0.3})
END = line(type="end", time=9.0, trials=1)


def sse_events(body: str) -> list[dict[str, str]]:
    """The events of a text/event-stream body: each as its fields (`id`, `data`); `retry`-only blocks left out."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(field.split(": ", 1) for field in block.splitlines() if ": " in field)
        if "data" in fields:
            events.append(fields)
    return events


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def client(out):
    """A test client of the app on `out`; its event streams poll every 10 ms and are stopped after GIVE_UP_SECONDS."""
    stop = threading.Event()
    timer = threading.Timer(GIVE_UP_SECONDS, stop.set)
    timer.start()
    with TestClient(create_app(out, poll_s=0.01, stop=stop)) as test_client:
        yield test_client
    timer.cancel()


def append_later(path: Path, chunks: list[tuple[float, str]]) -> threading.Thread:
    """A started thread that appends each text chunk to `path` after its delay (seconds, from the previous one)."""

    def append():
        for delay, text in chunks:
            time.sleep(delay)
            with open(path, "a") as file:
                file.write(text)

    thread = threading.Thread(target=append, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------ the page


def test_the_page_has_the_elements_others_find_and_loads_nothing_from_outside(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for element_id in ("trials-decoded", "motion-plot", "quality-plot", "error-log", "trials"):
        assert f'id="{element_id}"' in page
    assert '"data-trial"' in page and '"trial"' in page  # what the script gives every trial card
    assert 'new EventSource("events")' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//""", page)


# ------------------------------------------------------------------------------ the event stream


def test_complete_lines_wait_for_the_newline_of_a_partial_last_line(tmp_path):
    events = tmp_path / EVENTS_FILE
    lines = CompleteLines(events)
    assert lines.read() == []  # no file yet
    events.write_text(START + '{"type": "vol')
    assert lines.read() == [START.strip()]
    assert lines.read() == []  # the partial line is not a line yet
    with open(events, "a") as file:
        file.write('ume", "volume": 1}\r\n' + END)
    assert lines.read() == ['{"type": "volume", "volume": 1}', END.strip()]


def test_the_stream_waits_for_the_file_sends_complete_lines_with_ids_and_ends_after_end(client, out):
    partial, rest = VOLUME[:20], VOLUME[20:]
    writer = append_later(out / EVENTS_FILE, [(0.05, START + partial), (0.1, rest + TRIAL + END + VOLUME)])
    response = client.get("/events")
    writer.join()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [event["id"] for event in events] == ["1", "2", "3", "4"]  # the volume after `end` is not sent
    assert [event["data"] for event in events] == [START.strip(), VOLUME.strip(), TRIAL.strip(), END.strip()]


def test_a_reconnecting_browser_resumes_after_the_last_line_it_saw(client, out):
    (out / EVENTS_FILE).write_text(START + VOLUME + "\n" + TRIAL + END + '{"type": "tri')
    resumed = sse_events(client.get("/events", headers={"Last-Event-ID": "2"}).text)
    assert [(event["id"], event["data"]) for event in resumed] == [("4", TRIAL.strip()), ("5", END.strip())]
    assert sse_events(client.get("/events", headers={"Last-Event-ID": "nonsense"}).text)[0]["id"] == "1"
    after_the_end = client.get("/events", headers={"Last-Event-ID": "5"})
    assert after_the_end.status_code == 204  # what tells EventSource not to reconnect


# ------------------------------------------------------------------------------ files under OUT


def png_bytes(color: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_files_serves_pngs_and_json_under_out(client, out):
    (out / "trials").mkdir()
    (out / "trials" / "trial_0001.png").write_bytes(png_bytes((200, 30, 30)))
    (out / "summary.json").write_text('{"trials": 1}')
    (out / "latest.png").symlink_to(out / "trials" / "trial_0001.png")  # a symlink inside OUT is fine

    response = client.get("/files/trials/trial_0001.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == png_bytes((200, 30, 30))
    assert client.get("/files/summary.json").headers["content-type"].startswith("application/json")
    assert client.get("/files/latest.png").content == response.content


def test_files_refuses_paths_that_leave_out(client, out, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes((0, 0, 0)))
    (out / "trials").mkdir()
    (out / "trials" / "escape.png").symlink_to(secret)
    (out / "trials" / "outside").symlink_to(tmp_path, target_is_directory=True)

    refused = [
        "/files/..%2Fsecret.png",  # encoded, so that the client does not resolve the `..` itself
        "/files/trials/..%2F..%2Fsecret.png",
        "/files/" + quote(str(secret)),  # an absolute path: /files//tmp/.../secret.png
        "/files/trials/escape.png",
        "/files/trials/outside/secret.png",
        "/files/trials",  # a folder
        "/files/trials/trial_0009.png",  # missing
    ]
    for url in refused:
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.content != secret.read_bytes(), url
    # the same paths as the handler sees them: a `..` part or an absolute path is refused before any lookup
    assert file_under(out, "../secret.png") is None
    assert file_under(out, str(secret)) is None
    assert file_under(out, "trials/../../secret.png") is None


# ------------------------------------------------------------------------------ the server in a thread


def test_live_page_serves_on_a_free_port_and_stops_with_a_browser_still_connected(out):
    (out / EVENTS_FILE).write_text(START)  # no `end`: the stream stays open until the page stops
    received: list[str] = []

    def listen(url):
        with httpx.stream("GET", url + "events", timeout=10) as response:
            for text in response.iter_lines():
                received.append(text)

    with LivePage(out, poll_s=0.01) as page:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", page.url) and not page.url.endswith(":0/")
        assert httpx.get(page.url, timeout=5).status_code == 200
        listener = threading.Thread(target=listen, args=(page.url,), daemon=True)
        listener.start()
        deadline = time.monotonic() + 3
        while "id: 1" not in received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "id: 1" in received
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1.5  # the open stream ended; the server did not wait for the browser
    listener.join(2)
    assert not listener.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(page.url, timeout=2)


# ------------------------------------------------------------------------------ the page in a browser


def save_png_atomically(path: Path, image: Image.Image) -> None:
    """What the engine must do: the whole file under a temporary name, then one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)


def picture(seed: int, size: int = 48) -> Image.Image:
    """A small picture that differs with `seed`: a colour gradient with a square."""
    image = Image.new("RGB", (size, size))
    image.putdata(
        [
            ((x * 5 + seed * 60) % 256, (y * 5) % 256, (seed * 90 + x + y) % 256)
            for y in range(size)
            for x in range(size)
        ]
    )
    for x in range(seed * 4, seed * 4 + 12):
        for y in range(10, 22):
            image.putpixel((x % size, y), (255, 255, 255))
    return image


def replay(out: Path, failures: list[BaseException], trials: int = 4, volumes_per_trial: int = 3) -> None:
    """Append a short run's events to `out` as an engine replaying it would: each image before the line naming it."""
    try:
        events = out / EVENTS_FILE

        def emit(**event):
            with open(events, "a") as file:
                file.write(json.dumps(event) + "\n")

        emit(type="start", time=time.time(), tr=1.5, n_trials=trials, run="sub-01_task-nsd_run-01", subject=1)
        for trial in range(1, trials + 1):
            for offset in range(volumes_per_trial):
                volume = (trial - 1) * volumes_per_trial + offset + 1
                emit(type="volume", volume=volume, arrived=time.time(), fd_mm=0.05 + 0.2 * (volume % 4 == 0),
                     translation_mm=[0.01 * volume, 0.0, 0.0], rotation_deg=[0.0, 0.0, 0.0])  # fmt: skip
                time.sleep(0.03)
            stimulus = 100 + trial
            save_png_atomically(out / "trials" / f"trial_{trial:04d}.png", picture(trial))
            save_png_atomically(out / "stimuli" / f"stimulus_{stimulus:06d}.png", picture(trial + 1))
            retrieval = []
            others = list(range(200 + 4 * trial, 204 + 4 * trial))
            ranked = [*others[:2], stimulus, *others[2:]] if trial == 3 else [stimulus, *others]  # trial 3: wrong
            for rank, candidate in enumerate(ranked):
                save_png_atomically(out / "candidates" / f"stimulus_{candidate:06d}.png", picture(candidate % 5))
                retrieval.append(
                    {
                        "stimulus": candidate,
                        "score": 0.6 - 0.1 * rank,
                        "image": f"candidates/stimulus_{candidate:06d}.png",
                    }
                )
            if trial == 2:
                emit(type="error", message="volume 5 arrived late", volume=5)
            emit(type="trial", trial=trial, stimulus=stimulus, onset=6.0 * trial,
                 image=f"trials/trial_{trial:04d}.png", stimulus_image=f"stimuli/stimulus_{stimulus:06d}.png",
                 retrieval=retrieval, retrieval_correct=trial != 3, latency_s={"total": 0.2 + 0.1 * trial},
                 quality={"pixcorr": 0.1 * trial}, warmup=False)  # fmt: skip
            time.sleep(0.2)
        emit(type="end", time=time.time(), trials=trials)
    except BaseException as error:  # reported by the test, which would otherwise only time out
        failures.append(error)


@pytest.mark.slow
def test_the_page_shows_a_replay_as_it_is_written(out, tmp_path):
    sync_playwright = sync_playwright_or_skip()
    page_errors: list[str] = []
    failures: list[BaseException] = []
    with LivePage(out) as live, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and page_errors.append(message.text))
            page.goto(live.url)
            writer = threading.Thread(target=replay, args=(out, failures), daemon=True)
            writer.start()  # the page is open before the first line is written (the events file does not exist yet)

            page.wait_for_function("document.querySelectorAll('.trial').length === 4", timeout=20_000)
            page.wait_for_function("document.getElementById('stream-status').textContent.startsWith('ended')")
            writer.join(5)
            assert not failures, failures
            assert page.text_content("#trials-decoded") == "4"
            assert page.eval_on_selector_all(".trial", "cards => cards.map(c => c.dataset.trial)") == [
                "4",
                "3",
                "2",
                "1",
            ]
            page.wait_for_function("[...document.images].every(img => img.complete)", timeout=10_000)
            pictures = ".trial img.reconstruction, .trial img.stimulus"
            widths = page.evaluate(f"[...document.querySelectorAll('{pictures}')].map(i => i.naturalWidth)")
            assert widths == [48] * 8
            assert page.locator(".trial .candidate.correct").count() == 4  # each trial's own stimulus is a candidate
            assert page.locator(".trial .candidate img").count() == 20
            motion_points = page.get_attribute("#motion-plot polyline", "points")
            assert len(motion_points.split()) == 12  # one point per volume
            assert page.locator("#quality-plot polyline").count() == 2
            assert "volume 5 arrived late" in page.text_content("#error-log")
            assert page.text_content("#run-name") == "sub-01_task-nsd_run-01"

            screenshot = tmp_path / "live_page.png"
            page.screenshot(path=str(screenshot), full_page=True)
            if os.environ.get("LIVE_PAGE_SCREENSHOT"):
                page.screenshot(path=os.environ["LIVE_PAGE_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
    with Image.open(screenshot) as image:
        assert image.format == "PNG"
        grey = image.convert("L")
        assert grey.getextrema()[0] < grey.getextrema()[1]
        assert sum(count > 0 for count in grey.histogram()) > 20  # drawn content, not a blank page
    assert page_errors == []

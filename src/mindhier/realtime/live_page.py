"""The live page of real-time decoding: a local web page that follows a decoding run's output folder as it grows.

The real-time engine writes an output folder OUT and appends one JSON object per line to `OUT/events.jsonl` as
things happen (`start`, `volume`, `trial`, `error`, `end`); the images a line names (`trials/…png`,
`stimuli/…png`, `candidates/…png`) are written, atomically, before the line. This module serves OUT to a browser:

    GET /                 the page (`live_page.html` beside this file: HTML, CSS and JavaScript, no external resources)
    GET /events           server-sent events: every complete line of events.jsonl, then each new one as it is
                          appended; the event id is the line's number (1-based), so a reconnecting browser
                          (`Last-Event-ID`) resumes after the last line it saw; the stream ends after `end`
    GET /files/{path}     a file under OUT (404 for `..`, absolute paths, symlinks that leave OUT, folders)

A line counts once it ends in a newline: a partial last line, still being written, waits for its newline. The
engine appends to events.jsonl and never rewrites it (a new run writes a new OUT).

`create_app(OUT)` is the ASGI application; `with LivePage(OUT) as page: page.url` serves it from a background thread
on 127.0.0.1 (a free port) until the block ends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from mindhier.realtime.event_log import EVENTS_FILE  # the log the page follows

POLL_SECONDS = 0.1  # how often /events looks for new lines
RECONNECT_MS = 1000  # what the stream asks a browser to wait before it reconnects
CONTENT_TYPES = {".png": "image/png", ".json": "application/json", ".jsonl": "application/jsonl"}
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0


def page_html() -> str:
    """The page's HTML (CSS and JavaScript inline)."""
    return resources.files(__package__).joinpath("live_page.html").read_text(encoding="utf-8")


class CompleteLines:
    """The complete lines of a file that grows by appends, read a batch at a time from where the last batch ended.

    A file that does not exist yet reads as empty; a last line without its newline is left for a later read.
    """

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0  # bytes already returned as complete lines

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                appended = file.read()
        except FileNotFoundError:
            return []
        last_newline = appended.rfind(b"\n")
        if last_newline < 0:
            return []
        self.offset += last_newline + 1
        # a raw CR would end an SSE line early; JSON never needs one (inside strings it is escaped as \r)
        return [
            line.decode("utf-8", errors="replace").replace("\r", "") for line in appended[:last_newline].split(b"\n")
        ]


def is_end_event(line: str) -> bool:
    """Whether an events.jsonl line is the run's `end` event (any line that is not a JSON object is not)."""
    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("type") == "end"


def resume_line(request: Request) -> int:
    """The number of the last line the browser saw (its `Last-Event-ID`), 0 for a new stream."""
    try:
        return max(0, int(request.headers.get("last-event-id", "0")))
    except ValueError:
        return 0


def ended_by(events_path: Path, line_count: int) -> bool:
    """Whether the first `line_count` complete lines of the events file hold the `end` event."""
    return any(is_end_event(line) for line in CompleteLines(events_path).read()[:line_count])


async def event_stream(events_path: Path, after_line: int, poll_s: float, stop: threading.Event) -> AsyncIterator[str]:
    """Server-sent events of the lines after `after_line`, following the file as it grows, until `end` (or `stop`)."""
    yield f"retry: {RECONNECT_MS}\n\n"
    lines = CompleteLines(events_path)
    line_number = 0
    while not stop.is_set():
        batch = lines.read()
        for line in batch:
            line_number += 1
            if line_number <= after_line or not line.strip():
                continue
            yield f"id: {line_number}\ndata: {line}\n\n"
            if is_end_event(line):
                return
        if not batch:
            await anyio.sleep(poll_s)


def file_under(out_dir: Path, relative: str) -> Path | None:
    """The regular file `relative` names under `out_dir`, or None where it names none or leaves `out_dir`
    (an absolute path, a `..` part, a symlink that resolves outside)."""
    if not relative or relative.startswith(("/", "\\")) or "\x00" in relative:
        return None
    parts = relative.replace("\\", "/").split("/")
    if ".." in parts:
        return None
    try:
        root = out_dir.resolve(strict=True)
        path = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a name the OS refuses
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def create_app(out_dir: Path, *, poll_s: float = POLL_SECONDS, stop: threading.Event | None = None) -> Starlette:
    """The live page's web application for the output folder `out_dir` (which may not exist yet).

    `poll_s`: how often an event stream looks for new lines. `stop`: once set, every open event stream ends at its
    next poll (how `LivePage` lets the server shut down while a browser is still connected).
    """
    out_dir = Path(out_dir)
    stop = stop if stop is not None else threading.Event()
    html = page_html()

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    async def events(request: Request) -> Response:
        after_line = resume_line(request)
        events_path = out_dir / EVENTS_FILE
        if after_line and ended_by(events_path, after_line):
            return Response(status_code=204)  # the browser saw the end already: 204 tells EventSource to stop
        return StreamingResponse(
            event_stream(events_path, after_line, poll_s, stop),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def files(request: Request) -> Response:
        path = file_under(out_dir, request.path_params["path"])
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(
            path, media_type=CONTENT_TYPES.get(path.suffix.lower()), headers={"Cache-Control": "no-cache"}
        )

    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/events", events, methods=["GET"]),
            Route("/files/{path:path}", files, methods=["GET"]),
        ]
    )


class LivePage:
    """The live page served on `host` from a background thread while the `with` block runs.

    `port=0` lets the OS choose a free port; `url` says which, once started. Leaving the block ends the open event
    streams, stops the server and joins its thread.
    """

    def __init__(self, out_dir: Path, *, host: str = "127.0.0.1", port: int = 0, poll_s: float = POLL_SECONDS):
        self.out_dir = Path(out_dir)
        self.host = host
        self.port = port
        self.poll_s = poll_s
        self._stop_streams = threading.Event()
        self._url: str | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address, e.g. `http://127.0.0.1:40123/`."""
        if self._url is None:
            raise RuntimeError("the live page has not started: use it as `with LivePage(out) as page:`")
        return self._url

    def start(self) -> LivePage:
        """Bind the port and serve the page from a background thread; return once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the live page is already serving")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.create_server((self.host, self.port), family=family)  # bound now: `url` is known at once
        host, port = listener.getsockname()[:2]
        self._url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        self._stop_streams = threading.Event()
        app = create_app(self.out_dir, poll_s=self.poll_s, stop=self._stop_streams)
        config = uvicorn.Config(
            app,
            log_level="warning",
            log_config=None,  # leave the process's logging configuration alone
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(STOP_TIMEOUT_SECONDS),
        )
        self._socket = listener
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="live-page", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the live page's server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """End the event streams, stop the server and join its thread (a no-op when not serving)."""
        if self._server is not None:
            self._stop_streams.set()
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS + 2)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._socket is not None:
            self._socket.close()
        self._socket = self._server = self._thread = None

    def __enter__(self) -> LivePage:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

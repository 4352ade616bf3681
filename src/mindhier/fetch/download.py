"""Download, verify and place remote files (`mindhier fetch`), resumably and without half-written results.

Every file is first found or downloaded into its cache — the Hugging Face cache for Hub files (huggingface_hub
resumes an interrupted download), `<torch hub dir>/checkpoints` for URL files (torch.hub writes a temporary
file and renames it only after its hash prefix matched) — then verified (`sources.py`), and only when *every*
file is present and verified is anything placed or recorded: dataset files are linked (or copied) into the
destination one by one under temporary names and renamed into place, and the manifest is written last.
A second fetch keeps files already in place with the right digest, so an interrupted fetch resumes.

Offline (no route to the Hub, or `HF_HUB_OFFLINE=1`), nothing is downloaded: files already in the caches are
used, and the missing ones are named, each with its source and where to put it by hand, in one error line.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mindhier._version import __version__
from mindhier.errors import MindhierError
from mindhier.fetch.sources import HUB_ENDPOINT, RemoteFile
from mindhier.fileio import atomic_path, sha256_file, write_json

MANIFEST = "fetch_manifest.json"
PROBE_TIMEOUT_S = 5.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class FetchError(MindhierError):
    """A file could not be fetched, or what was fetched is not what was published."""


@dataclass(frozen=True)
class FetchedFile:
    file: RemoteFile
    cached: Path  # where it lies in its cache
    sha256: str
    size: int
    commit: str | None  # the repository commit a Hub file was read at


@dataclass(frozen=True)
class Caches:
    """Where downloads go: the Hugging Face cache (Hub files) and the torch hub folder (URL files)."""

    hub: Path | None  # None: huggingface_hub's default (HF_HUB_CACHE)
    torch_hub: Path


# --------------------------------------------------------------------------------------------- network


def offline() -> bool:
    """Whether downloads are impossible: the user said so (HF_HUB_OFFLINE), or the Hub cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # behind a proxy a direct probe says nothing: try, and report what fails
    host = urlparse(os.environ.get("HF_ENDPOINT", HUB_ENDPOINT)).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S):
            return False
    except OSError:
        return True


# ------------------------------------------------------------------------------------------ find / get


def _find_or_download(file: RemoteFile, caches: Caches, allow_download: bool) -> Path | None:
    """The file's path in its cache, downloading it when allowed; None when it is not there (offline)."""
    if file.origin == "url":
        target = caches.torch_hub / file.path
        if target.is_file():
            return target
        if not allow_download:
            return None
        import torch.hub

        target.parent.mkdir(parents=True, exist_ok=True)
        expected = file.sha256 or file.sha256_prefix  # torch.hub drops a download whose sha256 does not start so
        torch.hub.download_url_to_file(file.url, str(target), hash_prefix=expected, progress=True)
        return target
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        found = hf_hub_download(
            file.repo_id,
            file.filename,
            repo_type=file.repo_type,
            revision=file.revision,
            cache_dir=str(caches.hub) if caches.hub is not None else None,
            local_files_only=not allow_download,
        )
    except LocalEntryNotFoundError:
        if allow_download:
            raise
        return None
    return Path(found)


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # git's object id, the Hub's etag of small files
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _commit_of(file: RemoteFile, cached: Path) -> str | None:
    """The snapshot (commit) folder a Hub cache path lies in."""
    if file.origin != "hub":
        return None
    parts = cached.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def verify(file: RemoteFile, cached: Path) -> FetchedFile:
    """Check the bytes against every digest known for the file; a mismatch is refused, naming both digests."""
    sha = sha256_file(cached)
    problem = None
    if file.sha256 is not None and sha != file.sha256:
        problem = f"sha256 {sha} but {file.name} is pinned to {file.sha256}"
    elif file.sha256_prefix is not None and not sha.startswith(file.sha256_prefix):
        problem = f"sha256 {sha[:12]}… but its published name says it starts with {file.sha256_prefix}"
    elif file.origin == "hub":
        etag = Path(os.path.realpath(cached)).name  # the cache names a file's blob by the Hub's etag
        if _SHA256.match(etag) and etag != sha:
            problem = f"sha256 {sha[:12]}… but the Hub published {etag[:12]}… for it"
        elif _SHA1.match(etag) and etag != _git_blob_sha1(cached):
            problem = f"git object id {_git_blob_sha1(cached)[:12]}… but the Hub published {etag[:12]}… for it"
    if problem:
        raise FetchError(f"{cached} has {problem}: it is damaged or not the published file; delete it and fetch again")
    return FetchedFile(file, cached, sha, cached.stat().st_size, _commit_of(file, cached))


def gather(
    files: list[RemoteFile],
    caches: Caches,
    by_hand: Callable[[RemoteFile], str],
    is_offline: bool | None = None,
    say: Callable[[str], None] = print,
) -> list[FetchedFile]:
    """Every file found (or downloaded) and verified; offline, the missing ones named in one error line."""
    is_offline = offline() if is_offline is None else is_offline
    if is_offline:
        say("offline (no route to the Hub, or HF_HUB_OFFLINE=1): looking in the local caches only")
    present: list[tuple[RemoteFile, Path, bool]] = []
    missing: list[RemoteFile] = []
    for file in files:
        existed = file.origin == "url" and (caches.torch_hub / file.path).is_file()
        try:
            cached = _find_or_download(file, caches, allow_download=not is_offline)
        except Exception as err:  # a network or server failure while online: name the file and the reason
            reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise FetchError(f"cannot download {file.name} from {file.source} ({reason}); run the fetch again") from err
        if cached is None:
            missing.append(file)
        else:
            present.append((file, cached, existed or is_offline))
    if missing:
        listed = "; ".join(f"{f.name} from {f.source} → {by_hand(f)}" for f in missing)
        raise FetchError(
            f"offline: {len(missing)} of {len(files)} files are not in the local caches — {listed}. "
            "Fetch again with internet access, or put each file there by hand"
        )
    fetched = []
    for file, cached, was_there in present:
        try:
            fetched.append(verify(file, cached))
        except FetchError:
            if not was_there:  # what this call downloaded and is wrong does not stay in the cache
                cached.unlink(missing_ok=True)
            raise
    say(f"verified {len(fetched)} files ({sum(f.size for f in fetched) / 2**20:.1f} MiB)")
    return fetched


# ------------------------------------------------------------------------------------------ placement


def _same_content(a: Path, b: Path, sha: str) -> bool:
    if a.samefile(b):
        return True
    return a.stat().st_size == b.stat().st_size and sha256_file(b) == sha


def place(fetched: list[FetchedFile], root: Path, overwrite: bool = False) -> list[str]:
    """Link (or copy) every fetched file to `root / file.path`; returns the ones newly placed.

    A file already there with the same bytes stays; one with other bytes is refused (all checked before
    anything is written) unless `overwrite`. Each file appears under its name only when complete.
    """
    clashes = [
        f.file.path
        for f in fetched
        if (root / f.file.path).exists() and not _same_content(f.cached, root / f.file.path, f.sha256)
    ]
    if clashes and not overwrite:
        raise FetchError(
            f"{root} already holds other versions of {len(clashes)} files ({', '.join(clashes[:3])}); "
            "choose another --to or pass --overwrite"
        )
    placed = []
    for f in fetched:
        target = root / f.file.path
        if target.exists() and f.file.path not in clashes:
            continue
        with atomic_path(target) as tmp:
            tmp.unlink()
            try:
                os.link(os.path.realpath(f.cached), tmp)  # the same disk: no second copy
            except OSError:
                shutil.copyfile(f.cached, tmp)
        placed.append(f.file.path)
    return placed


def write_manifest(path: Path, kind: str, fetched: list[FetchedFile], extra: dict | None = None) -> None:
    """What was fetched: every file with its source, commit, size and sha256 (written last, atomically)."""
    write_json(
        path,
        {
            "kind": kind,
            "mindhier": __version__,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra or {}),
            "files": [
                {
                    "name": f.file.name,
                    "path": f.file.path,
                    "source": f.file.source,
                    "commit": f.commit,
                    "size": f.size,
                    "sha256": f.sha256,
                    "cached": str(f.cached),
                }
                for f in fetched
            ],
        },
    )

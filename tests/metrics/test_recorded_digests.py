"""A metric network's weights file is checked against the full sha256 recorded for it (SwAV's file name carries no
hash prefix): another file is refused in one line, naming the file, both digests and the fix. Tiny stand-ins: a
one-layer network under a pinned name, and a few bytes as SwAV's file."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mindhier.errors import WeightsError
from mindhier.fetch import download
from mindhier.fetch.sources import weight_files
from mindhier.fileio import sha256_file
from mindhier.metrics import metric_networks
from mindhier.metrics.metric_networks import PINNED, load_pinned


def tiny_spec(filename: str, sha256: str | None) -> metric_networks.PinnedNetwork:
    return dataclasses.replace(
        PINNED["alexnet"], key="tiny", build=lambda init: nn.Linear(2, 3), filename=filename, sha256=sha256
    )


@pytest.fixture
def hub(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.manual_seed(0)
    torch.save(nn.Linear(2, 3).state_dict(), tmp_path / "checkpoints" / "tiny.pth")
    return tmp_path


def test_a_file_with_the_recorded_digest_loads_unflagged(hub):
    sha = sha256_file(hub / "checkpoints" / "tiny.pth")
    loaded = load_pinned(tiny_spec("tiny.pth", sha), {}, hub)
    assert loaded.model is not None and loaded.note == "" and f"sha256 {sha[:12]}" in loaded.weights


def test_a_file_with_another_digest_is_refused_in_one_line_naming_both_and_the_fix(hub):
    path = hub / "checkpoints" / "tiny.pth"
    recorded = "0" * 64
    with pytest.raises(WeightsError) as refused:
        load_pinned(tiny_spec("tiny.pth", recorded), {}, hub)
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert str(path) in message and sha256_file(path) in message and recorded in message
    assert "mindhier fetch weights metrics" in message and "--weights tiny=PATH" in message
    with pytest.raises(WeightsError, match="is recorded as 0000"):  # a file given by hand is checked alike
        load_pinned(tiny_spec("tiny.pth", recorded), {"tiny": str(path)}, hub)


def test_without_a_recorded_digest_the_file_loads_and_its_digest_is_recorded(hub):
    sha = sha256_file(hub / "checkpoints" / "tiny.pth")
    loaded = load_pinned(tiny_spec("tiny.pth", None), {}, hub)
    assert loaded.model is not None and f"sha256 {sha[:12]}" in loaded.weights


def test_swav_is_pinned_by_its_recorded_digest_when_loading_and_fetching(tmp_path, monkeypatch):
    """SwAV's entry carries `SWAV_SHA256`; with a digest patched in, a file of other bytes is refused by both the
    evaluator's loader (before any unpickling) and `mindhier fetch weights metrics`."""
    assert PINNED["swav"].sha256 == metric_networks.SWAV_SHA256 and PINNED["swav"].published_sha256 is None
    swav_file = tmp_path / "checkpoints" / PINNED["swav"].filename
    swav_file.parent.mkdir()
    swav_file.write_bytes(b"not SwAV's weights")
    published = "ab" * 32
    monkeypatch.setitem(PINNED, "swav", dataclasses.replace(PINNED["swav"], sha256=published))

    with pytest.raises(WeightsError, match=f"{swav_file} has sha256 {sha256_file(swav_file)}, but .* {published}"):
        load_pinned(PINNED["swav"], {}, tmp_path)

    fetched = next(f for f in weight_files(["metrics"]) if f.url == PINNED["swav"].url)
    assert fetched.sha256 == published and fetched.path == f"checkpoints/{PINNED['swav'].filename}"
    caches = download.Caches(hub=None, torch_hub=tmp_path)
    with pytest.raises(download.FetchError) as refused:
        download.gather([fetched], caches, str, is_offline=True, say=lambda _: None)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and str(swav_file) in message
    assert sha256_file(swav_file) in message and published in message and "fetch again" in message
    assert swav_file.read_bytes() == b"not SwAV's weights"  # a file the fetch did not download stays

    monkeypatch.setitem(PINNED, "swav", dataclasses.replace(PINNED["swav"], sha256=sha256_file(swav_file)))
    fetched = next(f for f in weight_files(["metrics"]) if f.url == PINNED["swav"].url)
    assert download.gather([fetched], caches, str, is_offline=True, say=lambda _: None)[0].sha256 == fetched.sha256

"""A training call's run folder is provisional until its first resume point: a user error takes back what the call
wrote (only that), so the corrected command runs again; a resumable folder and other errors keep everything."""

from __future__ import annotations

import pytest

from mindhier import run_layout
from mindhier.cli.provisional_run import provisional_run
from mindhier.errors import ConfigError


def _start_a_run(out):
    out.mkdir(exist_ok=True)
    (out / run_layout.CONFIG).write_text("{}")
    (out / "logs").mkdir()
    (out / "logs" / "train.jsonl").write_text("")


def test_a_user_error_removes_the_folder_the_call_made(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError), provisional_run(out):
        _start_a_run(out)
        raise ConfigError("bad betas; fix them")
    assert not out.exists()


def test_a_user_error_keeps_what_was_there_before(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError), provisional_run(out):
        _start_a_run(out)
        raise ConfigError("bad betas; fix them")
    assert sorted(p.name for p in out.rglob("*")) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_a_resumable_run_is_kept(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError), provisional_run(out):
        _start_a_run(out)
        (out / run_layout.RESUME_DIR / run_layout.resume_point_name(5)).mkdir(parents=True)
        raise ConfigError("later failure; fix it")
    assert (out / run_layout.CONFIG).is_file()


def test_a_crash_that_is_not_a_user_error_keeps_the_folder_for_resume(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), provisional_run(out):
        _start_a_run(out)
        raise KeyboardInterrupt
    assert (out / run_layout.CONFIG).is_file()

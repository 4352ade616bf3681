"""Progress bars go to stderr only on a terminal (or when asked for), never with --quiet: a captured or redirected
stderr holds nothing but warnings and the one-line error."""

from __future__ import annotations

import argparse
import io

from mindhier.cli.options import PROGRESS_VARIABLE, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv(PROGRESS_VARIABLE, raising=False)
    loud, quiet = argparse.Namespace(quiet=False), argparse.Namespace(quiet=True)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress_bar(loud).enabled
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_bar(loud).enabled and not progress_bar(quiet).enabled


def test_bars_into_a_log_when_asked(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.setenv(PROGRESS_VARIABLE, "1")
    assert progress_bar(argparse.Namespace(quiet=False)).enabled
    assert not progress_bar(argparse.Namespace(quiet=True)).enabled


def test_a_disabled_bar_writes_nothing(monkeypatch, capsys):
    monkeypatch.delenv(PROGRESS_VARIABLE, raising=False)
    bar = progress_bar(argparse.Namespace(quiet=False))  # capsys: stderr is not a terminal
    for done in range(4):
        bar("task", done, 3)
    bar.close()
    assert capsys.readouterr().err == ""

"""`--sessions`: training on a subject's first N scan sessions (or a list), the test split untouched."""

from __future__ import annotations

import argparse
import contextlib
import io

import numpy as np
import pytest

from mindhier.cli import main
from mindhier.cli.options import id_range, session_list
from mindhier.config import DataConfig, describe_sessions
from mindhier.data.nsd import open_dataset
from mindhier.errors import DataError


def _design(result, subject):
    return result.subjects[subject].design


def test_sessions_keep_only_those_sessions_training_trials_and_never_change_the_test_split(tiny_dataset):
    _, result = tiny_dataset
    design = _design(result, 2)
    with open_dataset(result.root, subjects=[2]) as everything:
        all_train = everything.split(2, "train")
        all_test = everything.split(2, "test")
        assert everything.recording(2).sessions == tuple(range(1, design.n_sessions + 1))
    for sessions in [(1,), (1, 2), (1, 3)]:
        with open_dataset(result.root, DataConfig(sessions=sessions), subjects=[2]) as limited:
            train, val, test = (limited.split(2, name) for name in ("train", "val", "test"))
            rows = np.concatenate([*train.rows_N, *val.rows_N])
            assert set(design.session_T[rows].tolist()) == set(sessions)
            # every training trial of those sessions is there (train + val), and nothing else
            wanted = np.flatnonzero(np.isin(design.session_T, sessions) & ~design.is_test_T)
            assert sorted(rows.tolist()) == sorted(wanted.tolist())
            assert not set(train.image_index_N) & set(test.image_index_N)
            assert not set(train.image_index_N) & set(val.image_index_N)
            assert len(train) < len(all_train)
            np.testing.assert_array_equal(test.image_index_N, all_test.image_index_N)
            np.testing.assert_array_equal(test.voxels(), all_test.voxels())


def test_more_sessions_than_the_subject_has_is_one_clear_error(tiny_dataset):
    _, result = tiny_dataset
    n = _design(result, 1).n_sessions
    with pytest.raises(DataError, match=rf"subject 1 has {n} training sessions .* --sessions {n + 1} asks for session"):
        open_dataset(result.root, DataConfig(sessions=tuple(range(1, n + 2))), subjects=[1])
    with pytest.raises(DataError, match=r"--sessions 2,99 asks for session 99"):
        open_dataset(result.root, DataConfig(sessions=(2, 99)), subjects=[1])


def test_the_cli_refuses_too_many_sessions_with_one_line(tiny_dataset, tmp_path, capsys):
    _, result = tiny_dataset
    out = tmp_path / "run"
    code = main(
        ["train", "encoder", "--preset", "tiny", "--data", str(result.root), "--sessions", "50", "--out", str(out)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--sessions 50 asks for session" in err[0] and "pass at most" in err[0]
    assert not (out / "encoder.safetensors").exists()


def test_data_info_counts_sessions(tiny_dataset):
    _, result = tiny_dataset
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["data", "info", str(result.root), "--no-verify-images", "--sessions", "2"]) == 0
    n = _design(result, 1).n_sessions
    assert f"{n} training sessions (using 1-2)" in printed.getvalue()


def test_session_and_subject_options_parse_counts_lists_and_ranges():
    assert session_list("3") == (1, 2, 3)
    assert session_list("1,3,5") == (1, 3, 5)
    assert session_list("2..4") == (2, 3, 4)
    assert session_list("7,") == (7,)
    for bad in ("0", "x", "1,1", "4..2"):
        with pytest.raises(argparse.ArgumentTypeError):
            session_list(bad)
    assert id_range("1..8") == list(range(1, 9))
    assert id_range("5") == [5]
    assert describe_sessions(()) == "all" and describe_sessions((1, 2, 3)) == "1-3"
    assert describe_sessions((1, 3)) == "1,3"

"""Output folders are owned (one writer, nothing of the user's replaced), and what the disk refuses is one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from mindhier.cli import main
from mindhier.errors import MindhierError
from mindhier.fileio import refuse_existing, remove_stale_temporaries, staged_directory
from mindhier.output_lock import FolderBusyError, hold_output, lock_path
from mindhier.records import contained_path, read_record

HOLDER = (
    "import sys, time\n"
    "from mindhier.output_lock import hold_output\n"
    "with hold_output(sys.argv[1], 'the holder'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


def _start_holder(out):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_while_the_first_lives_and_admitted_after_it_dies(tmp_path):
    out = tmp_path / "out"
    holder = _start_holder(out)
    try:
        with pytest.raises(FolderBusyError, match=rf"pid {holder.pid}: the holder"), hold_output(out):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel releases the lock
        holder.wait()
    with hold_output(out):
        assert lock_path(out).is_file()
    assert not lock_path(out).exists()  # removed on release


COMMANDS_THAT_WRITE = [
    ["simulate", "--out", "{out}"],
    ["features", "--data", "{data}", "--out", "{out}"],
    ["train", "encoder", "--data", "{data}", "--out", "{out}"],
    ["train", "tokenizer", "--data", "{data}", "--out", "{out}"],
    ["train", "generator", "--data", "{data}", "--encoder", "e", "--tokenizer", "t", "--out", "{out}"],
    ["train", "diffusion", "--data", "{data}", "--encoder", "e", "--tokenizer", "t", "--out", "{out}"],
    ["tokenize", "--data", "{data}", "--run", "t", "--out", "{out}"],
    ["tokenize", "--data", "{data}", "--run", "t"],  # its default cache folder under the dataset
    ["reconstruct", "--generator", "g", "--data", "{data}", "--out", "{out}"],
    ["ceiling", "--tokenizer", "t", "--data", "{data}", "--out", "{out}"],
    ["report", "r", "--out", "{out}"],
    ["eval", "recons", "--recons", "r", "--data", "{data}", "--out", "{out}"],
    ["eval", "encoder", "--run", "e", "--data", "{data}", "--out", "{out}"],
    ["eval", "table", "m.json", "--out", "{out}"],
    ["export", "--recons", "r", "--out", "{out}"],
    ["fetch", "nsd", "--subjects", "1", "--to", "{out}"],
    ["fetch", "weights", "all", "--to", "{out}"],
    ["bench", "simulate", "--out", "{out}"],
    ["bench", "sampler", "--out", "{out}"],
    ["bench", "decoders", "--out", "{out}"],
    ["demo", "--out", "{out}"],
    ["pretrain", "tokenizer", "--out", "{out}"],
    ["pretrain", "generator", "--out", "{out}"],
]


@pytest.mark.parametrize(
    "argv", COMMANDS_THAT_WRITE, ids=lambda a: " ".join(a[:2]) + (" default" if "{out}" not in a else "")
)
def test_every_command_that_writes_takes_its_folder_lock(argv, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()  # an existing dataset folder (the default cache folder is locked only inside one)
    out = tmp_path / "out" if "{out}" in argv else data / "tokens"
    holder = _start_holder(out)
    try:
        code = main([a.format(out=out, data=data) for a in argv])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "is being written by another mindhier process" in err[0] and str(holder.pid) in err[0]
    assert not out.exists()  # refused before anything was written


def _simulate_process(out):
    command = [sys.executable, "-m", "mindhier", "simulate", "--preset", "tiny", "--out", str(out), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_simulations_into_one_folder_one_wins_and_the_data_is_whole(tmp_path, capsys):
    out = tmp_path / "data"
    first, second = _simulate_process(out), _simulate_process(out)
    results = [(p.wait(timeout=600), p.stderr.read()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "another mindhier process" in loser or "not empty" in loser
    assert main(["data", "info", str(out)]) == 0  # the winner's dataset, complete and valid


def test_a_read_only_disk_is_one_line_and_leaves_the_old_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "data"
    assert main(["simulate", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    before = sorted(p.name for p in out.iterdir())
    real_replace = os.replace

    def refuse(src, dst, *args, **kwargs):
        if str(src).endswith(".partial"):  # publishing the new folder fails
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", refuse)
    capsys.readouterr()
    code = main(["simulate", "--preset", "tiny", "--out", str(out), "--overwrite", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert str(out) in err[0] and "EROFS" in err[0] and "writable" in err[0]
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging folder left behind


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line_and_the_run_resumes(tiny_dataset, tmp_path, capsys, monkeypatch):
    import mindhier.checkpoint as checkpoint

    _, result = tiny_dataset
    argv = ["train", "tokenizer", "--preset", "tiny", "--data", str(result.root), "--quiet", "--threads", "1"]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    real_save, calls = checkpoint.save_file, []

    def full_disk(state, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real_save(state, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    capsys.readouterr()
    out = tmp_path / "run"
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ENOSPC" in err[0] and "--resume" in err[0]
    assert not list(out.glob(".*.tmp"))  # the half-written weights went with the failed write
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    for name in ("tokenizer.safetensors", "tokenizer_last.safetensors"):
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes()


def test_overwrite_replaces_a_folder_only_when_the_new_one_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(MindhierError, match="--overwrite"), staged_directory(out):
        pass
    with pytest.raises(RuntimeError), staged_directory(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_a_crashed_writers_staging_is_cleaned_by_the_next_writer(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.abc123.partial"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"x")
    other = tmp_path / ".unrelated.partial"
    other.mkdir()
    with staged_directory(out) as staging:
        (staging / "a.txt").write_text("a")
    assert not stale.exists() and other.exists()  # only this folder's leftovers


def test_stale_temporaries_are_only_the_ones_atomic_writes_leave(tmp_path):
    (tmp_path / ".weights.safetensors.k3j_x9a2.tmp").write_bytes(b"x")
    (tmp_path / ".notes.tmp").write_text("the user's")
    assert remove_stale_temporaries(tmp_path) == [".weights.safetensors.k3j_x9a2.tmp"]
    assert (tmp_path / ".notes.tmp").exists()


def test_paths_in_files_stay_inside_their_folder(tmp_path):
    (tmp_path / "images").mkdir()
    assert contained_path(tmp_path, "images", "store") == (tmp_path / "images").resolve()
    for stored in ("../elsewhere", "/etc", "images/../../x"):
        with pytest.raises(MindhierError, match="outside"):
            contained_path(tmp_path, stored, "store")
    with pytest.raises(MindhierError, match="not a path"):
        contained_path(tmp_path, 7, "store")
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(MindhierError, match="outside"):
        contained_path(tmp_path, "link", "store")


def test_a_run_input_outside_its_scope_is_refused_and_given_explicitly(tmp_path):
    from mindhier.run_layout import resolve_input

    run = tmp_path / "a" / "b" / "generator"
    run.mkdir(parents=True)
    assert resolve_input(run, "../encoder") == (tmp_path / "a" / "b" / "encoder").resolve()
    assert resolve_input(run, "../../x/encoder") == (tmp_path / "a" / "x" / "encoder").resolve()
    with pytest.raises(MindhierError, match="--encoder"):
        resolve_input(run, "../../../../etc", "encoder_run", "--encoder")


def test_records_are_checked_against_their_schema(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"key": "k", "scales": 3}')
    with pytest.raises(MindhierError, match=r"'scales' should be list, found int"):
        read_record(path, "token-cache metadata", {"key": str, "scales": list})
    with pytest.raises(MindhierError, match=r"lacks the key 'n'"):
        read_record(path, "record", {"n": int})
    path.write_text("[1, 2]")
    with pytest.raises(MindhierError, match="not an object"):
        read_record(path, "record", {})


def test_refuse_existing(tmp_path):
    path = tmp_path / "bench.json"
    refuse_existing(path, False)
    path.write_text("{}")
    with pytest.raises(MindhierError, match="--overwrite"):
        refuse_existing(path, False)
    refuse_existing(path, True)


def test_a_second_hold_in_the_same_process_is_refused_and_a_reused_lock_file_works(tmp_path):
    out = tmp_path / "out"
    with hold_output(out):
        pass
    with hold_output(out), pytest.raises(FolderBusyError), hold_output(out):  # flock is per open file
        pass


def test_a_folder_reached_through_a_symlink_or_dots_has_one_lock(tmp_path):
    out = tmp_path / "enc4"
    out.mkdir()
    (tmp_path / "enc4link").symlink_to(out, target_is_directory=True)
    (tmp_path / "sub").mkdir()
    assert lock_path(tmp_path / "enc4link") == lock_path(out) == lock_path(tmp_path / "sub" / ".." / "enc4")
    busy = pytest.raises(FolderBusyError, match="enc4link is being written")
    with hold_output(out), busy, hold_output(tmp_path / "enc4link"):
        pass


def test_published_files_and_folders_get_the_usual_permissions_not_the_temporary_ones(tmp_path):
    import torch

    from mindhier.checkpoint import save_state
    from mindhier.fileio import write_json

    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        save_state(tmp_path / "w.safetensors", {"w": torch.zeros(2)})  # safetensors itself creates files 0600
        with staged_directory(tmp_path / "folder") as staging:
            (staging / "b.txt").write_text("b")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755


def test_a_umask_set_after_import_is_the_one_published_files_follow(tmp_path):
    from mindhier.fileio import write_json

    umask = os.umask(0o077)  # a private umask, set long after mindhier.fileio was imported
    try:
        write_json(tmp_path / "private.json", {})
        with staged_directory(tmp_path / "private") as staging:
            (staging / "b.txt").write_text("b")
    finally:
        os.umask(umask)
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700

import pytest

from mindhier.errors import MindhierError
from mindhier.fileio import atomic_path, read_json, staged_directory, write_json


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"step": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"step": ')  # half-written
        raise RuntimeError("crash")
    assert read_json(target, "state") == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_staged_directory_publishes_only_complete_folders(tmp_path):
    out = tmp_path / "out"
    with staged_directory(out) as staging:
        (staging / "a.txt").write_text("new")
        assert not out.exists()  # nothing visible until the block ends
    assert (out / "a.txt").read_text() == "new"

    with pytest.raises(MindhierError, match="not empty"), staged_directory(out):
        pass
    with pytest.raises(RuntimeError), staged_directory(out, overwrite=True) as staging:
        (staging / "a.txt").write_text("partial")
        raise RuntimeError("crash")
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    with staged_directory(out, overwrite=True) as staging:
        (staging / "b.txt").write_text("replacement")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(MindhierError, match="manifest not found"):
        read_json(tmp_path / "missing.json", "manifest")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(MindhierError, match=r"bad\.json is not valid JSON"):
        read_json(bad, "manifest")


def test_a_full_disk_names_the_file_being_written(tmp_path):
    import errno

    from safetensors import SafetensorError
    from torch.distributed.checkpoint.api import CheckpointException

    from mindhier.cli.disk_errors import os_error_line
    from mindhier.fileio import atomic_path, write_failure

    target = tmp_path / "run" / "encoder.safetensors"
    with pytest.raises(OSError) as caught, atomic_path(target):  # write() fails naming no file
        raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert not target.exists() and not list(target.parent.iterdir())  # nothing half-written left
    line = os_error_line(caught.value)
    assert str(target) in line and "disk is full" in line

    safetensors_text = SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "x" })'
    )
    dcp = CheckpointException("save failed", {0: OSError(errno.ENOSPC, "No space left on device")})
    for failure in (safetensors_text, dcp):
        converted = write_failure(failure, target)
        assert (converted.errno, converted.filename) == (errno.ENOSPC, str(target))
    assert write_failure(RuntimeError("file write failed"), target).errno == errno.EIO

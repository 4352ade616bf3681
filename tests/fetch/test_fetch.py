"""`mindhier fetch`: offline errors, a dataset from a local Hub cache, digests refused, weights into the caches."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_SESSIONS, write_hub_cache
from mindhier.cli import main
from mindhier.data import layout
from mindhier.data.info import describe_dataset
from mindhier.fetch import download
from mindhier.fetch.sources import MINDEYE2_REPO, RemoteFile, nsd_files, weight_files


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def fetch(argv, capsys):
    code = main(["fetch", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_fetch_names_every_missing_file_in_one_line(tmp_path, offline, capsys):
    code, _, err = fetch(["nsd", "--subjects", "1", "--to", str(tmp_path / "nsd"), "--cache", str(tmp_path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mindhier: error: offline: 44 of 44 files")
    for name in ("betas_all_subj01_fp32_renorm.hdf5", "wds/subj01/train/39.tar", "wds/subj01/new_test/0.tar"):
        assert f"{name} from https://huggingface.co/datasets/{MINDEYE2_REPO}/resolve/main/{name}" in lines[0]
        assert str(tmp_path / "nsd" / name) in lines[0]
    assert "wds/subj01/train/40.tar" not in lines[0] and "wds/subj01/test/0.tar" not in lines[0]
    assert not (tmp_path / "nsd").exists()

    code, _, err = fetch(["weights", "all", "--to", str(tmp_path / "w")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    for name in ("alexnet-owt-7be5be79.pth", "inception_v3_google-0cc3c7bd.pth", "swav_800ep_pretrain.pth.tar"):
        assert str(tmp_path / "w" / "torch" / "hub" / "checkpoints" / name) in err
    for repo in ("yresearch/Switti", "yresearch/VQVAE-Switti", "FoundationVision/var", "timm/vit_large_patch14_clip"):
        assert f"https://huggingface.co/{repo}" in err
    assert not (tmp_path / "w" / download.MANIFEST).exists()


def test_nsd_file_list_follows_subjects_sessions_and_old_test():
    files = [f.filename for f in nsd_files([2, 4], sessions=None, with_old_test=True)]
    assert sum(f.startswith("wds/subj02/train/") for f in files) == 40
    assert sum(f.startswith("wds/subj04/train/") for f in files) == 30  # subject 4 had 30 sessions
    assert "wds/subj04/test/0.tar" in files and files.count(layout.NSD_IMAGES_HDF5) == 1
    assert len([f for f in nsd_files([1], sessions=2) if "/train/" in f.filename]) == 2
    with pytest.raises(Exception, match="subject 4 has 30 training sessions"):
        nsd_files([4], sessions=31)


def test_fetch_nsd_from_a_local_hub_cache_gives_a_dataset_and_resumes(tmp_path, mindeye2_standin, offline, capsys):
    cache = tmp_path / "hf"
    write_hub_cache(cache, MINDEYE2_REPO, mindeye2_standin, repo_type="dataset")
    dest = tmp_path / "nsd"
    argv = ["nsd", "--subjects", "1", "--sessions", str(TINY_SESSIONS), "--with-old-test", "--to", str(dest)]
    argv += ["--cache", str(cache)]
    code, out, err = fetch(argv, capsys)
    assert code == 0, err
    assert f"placed {len(mindeye2_standin)} files" in out
    summary = describe_dataset(dest)
    assert summary["manifest"] is False and summary["subjects"]["1"]["train_sessions"] == TINY_SESSIONS
    assert (
        summary["subjects"]["1"]["splits"]["test_old"]["images"] < summary["subjects"]["1"]["splits"]["test"]["images"]
    )
    manifest = json.loads((dest / download.MANIFEST).read_text())
    assert {f["path"] for f in manifest["files"]} == set(mindeye2_standin)
    assert all(f["commit"] and len(f["sha256"]) == 64 for f in manifest["files"])
    for name, original in mindeye2_standin.items():
        assert (dest / name).read_bytes() == original.read_bytes()

    # a second fetch keeps what is in place; a file changed in the folder is refused, not overwritten
    code, out, _ = fetch(argv, capsys)
    assert code == 0 and "placed 0 files" in out
    (dest / layout.NSD_CAPTIONS_NPY).unlink()
    (dest / layout.NSD_CAPTIONS_NPY).write_bytes(b"edited")
    code, _, err = fetch(argv, capsys)
    assert code == 2 and "already holds other versions of 1 files (COCO_73k_annots_curated.npy" in err
    assert (dest / layout.NSD_CAPTIONS_NPY).read_bytes() == b"edited"
    code, _, _ = fetch([*argv, "--overwrite"], capsys)
    assert (
        code == 0
        and (dest / layout.NSD_CAPTIONS_NPY).read_bytes() == mindeye2_standin[layout.NSD_CAPTIONS_NPY].read_bytes()
    )


def test_a_file_whose_digest_is_wrong_is_refused_and_nothing_is_written(tmp_path, mindeye2_standin, offline, capsys):
    cache = tmp_path / "hf"
    write_hub_cache(cache, MINDEYE2_REPO, mindeye2_standin, repo_type="dataset", wrong={"wds/subj01/train/2.tar"})
    dest = tmp_path / "nsd"
    argv = ["nsd", "--subjects", "1", "--sessions", str(TINY_SESSIONS), "--with-old-test", "--to", str(dest)]
    code, _, err = fetch([*argv, "--cache", str(cache)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "wds/subj01/train/2.tar has sha256" in err and "but the Hub published" in err
    assert not dest.exists() or not any(dest.rglob("*"))


def test_pinned_digests_are_checked(tmp_path):
    """A full sha256 pin and torch.hub's name prefix are both enforced."""
    good = tmp_path / "checkpoints" / "net-abc.pth"
    good.parent.mkdir()
    good.write_bytes(b"weights")
    from mindhier.fileio import sha256_file

    sha = sha256_file(good)
    caches = download.Caches(hub=None, torch_hub=tmp_path)
    ok = RemoteFile("net", "url", "checkpoints/net-abc.pth", url="https://x/net.pth", sha256_prefix=sha[:8])
    assert download.gather([ok], caches, str, is_offline=True, say=lambda _: None)[0].sha256 == sha
    for bad in (
        RemoteFile("net", "url", "checkpoints/net-abc.pth", url="https://x/net.pth", sha256_prefix="00000000"),
        RemoteFile("net", "url", "checkpoints/net-abc.pth", url="https://x/net.pth", sha256="0" * 64),
    ):
        with pytest.raises(download.FetchError, match="not the published file"):
            download.gather([bad], caches, str, is_offline=True, say=lambda _: None)
    assert good.read_bytes() == b"weights"  # a file the fetch did not download is never deleted


def test_fetch_weights_from_local_caches_records_them(tmp_path, offline, capsys):
    root = tmp_path / "w"
    hub = root / "huggingface" / "hub"
    hub_files = [f for f in weight_files(["switti", "var-vqvae", "teacher-clip"])]
    for f in hub_files:
        write_hub_cache(hub, f.repo_id, {f.filename: f"stand-in of {f.name}".encode()})
    code, out, err = fetch(["weights", "switti", "var-vqvae", "teacher-clip", "--to", str(root)], capsys)
    assert code == 0, err
    manifest = json.loads((root / download.MANIFEST).read_text())
    assert [f["name"] for f in manifest["files"]] == [f.name for f in hub_files]
    assert f"HF_HUB_CACHE={hub}" in out

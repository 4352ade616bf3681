"""`mindhier export` and `eval recons` on a tensor file: the round trip is exact, and bad inputs are one line.

A reconstruction folder (noisy copies of the tiny dataset's test images, written as `mindhier reconstruct` writes
them) is exported to MindEye2's `*_all_recons.pt` and NSD-named PNGs; `eval recons` on the exported tensor must
give every metric of the folder exactly. The metric networks are a tiny stand-in (the judge is off), so the
evaluator runs in a second; pixel metrics and the brain correlation are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mindhier.cli import main
from mindhier.data import layout
from mindhier.data.nsd import open_dataset
from mindhier.errors import DataError
from mindhier.fileio import sha256_file
from mindhier.metrics import extractors as extractors_module
from mindhier.metrics.extractors import ExtractorInfo
from mindhier.metrics.recons_tensor import RANGE_TOLERANCE, read_recons_tensor

SUBJECT = 1


class PixelFeatures:
    """A stand-in metric network: the image averaged down to 8 × 8, flattened."""

    info = ExtractorInfo("pixels8", "proxy", "pixels", "-", "injected", 8, "both", "proxy, test")

    def __call__(self, images_N3HW: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(images_N3HW, size=(8, 8), mode="area").flatten(1)


@pytest.fixture(autouse=True)
def stand_in_networks(monkeypatch):
    monkeypatch.setattr(extractors_module, "build_extractors", lambda **_: [PixelFeatures()])


@pytest.fixture(scope="module")
def split(tiny_dataset):
    """(dataset folder, the test split's stimulus indices, its true images uint8 [N, H, W, 3])."""
    _, result = tiny_dataset
    with open_dataset(result.root, subjects=[SUBJECT]) as dataset:
        items = dataset.split(SUBJECT, "test")
        return result.root, np.asarray(items.image_index_N), items.images()


@pytest.fixture(scope="module")
def recons(split, tmp_path_factory):
    """A reconstruction folder as `mindhier reconstruct` writes it: the truths blended with seeded noise."""
    _, indices, truths = split
    folder = tmp_path_factory.mktemp("recons") / "method_a"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, truths.shape)
    images = (0.6 * truths + 0.4 * noise).round().astype(np.uint8)
    for index, image in zip(indices, images, strict=True):
        Image.fromarray(image).save(folder / layout.image_png_name(int(index)))
    manifest = {"subject": SUBJECT, "split": "test", "stimulus_indices": [int(i) for i in indices], "protocol": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def exported(recons, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "for_mindeye2"
    assert main(["export", "--recons", str(recons), "--out", str(out), "--quiet"]) == 0
    return out


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def eval_recons(capsys, recons, data, out, *extra) -> dict:
    code, _, err = run(capsys, "eval", "recons", "--recons", recons, "--data", data, "--out", out, "--no-judge", *extra)
    assert code == 0, err
    return json.loads((Path(out) / "metrics.json").read_text())


def test_export_writes_the_split_in_order_with_the_png_values(exported, recons, split):
    _, indices, _ = split
    images_N3HW = torch.load(exported / "method_a_all_recons.pt", weights_only=True)
    assert images_N3HW.dtype == torch.float32 and images_N3HW.is_contiguous()
    n, height, width = len(indices), *Image.open(next(recons.glob("image_*.png"))).size[::-1]
    assert tuple(images_N3HW.shape) == (n, 3, height, width)
    assert np.array_equal(np.load(exported / "method_a_image_indices.npy"), indices)
    # the PNGs are named by NSD's 1-based 73k ID, one per split item, and the tensor's rows follow the split
    assert sorted(p.name for p in (exported / "png").iterdir()) == [f"nsd{i + 1:05d}.png" for i in indices]
    for row, index in enumerate(indices):
        source = np.array(Image.open(recons / layout.image_png_name(int(index))))
        png = np.asarray(Image.open(exported / "png" / f"nsd{index + 1:05d}.png"))
        assert np.array_equal(png, source)
        assert torch.equal(images_N3HW[row], torch.from_numpy(source).permute(2, 0, 1).float() / 255)
    record = json.loads((exported / "export_manifest.json").read_text())
    assert (record["subject"], record["split"], record["n_images"]) == (SUBJECT, "test", n)
    assert (record["height"], record["width"]) == (height, width)
    assert record["stimulus_indices"] == [int(i) for i in indices]
    assert record["tensor_sha256"] == sha256_file(exported / "method_a_all_recons.pt")
    assert record["sha256"] == {name: sha256_file(exported / name) for name in record["sha256"]}
    assert set(record["sha256"]) == {p.name for p in exported.iterdir()} - {"export_manifest.json", "png"}
    assert record["source"] == str(recons.resolve())


def test_eval_of_the_exported_tensor_equals_the_folders_scores_exactly(exported, recons, split, tmp_path, capsys):
    data, indices, _ = split
    tensor = exported / "method_a_all_recons.pt"
    folder = eval_recons(capsys, recons, data, tmp_path / "folder")
    from_tensor = eval_recons(
        capsys,
        tensor,
        data,
        tmp_path / "tensor",
        "--subject",
        SUBJECT,
        "--split",
        "test",
        "--indices",
        exported / "method_a_image_indices.npy",
    )
    assert {"pixcorr", "ssim", "pixels8.two_way", "pixels8.corr_distance"} <= set(folder["metrics"])
    assert folder["brain_correlation"]["rois"], "the tiny world's encoding model scores the brain correlation"
    assert from_tensor["metrics"] == folder["metrics"]
    assert from_tensor["brain_correlation"] == folder["brain_correlation"]
    per_image = (tmp_path / "tensor" / "per_image.csv").read_text()
    assert per_image == (tmp_path / "folder" / "per_image.csv").read_text()
    assert [int(line.split(",")[0]) for line in per_image.splitlines()[1:]] == [int(i) for i in indices]
    source = from_tensor["recons_source"]
    assert source["kind"] == "tensor" and source["path"] == str(tensor.resolve())
    assert source["sha256"] == sha256_file(tensor)
    assert from_tensor["protocol"]["reconstruction"].startswith("external")
    assert folder["recons_source"]["kind"] == "folder"

    # the same images as uint8 [N, 3, H, W] (0..255, divided by 255), its order checked against the export's manifest
    levels = torch.load(tensor, weights_only=True).mul(255).round().to(torch.uint8)
    torch.save(levels, tmp_path / "levels.pt")
    from_levels = eval_recons(
        capsys,
        tmp_path / "levels.pt",
        data,
        tmp_path / "levels",
        "--subject",
        SUBJECT,
        "--split",
        "test",
        "--indices",
        exported / "export_manifest.json",
    )
    assert from_levels["metrics"] == folder["metrics"]


def test_float_tensors_off_the_8_bit_levels_are_scored_as_given_and_rounding_overshoot_is_clamped(tmp_path):
    values = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    values[0, 0, 0, 0] = 1 + RANGE_TOLERANCE / 10  # a resize's rounding
    torch.save(values, tmp_path / "theirs_all_recons.pt")
    loaded = read_recons_tensor(tmp_path / "theirs_all_recons.pt")
    assert isinstance(loaded.images, torch.Tensor) and loaded.images.shape == (4, 3, 6, 6)
    assert loaded.source["clamped_values"] == 1 and float(loaded.images.max()) == 1.0
    assert "scored as given" in loaded.source["values"]
    assert torch.equal(loaded.images[1:], values[1:])
    assert np.array_equal(loaded.as_uint8_NHWC()[1], (values[1] * 255).round().byte().permute(1, 2, 0).numpy())
    torch.save(torch.full((2, 3, 4, 4), 7, dtype=torch.uint8), tmp_path / "levels.pt")
    assert read_recons_tensor(tmp_path / "levels.pt").images.shape == (2, 4, 4, 3)  # uint8 NHWC, as PNGs load


class Pickled:
    pass


def _tensor_cases(n: int) -> dict:
    good = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    nan = good.clone()
    nan[2, 1, 3, 3] = float("nan")
    return {
        "wrong N": (good[:-1], ["--subject", SUBJECT, "--split", "test"], f"holds {n - 1} reconstructions"),
        "channels last": (good.permute(0, 2, 3, 1), ["--subject", SUBJECT, "--split", "test"], "[N, 3, H, W]"),
        "NaN": (nan, ["--subject", SUBJECT, "--split", "test"], "NaN"),
        "beyond [0, 1]": (good * 2 - 0.5, ["--subject", SUBJECT, "--split", "test"], "outside [0, 1]"),
        "integers": (good.mul(255).long(), ["--subject", SUBJECT, "--split", "test"], "int64"),
        "not a tensor": ({"recons": good}, ["--subject", SUBJECT, "--split", "test"], "holds a dict"),
        "a pickled object": (Pickled(), ["--subject", SUBJECT, "--split", "test"], "never unpickled"),
        "not a torch file": (None, ["--subject", SUBJECT, "--split", "test"], "not a torch.save file"),
        "no subject": (good, ["--split", "test"], "pass --subject"),
        "no split": (good, ["--subject", SUBJECT], "pass --split"),
    }


@pytest.mark.parametrize("case", list(_tensor_cases(24)))
def test_a_bad_tensor_is_one_line_and_writes_nothing(case, split, tmp_path, capsys, monkeypatch):
    """With the judge on and an empty cache, as on a new machine: the tensor is refused before the judge trains."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    data, indices, _ = split
    value, extra, expected = _tensor_cases(len(indices))[case]
    if value is None:
        (tmp_path / "x_all_recons.pt").write_bytes(b"not a torch file")
    else:
        torch.save(value, tmp_path / "x_all_recons.pt")
    out = tmp_path / "eval"
    code, stdout, err = run(
        capsys, "eval", "recons", "--recons", tmp_path / "x_all_recons.pt", "--data", data, "--out", out, *extra
    )
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mindhier: error: ")
    assert expected in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["x_all_recons.pt"]  # no judge cache


def test_an_index_file_in_another_order_is_refused(exported, split, tmp_path, capsys):
    data, indices, _ = split
    np.save(tmp_path / "reversed.npy", indices[::-1])
    code, _, err = run(
        capsys,
        *("eval", "recons", "--recons", exported / "method_a_all_recons.pt", "--data", data, "--out", tmp_path / "e"),
        *("--subject", SUBJECT, "--split", "test", "--indices", tmp_path / "reversed.npy"),
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"at row 0 (file: {indices[-1]}, split: {indices[0]})" in err
    assert not (tmp_path / "e").exists()


def _damaged(recons: Path, tmp_path: Path, damage) -> Path:
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(recons, copy)
    damage(copy)
    return copy


def _drop_first_image(folder: Path) -> None:
    next(iter(sorted(folder.glob("image_*.png")))).unlink()


def _edit_manifest(change):
    def damage(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return damage


EXPORT_CASES = {
    "absent folder": (lambda recons, tmp: tmp / "absent", "not found"),
    "no manifest": (lambda r, t: _damaged(r, t, lambda f: (f / "manifest.json").unlink()), "manifest not found"),
    "corrupt manifest": (
        lambda r, t: _damaged(r, t, lambda f: (f / "manifest.json").write_text("{")),
        "not valid JSON",
    ),
    "manifest without subject": (lambda r, t: _damaged(r, t, _edit_manifest(lambda m: m.pop("subject"))), "subject"),
    "an image missing": (lambda r, t: _damaged(r, t, _drop_first_image), "1 reconstructions are missing"),
    "a corrupt image": (
        lambda r, t: _damaged(r, t, lambda f: sorted(f.glob("image_*.png"))[3].write_bytes(b"not a png")),
        "cannot read image",
    ),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_a_bad_reconstruction_folder_is_one_line_and_writes_nothing(case, recons, tmp_path, capsys):
    source, expected = EXPORT_CASES[case]
    before = set(tmp_path.iterdir())
    folder = source(recons, tmp_path)
    made = set(tmp_path.iterdir()) - before
    code, stdout, err = run(capsys, "export", "--recons", folder, "--out", tmp_path / "out", "--quiet")
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert set(tmp_path.iterdir()) == before | made  # no out, no staging folder, no lock file


def test_an_existing_export_is_replaced_only_with_overwrite(recons, exported, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(exported, out)
    (out / "mine.txt").write_text("keep")
    code, _, err = run(capsys, "export", "--recons", recons, "--out", out, "--name", "other", "--quiet")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "mine.txt").is_file() and not (out / "other_all_recons.pt").exists()
    code, _, err = run(capsys, "export", "--recons", recons, "--out", out, "--name", "other", "--overwrite", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "README_mindeye2.md",
        "export_manifest.json",
        "mindeye2_placeholders.json",
        "other_all_backbones.pt",
        "other_all_blurryrecons.pt",
        "other_all_clipvoxels.pt",
        "other_all_predcaptions.pt",
        "other_all_prior_out.pt",
        "other_all_recons.pt",
        "other_image_indices.npy",
        "png",
    ]
    assert torch.equal(
        torch.load(out / "other_all_recons.pt", weights_only=True),
        torch.load(exported / "method_a_all_recons.pt", weights_only=True),
    )
    code, _, err = run(capsys, "export", "--recons", recons, "--out", recons / "inside", "--quiet")
    assert code == 2 and "overlaps" in err and not (recons / "inside").exists()
    code, _, err = run(capsys, "export", "--recons", recons, "--out", tmp_path / "x", "--name", "../up", "--quiet")
    assert code == 2 and "--name" in err and not (tmp_path / "x").exists()


def test_read_recons_tensor_refuses_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_recons_tensor(tmp_path / "absent.pt")


def test_export_takes_its_output_folders_lock(recons, tmp_path, capsys):
    from mindhier.output_lock import hold_output

    out = tmp_path / "out"
    with hold_output(out):
        code, _, err = run(capsys, "export", "--recons", recons, "--out", out, "--quiet")
    assert code == 2 and "being written by another mindhier process" in err and not out.exists()

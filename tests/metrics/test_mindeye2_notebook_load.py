"""MindEye2's `final_evaluations.ipynb` reads our export: its loading path, replayed on a small export.

Read from MedARC-AI/MindEyeV2 at commit c1847188, `src/final_evaluations.ipynb`; "cell k" counts every cell of
the .ipynb from 0. The notebook runs in `MindEyeV2/src` and, for `--model_name NAME`, loads `--all_recons_path`
and `evals/NAME/NAME_all_{clipvoxels,blurryrecons,predcaptions}.pt` with a bare `torch.load` (cell 5; cell 52
adds `_all_backbones.pt` and `_all_prior_out.pt`). `notebook_reads` replays that from `evals/NAME/` under a
`src` folder, with the same file names and load calls, then the steps that use each file: the resize to 256 px
and the 0.75 / 0.25 blend (cell 7), the caption lookup of the figure (cell 8), the flatten of the CLIP tokens for
retrieval (cell 11) and UMAP (cell 52), and the `ToPILImage` conversion for the brain correlation (cell 32). It
asserts shapes, dtypes, ranges and that row i is the image of the i-th stimulus index in ascending order, so a
damaged export fails it (the last test).

Shape letters (docs/glossary.md): N images, 3 RGB, H/W pixels, Q tokens, D width.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from mindhier.cli import main
from mindhier.data import layout

MODEL = "mindhier_subj01"
STIMULI = [2950, 12, 737, 5000, 64, 1023]  # 0-based NSD indices, listed out of order as a manifest may list them
IMSIZE = 256  # cell 7
CLIP_SEQ_DIM, CLIP_EMB_DIM = 256, 1664  # cell 10: the ViT-bigG tokens the retrieval compares with
_CORE = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1.26
NUMPY_STR_ARRAY = [_CORE.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("<U1"))]


def recons_folder(root: Path, size: int) -> tuple[Path, np.ndarray]:
    """A reconstruction folder as `mindhier reconstruct` writes it, and its images uint8 [N, H, W, 3] in
    ascending stimulus index: seeded noise plus a level that grows with the index, so rows are told apart."""
    folder = root / f"recons_{size}"
    folder.mkdir()
    rng = np.random.default_rng(size)
    truths = {}
    for rank, index in enumerate(sorted(STIMULI)):
        noise = rng.integers(0, 200, (size, size, 3))
        truths[index] = (noise + 10 * rank).astype(np.uint8)
    for index in STIMULI:
        Image.fromarray(truths[index]).save(folder / layout.image_png_name(index))
    manifest = {"subject": 1, "split": "test", "stimulus_indices": STIMULI, "protocol": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, np.stack([truths[index] for index in sorted(STIMULI)])


def export_into_mindeye2_src(recons: Path, src: Path) -> Path:
    """`mindhier export` straight into the notebook's layout: MindEyeV2/src/evals/NAME/."""
    evals = src / "evals" / MODEL
    assert main(["export", "--recons", str(recons), "--out", str(evals), "--name", MODEL, "--quiet"]) == 0
    return evals


def notebook_reads(truths_NHW3: np.ndarray) -> dict:
    """Run from MindEyeV2/src (the working directory): load as cells 5 and 52 do, process as cells 7, 8, 11, 32
    and 52 do, and assert what those cells need. Returns the loaded and processed values."""
    model_name = MODEL
    all_recons_path = f"evals/{model_name}/{model_name}_all_recons.pt"  # --all_recons_path (cell 2)
    n = len(truths_NHW3)

    # cell 5: bare torch.load; with torch >= 2.6 that is weights_only=True, which every tensor file must pass
    all_recons = torch.load(all_recons_path)
    all_clipvoxels = torch.load(f"evals/{model_name}/{model_name}_all_clipvoxels.pt")
    all_blurryrecons = torch.load(f"evals/{model_name}/{model_name}_all_blurryrecons.pt")
    # a numpy array, as MindEye2's own: the notebook's torch 2.1 loaded it with weights_only=False; allow exactly
    # a numpy str array here (weights_only=False would unpickle anything)
    predcaptions_path = f"evals/{model_name}/{model_name}_all_predcaptions.pt"
    with torch.serialization.safe_globals(NUMPY_STR_ARRAY):
        all_predcaptions = torch.load(predcaptions_path, weights_only=True)
    model_name_plus_suffix = f"{model_name}_all_enhancedrecons"  # fixed in cell 5: cell 7 always blends

    for images in (all_recons, all_blurryrecons):
        assert isinstance(images, torch.Tensor) and images.dtype == torch.float32, type(images)
        assert images.ndim == 4 and images.shape[:2] == (n, 3), images.shape
        assert bool(torch.isfinite(images).all()) and float(images.min()) >= 0 and float(images.max()) <= 1
    # row i is the i-th stimulus in ascending index order (all_images.pt's np.unique order), value = uint8 / 255
    assert torch.equal(all_recons, torch.from_numpy(truths_NHW3).permute(0, 3, 1, 2).float() / 255)
    recons_as_loaded_N3HW = all_recons

    # cell 7: resize to 256 px where needed, then the blend
    if all_recons.shape[-1] != IMSIZE:
        all_recons = transforms.Resize((IMSIZE, IMSIZE))(all_recons).float()
    if all_blurryrecons.shape[-1] != IMSIZE:
        all_blurryrecons = transforms.Resize((IMSIZE, IMSIZE))(all_blurryrecons).float()
    resized_recons_N3HW = all_recons
    if "enhanced" in model_name_plus_suffix:
        all_recons = all_recons * 0.75 + all_blurryrecons * 0.25
    assert all_recons.shape == (n, 3, IMSIZE, IMSIZE) and all_recons.dtype == torch.float32
    # our blurry recons are a copy: the blend leaves the reconstructions (float32 rounding at most)
    assert torch.allclose(all_recons, resized_recons_N3HW, rtol=0, atol=1e-6)

    # cell 8: captions as figure titles, indexed with a list (a list of str raises TypeError here)
    title = str(all_predcaptions[[n - 1]])
    assert isinstance(all_predcaptions, np.ndarray) and all_predcaptions.shape == (n,)
    assert all_predcaptions.dtype.kind == "U" and title == "['']"

    # cell 11: rows of the retrieval head's tokens, flattened to the size of the images' ViT-bigG tokens
    picked = np.random.default_rng(0).choice(np.arange(n), size=min(n, 300), replace=False)
    clip_voxels_NF = all_clipvoxels[picked].float().reshape(len(picked), -1)
    assert clip_voxels_NF.shape == (len(picked), CLIP_SEQ_DIM * CLIP_EMB_DIM)

    # cell 52 (UMAP): the backbone and prior outputs, flattened to numpy like the clip voxels
    all_backbones = torch.load(f"evals/{model_name}/{model_name}_all_backbones.pt")
    all_prior_out = torch.load(f"evals/{model_name}/{model_name}_all_prior_out.pt")
    for tokens_NQD in (all_clipvoxels, all_backbones, all_prior_out):
        assert tokens_NQD.flatten(1).detach().cpu().numpy().shape == (n, CLIP_SEQ_DIM * CLIP_EMB_DIM)

    # cell 32: every (blended) row as a PIL image for the encoding model of the brain correlation
    recon_list = [transforms.ToPILImage()(all_recons[i].detach()) for i in range(all_recons.shape[0])]
    assert [image.size for image in recon_list] == [(IMSIZE, IMSIZE)] * n
    return {
        "recons_as_loaded": recons_as_loaded_N3HW,
        "blended": all_recons,
        "recon_list": recon_list,
        "clipvoxels": all_clipvoxels,
        "backbones": all_backbones,
        "prior_out": all_prior_out,
        "predcaptions": all_predcaptions,
        "predcaptions_path": predcaptions_path,
    }


@pytest.mark.parametrize("size", [IMSIZE, 48])
def test_final_evaluations_loads_our_export_in_order(size, tmp_path, monkeypatch):
    recons, truths_NHW3 = recons_folder(tmp_path, size)
    evals = export_into_mindeye2_src(recons, tmp_path / "MindEyeV2" / "src")
    monkeypatch.chdir(tmp_path / "MindEyeV2" / "src")
    read = notebook_reads(truths_NHW3)

    if size == IMSIZE:  # no resize: the blend returns our values bit for bit, and cell 32 sees our PNGs exactly
        assert torch.equal(read["blended"], read["recons_as_loaded"])
        for row, image in enumerate(read["recon_list"]):
            assert np.array_equal(np.asarray(image), truths_NHW3[row])
    # the stand-ins: NaN CLIP-token files of the expected shape that cost ~1 kB, empty captions
    for key, suffix in [("clipvoxels", "clipvoxels"), ("backbones", "backbones"), ("prior_out", "prior_out")]:
        tokens_NQD = read[key]
        assert tokens_NQD.shape == (len(STIMULI), CLIP_SEQ_DIM, CLIP_EMB_DIM) and tokens_NQD.dtype == torch.float16
        assert bool(tokens_NQD.isnan().all())
        assert (evals / f"{MODEL}_all_{suffix}.pt").stat().st_size < 4096
    assert read["predcaptions"].tolist() == [""] * len(STIMULI)
    # what torch 2.1, the notebook's pin, did by default reads the same array
    assert np.array_equal(torch.load(read["predcaptions_path"], weights_only=False), read["predcaptions"])

    # the sidecar names every stand-in and the cells to skip; the README says the same to a reader
    sidecar = json.loads((evals / "mindeye2_placeholders.json").read_text())
    loaded_beside = {f"{MODEL}_all_{kind}.pt" for kind in ("clipvoxels", "blurryrecons", "predcaptions")}
    assert set(sidecar["files"]) == loaded_beside | {f"{MODEL}_all_backbones.pt", f"{MODEL}_all_prior_out.pt"}
    assert [f for f, entry in sidecar["files"].items() if not entry["skip"]] == [f"{MODEL}_all_blurryrecons.pt"]
    assert set(sidecar["skip_cells"]) == {"10-12", "37-50", "52-55"}
    assert sidecar["all_recons_path"] == f"evals/{MODEL}/{MODEL}_all_recons.pt"
    readme = (evals / "README_mindeye2.md").read_text()
    assert all(f"cells {cells}" in readme for cells in sidecar["skip_cells"])
    assert f"--all_recons_path=evals/{MODEL}/{MODEL}_all_recons.pt" in readme
    manifest = json.loads((evals / "export_manifest.json").read_text())
    assert manifest["stimulus_indices"] == sorted(STIMULI) and manifest["mindeye2"]["folder"] == f"evals/{MODEL}/"


def _resave(name: str, change):
    def damage(evals: Path) -> None:
        path = evals / f"{MODEL}_all_{name}.pt"
        torch.save(change(torch.load(path, weights_only=False)), path)

    return damage


DAMAGES = {
    "blurry recons missing": (lambda evals: (evals / f"{MODEL}_all_blurryrecons.pt").unlink(), FileNotFoundError),
    "recons float64": (_resave("recons", lambda x: x.double()), AssertionError),
    "recons rows reversed": (_resave("recons", lambda x: x.flip(0)), AssertionError),
    "recons channels last": (_resave("recons", lambda x: x.permute(0, 2, 3, 1).contiguous()), AssertionError),
    "blurry recons actually blurred": (_resave("blurryrecons", lambda x: x.mul(0.5)), AssertionError),
    "clip voxels not ViT-bigG tokens": (_resave("clipvoxels", lambda x: x[:, 0, :768]), AssertionError),
    "captions a list": (_resave("predcaptions", lambda x: x.tolist()), TypeError),
    # an object array may hold anything: outside the str-array allowlist
    "captions an object array": (_resave("predcaptions", lambda x: x.astype(object)), pickle.UnpicklingError),
    # the notebook's bare torch.load (weights_only=True since torch 2.6) refuses a pickled numpy array
    "recons a numpy array": (_resave("recons", lambda x: x.numpy()), pickle.UnpicklingError),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_a_damaged_export_fails_the_notebook_path(case, tmp_path, monkeypatch):
    recons, truths_NHW3 = recons_folder(tmp_path, 32)
    evals = export_into_mindeye2_src(recons, tmp_path / "MindEyeV2" / "src")
    monkeypatch.chdir(tmp_path / "MindEyeV2" / "src")
    notebook_reads(truths_NHW3)  # intact, it passes
    damage, raised = DAMAGES[case]
    damage(evals)
    with pytest.raises(raised):
        notebook_reads(truths_NHW3)

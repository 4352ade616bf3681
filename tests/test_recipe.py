"""docs/reproduce-nsd.md's command list, run as written at the `tiny` preset, so the recipe cannot go stale.

Only the settings block is replaced (one subject, four sessions, one process, the tiny preset, only the weights the
stand-in caches hold, the GPU check on the CPU, reconstruction batched but not compiled). The data come from a local
Hugging Face cache laid out as MindEye2's repository, written from a simulation; Switti and its VQ-VAE are random
stand-ins of the tiny sizes in their published files' layouts. Everything runs offline (HF_HUB_OFFLINE=1), in
subprocesses, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from conftest import TINY_SESSIONS, switti_layout, write_hub_cache
from mindhier.config import tiny
from mindhier.fetch.sources import MINDEYE2_REPO
from mindhier.memory_plan import teacher_shapes
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.published_weights import HUB_WEIGHTS_FILE, SWITTI_REPO, SWITTI_VQVAE_REPO

RECIPE = Path(__file__).parent.parent / "docs" / "reproduce-nsd.md"
SMOKE_SETTINGS = {
    "SUBJECTS": '"1"',
    "PRESET": "tiny",
    "GPUS": "1",
    "GPU_MEMORY": "80",
    "DATA": "data/nsd",
    "RUNS": "runs/nsd",
    "WEIGHTS": "switti",  # the stand-ins this test provides; the metric networks stay absent (reported so)
    "NSD_FLAGS": f'"--sessions {TINY_SESSIONS}"',
    "MINDHIER_REPO": str(Path(__file__).resolve().parents[1]),
    "GPU_CHECK_FLAGS": '"--allow-cpu --modes eager --batches 1 --repeats 1"',  # no GPU here: the same code on the CPU
    # batched, not compiled: compiling six samplers on 2 CPU cores would cost 1.5 min of `make test`; the compiled
    # path gives the eager tokens (tests/sampling/test_single_pass.py, test_scale_loop.py)
    "RECONSTRUCT_FLAGS": '"--batch-size 32"',
}


def recipe_blocks() -> list[str]:
    text = RECIPE.read_text()
    recipe = text.split("<!-- recipe:begin -->", 1)[1].split("<!-- recipe:end -->", 1)[0]
    return re.findall(r"```bash\n(.*?)```", recipe, flags=re.S)


def test_the_settings_block_sets_exactly_what_the_smoke_run_replaces():
    settings = recipe_blocks()[0]
    names = re.findall(r"^([A-Z_]+)=", settings, flags=re.M)
    assert names == list(SMOKE_SETTINGS)


def hub_standins(cache: Path, mindeye2_standin: dict[str, Path], tmp_path: Path) -> None:
    """MindEye2's repository, Switti and its VQ-VAE at the tiny sizes, in a Hugging Face cache."""
    write_hub_cache(cache, MINDEYE2_REPO, mindeye2_standin, repo_type="dataset")
    cfg = tiny()
    torch.manual_seed(0)
    vqvae = tmp_path / "vqvae.safetensors"
    save_file({k: v.contiguous() for k, v in Tokenizer(cfg.tokenizer).state_dict().items()}, str(vqvae))
    teacher = teacher_shapes(cfg.teacher)
    shapes = GeneratorShapes.for_levels(cfg.tokenizer, teacher.level_dims, teacher.queries)
    switti = tmp_path / "switti.safetensors"
    save_file(switti_layout(ScaleAR(cfg.generator, shapes).state_dict()), str(switti))
    write_hub_cache(cache, SWITTI_VQVAE_REPO, {HUB_WEIGHTS_FILE: vqvae})
    write_hub_cache(cache, SWITTI_REPO, {HUB_WEIGHTS_FILE: switti})


def test_the_recipe_runs_from_fetch_to_the_table(mindeye2_standin, tmp_path):
    cache = tmp_path / "hf"
    hub_standins(cache, mindeye2_standin, tmp_path)
    settings = "\n".join(f"{name}={value}" for name, value in SMOKE_SETTINGS.items())
    script = tmp_path / "work" / "recipe.sh"
    script.parent.mkdir()
    script.write_text("\n".join([settings, *recipe_blocks()[1:]]))
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "TORCH_HOME": str(tmp_path / "torch"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "OMP_NUM_THREADS": os.environ.get("MINDHIER_TEST_THREADS", "2"),
    }
    done = subprocess.run(["bash", str(script)], cwd=script.parent, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = script.parent / "runs" / "nsd"
    assert (script.parent / "data" / "nsd" / "fetch_manifest.json").is_file()
    inputs = json.loads((runs / "subj01" / "generator" / "inputs.json").read_text())
    assert inputs["tokenizer_file"]["name"] == "switti-vqvae" and inputs["init"]["loaded"] > 0
    assert inputs["init"]["source"].startswith("switti:")
    for split in ("test", "test_old"):
        metrics = json.loads((runs / "subj01" / f"eval-{split}" / "metrics.json").read_text())
        assert metrics["protocol"]["split"] == split
        table = json.loads((runs / f"table-{split}.json").read_text())
        assert table["subjects"] == [1] and table["split"] == split
        assert {c["column"] for c in table["columns"]} >= {"PixCorr", "SSIM"}
        assert (runs / f"table-{split}.md").read_text().startswith(f"split {split}")
    assert list((runs / "subj01" / "export-test").glob("*_all_recons.pt"))
    plan = json.loads((runs / "plan.json").read_text())
    assert [t["stage"] for t in plan["times"]] == ["encoder", "generator", "diffusion"]


def test_every_setting_reaches_a_command():
    """A renamed variable would leave its setting unused, and the smoke run would not test what it claims."""
    body = "\n".join(recipe_blocks()[1:])
    assert [name for name in SMOKE_SETTINGS if f"${name}" not in body] == []

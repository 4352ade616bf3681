"""The published weights mindhier knows by name, where each lives on the Hugging Face Hub, and how a command reads
one from the local Hugging Face cache.

`mindhier fetch weights` downloads them (`fetch.sources`); other commands accept a name in place of a path
(`--tokenizer var-vqvae`, `--init switti`) and read the file from the cache, never downloading it
(`tokenizer_source`, `train.warm_start`).
"""

from __future__ import annotations

from pathlib import Path

from mindhier.errors import WeightsError

SWITTI_REPO = "yresearch/Switti"  # Switti-512: SwittiHF(depth=30), PyTorchModelHubMixin's model.safetensors
SWITTI_VQVAE_REPO = "yresearch/VQVAE-Switti"  # the VQ-VAE Switti was trained with (VAR's architecture)
VAR_REPO = "FoundationVision/var"  # VAR's VQ-VAE, a plain state dict in a .pth
HUB_WEIGHTS_FILE = "model.safetensors"  # what PyTorchModelHubMixin.save_pretrained writes
# Switti's VQ-VAE file: Switti loads it with `VQVAEHF.from_pretrained("yresearch/VQVAE-Switti")` (PyTorchModelHubMixin,
# which reads model.safetensors; yandex-research/switti models/pipeline.py), and the repository holds config.json and
# model.safetensors (436 MB, commit 0dcfe37 "Push model using huggingface_hub"). The one name every part uses:
# fetch, `--tokenizer switti-vqvae`, and the key manifest `models/manifests/var_vqvae_512.json`.
SWITTI_VQVAE_FILE = HUB_WEIGHTS_FILE
VAR_VQVAE_FILE = "vae_ch160v4096z32.pth"

# tokenizers other commands accept by name in place of a path (`--tokenizer var-vqvae`): name → (repo, file)
NAMED_TOKENIZERS = {
    "var-vqvae": (VAR_REPO, VAR_VQVAE_FILE),
    "switti-vqvae": (SWITTI_VQVAE_REPO, SWITTI_VQVAE_FILE),
}


def cached_hub_file(repo_id: str, filename: str, what: str, fetch_hint: str) -> Path:
    """A file of a Hub repository from the local Hugging Face cache (never downloaded here)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError as err:
        raise WeightsError(
            f"{what} is read from the Hugging Face cache, which needs huggingface_hub; pip install huggingface_hub"
        ) from err
    found = try_to_load_from_cache(repo_id, filename)
    if not isinstance(found, str) or not Path(found).is_file():
        raise WeightsError(
            f"{what} ({repo_id}/{filename}) is not in the Hugging Face cache; run `{fetch_hint}` "
            "or pass the file's path"
        )
    return Path(found)

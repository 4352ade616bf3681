"""mindhier: fMRI-to-image reconstruction with hierarchy-to-hierarchy autoregression.

Implements MindHier (Zhang, Quan, Wang, Yang; arXiv 2510.22335, ICLR 2026) as tested software:
a hierarchical fMRI encoder aligned level by level to a frozen vision network, and a scale-wise
autoregressive generator guided coarse-to-fine by the brain hierarchy.
"""

from mindhier._version import __version__

__all__ = ["__version__", "load", "load_generator_init", "load_tokenizer"]


def load_tokenizer(path, cfg=None, expected=None, device="cpu"):
    """A tokenizer from a run folder or a VAR/Switti VQ-VAE weights file (see `mindhier.runs.load_tokenizer`)."""
    from mindhier.runs import load_tokenizer as _load

    return _load(path, cfg, expected, device)


def load_generator_init(model, path):
    """Shape-filtered start from a local Switti checkpoint (see `mindhier.runs.load_generator_init`)."""
    from mindhier.runs import load_generator_init as _load

    return _load(model, path)


def load(generator_run, encoder_run=None, tokenizer_run=None, device="cpu", compile=False):
    """A reconstruction pipeline on `device` from a trained generator run — or a diffusion-baseline run — and the
    encoder and tokenizer it names. `compile`: compile the sampling steps (`torch.compile`, CUDA graphs on a
    GPU; the same tokens, faster once the first call has compiled).

    `mindhier.load(RUN, device="cuda").reconstruct(voxels, subject=1, samples=1, seed=0, batch_size=32)` →
    `Reconstruction` with uint8 images.
    """
    from mindhier.sampling.reconstruct import Reconstructor

    reconstructor = Reconstructor.from_runs(generator_run, encoder_run, tokenizer_run, device=device)
    reconstructor.decoder.compile = compile
    return reconstructor

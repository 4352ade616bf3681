"""Where a tokenizer comes from: a tokenizer run folder, a VQ-VAE weights file, or published weights by name.

Everywhere a tokenizer run is accepted (`tokenize --run`, `train generator|diffusion --tokenizer`,
`reconstruct --tokenizer`, `ceiling --tokenizer`) these work too:

    RUN_FOLDER        a `mindhier train tokenizer` run: its own config and best weights
    FILE              a VQ-VAE state dict (`.safetensors`, or a `.pth` read with `weights_only=True`) in VAR's key
                      layout — VAR's `vae_ch160v4096z32.pth`, VQVAE-Switti's `model.safetensors` — loaded strictly into
                      the tokenizer section of the command's config (the `nsd-paper` preset is VAR's architecture)
    var-vqvae         VAR's VQ-VAE, read from the Hugging Face cache (`mindhier fetch weights var-vqvae`)
    switti-vqvae      Switti's VQ-VAE, likewise (`mindhier fetch weights switti`)

A run that trained on a file or a name records it (`tokenizer_file`: its sha256 and how to find it again) so
later stages load the same weights with the same config, and refuse a file whose bytes changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindhier import run_layout
from mindhier.config import TokenizerConfig, nsd_paper, to_dict
from mindhier.errors import ConfigError, WeightsError
from mindhier.published_weights import NAMED_TOKENIZERS, cached_hub_file
from mindhier.run_layout import load_run_config, relative_input, resolve_input


@dataclass(frozen=True)
class TokenizerSource:
    spec: str  # as given: a folder, a file or a name
    cfg: TokenizerConfig
    weights: Path
    run_dir: Path | None  # the run folder; None for a weights file or a name

    @property
    def name(self) -> str | None:
        return self.spec if self.spec in NAMED_TOKENIZERS else None

    def identity(self) -> dict[str, Any]:
        """What tokens made with it depend on: the architecture and the weights' bytes."""
        from mindhier.teachers.base import file_identity

        return {"tokenizer": to_dict(self.cfg), "weights": file_identity(self.weights)}

    def record(self, relative_to: Path) -> dict[str, Any]:
        """What a run that uses it writes into `inputs.json`."""
        from mindhier.fileio import sha256_file

        if self.run_dir is not None:
            return {"tokenizer_run": relative_input(relative_to, self.run_dir)}
        found = {"name": self.name} if self.name else {"path": relative_input(relative_to, self.weights)}
        return {"tokenizer_file": {**found, "sha256": sha256_file(self.weights), "config": to_dict(self.cfg)}}


def tokenizer_source(spec: str | Path, cfg: TokenizerConfig | None = None) -> TokenizerSource:
    """Resolve `spec`. `cfg`: the architecture a weights file is loaded into (default: `nsd-paper`'s, VAR's)."""
    text = str(spec)
    if text in NAMED_TOKENIZERS:
        repo_id, filename = NAMED_TOKENIZERS[text]
        group = "switti" if text == "switti-vqvae" else text
        weights = cached_hub_file(repo_id, filename, f"the {text} tokenizer", f"mindhier fetch weights {group}")
        return TokenizerSource(text, cfg or nsd_paper().tokenizer, weights, None)
    path = Path(spec)
    if path.is_dir():
        run_layout.expect_kind(path, "tokenizer")
        return TokenizerSource(text, load_run_config(path).tokenizer, path / run_layout.weights_file("tokenizer"), path)
    if path.is_file():
        return TokenizerSource(text, cfg or nsd_paper().tokenizer, path, None)
    names = ", ".join(NAMED_TOKENIZERS)
    raise ConfigError(
        f"tokenizer {text!r} is neither a tokenizer run folder, a weights file nor one of {names};"
        " pass a tokenizer run folder, a .safetensors file or one of those names"
    )


def recorded_tokenizer(
    run_dir: Path, inputs: dict[str, Any], given: str | Path | None, run_cfg: TokenizerConfig
) -> TokenizerSource:
    """The tokenizer a Stage-2 run was trained with (or `given`, the user's replacement): a run folder resolved
    inside the run's scope, a recorded file or name checked against its sha256, in the config it was used with."""
    from mindhier.config import from_dict
    from mindhier.fileio import sha256_file

    recorded_file = inputs.get("tokenizer_file")
    cfg = from_dict(TokenizerConfig, recorded_file["config"]) if recorded_file else run_cfg
    if given is not None:
        return tokenizer_source(given, cfg)
    if recorded_file is None:
        return tokenizer_source(resolve_input(run_dir, inputs["tokenizer_run"], "tokenizer_run", "--tokenizer"))
    if recorded_file.get("name"):
        source = tokenizer_source(recorded_file["name"], cfg)
    else:
        source = tokenizer_source(resolve_input(run_dir, recorded_file["path"], "tokenizer file", "--tokenizer"), cfg)
    if sha256_file(source.weights) != recorded_file["sha256"]:
        raise WeightsError(
            f"the tokenizer weights {source.weights} differ from the ones {run_dir} was trained with "
            f"(sha256 {recorded_file['sha256'][:12]}…); pass the original file with --tokenizer"
        )
    return source

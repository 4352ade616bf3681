"""What a Stage-2 decoder (the generator or the diffusion baseline) trains on: the frozen encoder, seen as
the brain condition (`models/brain_condition.py`), and the frozen tokenizer, with the subjects to train on.

Both are loaded strictly from their run folders onto the training device and never receive gradients.
Every process holds its own copy (the encoder is 307 M and the VQ-VAE 109 M parameters at paper scale).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mindhier.config import MindhierConfig, TokenizerConfig, describe_sessions
from mindhier.data.nsd import open_dataset
from mindhier.errors import ConfigError
from mindhier.models.brain_condition import BrainCondition
from mindhier.models.brain_encoder import BrainEncoder
from mindhier.models.tokenizer import Tokenizer
from mindhier.run_layout import relative_input
from mindhier.runs import load_encoder, load_tokenizer
from mindhier.tokenizer_source import TokenizerSource, tokenizer_source


@dataclass(frozen=True)
class FrozenStage1:
    encoder_run: Path
    tokenizer_source: TokenizerSource  # a run folder, a VQ-VAE file or a fetched one by name
    encoder_cfg: MindhierConfig
    encoder: BrainEncoder
    tokenizer: Tokenizer
    condition: BrainCondition
    subjects: tuple[int, ...]

    def open_dataset(self, data_dir: str | Path, sessions: tuple[int, ...] = ()):
        """The subjects' data, split as the encoder's was (its `data` section), with the decoder's own `sessions`."""
        expected = {s: self.encoder.shapes.voxels[s] for s in self.subjects}
        data_cfg = dataclasses.replace(self.encoder_cfg.data, sessions=tuple(sessions))
        return open_dataset(data_dir, data_cfg, subjects=list(self.subjects), expected_voxels=expected)

    def inputs_record(self, run_dir: Path, sessions: tuple[int, ...] = ()) -> dict:
        """What `inputs.json` records of the frozen models (paths relative to the run folder, and the sha256 of the
        weights they hold: a resumed run must be given the same ones, `TrainingSession.check_inputs`) and of the
        data."""
        from mindhier.fileio import sha256_file
        from mindhier.run_layout import weights_file

        return {
            "encoder_run": relative_input(run_dir, self.encoder_run),
            **self.tokenizer_source.record(run_dir),
            "subjects": list(self.subjects),
            "sessions": describe_sessions(tuple(sessions)),
            "encoder_supervision": self.condition.supervision,
            "weights_sha256": {
                "encoder": sha256_file(self.encoder_run / weights_file("encoder")),
                "tokenizer": sha256_file(self.tokenizer_source.weights),
            },
        }


def load_frozen(
    encoder_run: str | Path,
    tokenizer_run: str | Path,
    subjects: tuple[int, ...] | None,
    device,
    tokenizer_cfg: TokenizerConfig | None = None,
) -> FrozenStage1:
    """Load both frozen models; `subjects` (default: the encoder's first) must be ones the encoder knows.
    `tokenizer_run` may be a VQ-VAE file or name too (`mindhier.tokenizer_source`), loaded into `tokenizer_cfg`."""
    encoder_files = load_encoder(encoder_run, device=device)
    encoder = encoder_files.model.requires_grad_(False)
    source = tokenizer_source(tokenizer_run, tokenizer_cfg)
    tokenizer = load_tokenizer(source, device=device).requires_grad_(False)
    trained_on = tuple(s for s, _ in encoder_files.shapes.subject_voxels)
    subjects = tuple(subjects or trained_on[:1])
    unknown = [s for s in subjects if s not in trained_on]
    if unknown:
        raise ConfigError(
            f"the encoder {encoder_run} was not trained on subject {unknown[0]}; it knows {list(trained_on)}"
        )
    condition = BrainCondition(encoder, encoder_files.cfg.alignment.supervision, encoder_files.calibration)
    return FrozenStage1(Path(encoder_run), source, encoder_files.cfg, encoder, tokenizer, condition, subjects)

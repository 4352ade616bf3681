"""A new subject with little data: `adapt` (how `mindhier adapt` trains a new subject's encoder on a shared
model) and `adaptation` (what `mindhier eval adaptation` measures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mindhier.config.checks import check_range
from mindhier.config.loop import LoopConfig
from mindhier.errors import ConfigError


@dataclass(frozen=True)
class AdaptConfig(LoopConfig):
    """Adapting a shared encoder to a new subject (docs/method.md §3.5). A new input layer (the subject's voxel
    count → the shared hidden width) is trained alone for `alone_steps` while everything after it stays as the
    shared model learned it; then the shared encoder is fine-tuned with it at the lower `shared_lr`. Both rates
    warm up linearly and decay with a cosine to a tenth; the best val retrieval is kept, as in Stage 1."""

    section: ClassVar[str] = "adapt"

    steps: int = 300  # optimizer steps in all (both phases)
    alone_steps: int = 200  # the first steps: only the new input layer learns (the shared encoder's rate is 0)
    batch_size: int = 128  # global batch of the new subject's single trials
    lr: float = 1e-3  # peak rate of the new input layer
    shared_lr: float = 2e-5  # peak rate of the shared encoder after `alone_steps` (0 = keep it frozen)
    warmup_steps: int = 20  # linear warm-up of each rate from its phase's start
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 50  # steps between val evaluations (the best val checkpoint is kept)
    checkpoint_every: int = 250
    seed: int = 0  # the new layer's initialisation and the batch order

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("adapt.steps", self.steps, 1, 10_000_000)
        check_range("adapt.alone_steps", self.alone_steps, 0, self.steps)
        check_range("adapt.batch_size", self.batch_size, 2, 1_000_000)
        check_range("adapt.lr", self.lr, 1e-8, 1.0)
        check_range("adapt.shared_lr", self.shared_lr, 0.0, 1.0)
        check_range("adapt.warmup_steps", self.warmup_steps, 0, 10_000_000)
        check_range("adapt.weight_decay", self.weight_decay, 0.0, 10.0)
        check_range("adapt.grad_clip", self.grad_clip, 0.0, 1e6)
        check_range("adapt.eval_every", self.eval_every, 1, 10_000_000)
        check_range("adapt.checkpoint_every", self.checkpoint_every, 1, 10_000_000)


@dataclass(frozen=True)
class AdaptationStudyConfig:
    """`mindhier eval adaptation`: a shared model on `shared_subjects`, the held-out subject adapted with each
    session count in `sessions` (0 = all its data), against the same architecture trained from scratch on the
    same sessions."""

    shared_subjects: tuple[int, ...] = (1, 2, 3, 4)
    held_out: int = 5
    sessions: tuple[int, ...] = (1, 2, 4, 0)  # first-N-session budgets of the held-out subject; 0 = all sessions
    reconstruct: bool = True  # also reconstruct and score images (retrieval alone when False)

    def __post_init__(self) -> None:
        if not self.shared_subjects:
            raise ConfigError(
                "adaptation.shared_subjects must name at least one subject; set adaptation.shared_subjects, e.g. 1,2"
            )
        if self.held_out in self.shared_subjects:
            raise ConfigError(
                f"adaptation.held_out {self.held_out} is one of the shared subjects {list(self.shared_subjects)};"
                " hold out a subject that is not shared"
            )
        if not self.sessions or len(set(self.sessions)) != len(self.sessions):
            raise ConfigError(
                f"adaptation.sessions must list distinct session counts, got {list(self.sessions)};"
                " name each count once"
            )
        for count in self.sessions:
            check_range("adaptation.sessions", count, 0, 10_000)

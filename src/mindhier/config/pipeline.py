"""The whole run: `MindhierConfig` composes every section; `DemoConfig` is what `mindhier demo` adds."""

from __future__ import annotations

from dataclasses import dataclass, field

from mindhier.config.adaptation import AdaptationStudyConfig, AdaptConfig
from mindhier.config.baseline import DdimConfig, DiffusionConfig, DiffusionTrainConfig
from mindhier.config.checks import check_range
from mindhier.config.encoder import NAMED_MAPPING_LEVELS, AlignmentConfig, BrainEncoderConfig, EncoderTrainConfig
from mindhier.config.generation import (
    CONDITIONS,
    ROUTING_MODES,
    GeneratorConfig,
    GeneratorTrainConfig,
    SamplerConfig,
    TokenizerConfig,
    TokenizerTrainConfig,
)
from mindhier.config.teacher import TeacherConfig
from mindhier.config.world import DataConfig, SimulatorConfig, StimulusConfig
from mindhier.errors import ConfigError


@dataclass(frozen=True)
class DemoConfig:
    """What `mindhier demo` runs beyond the stage configs."""

    routings: tuple[str, ...] = ("coarse_to_fine", "static_terminal")  # one generator each, same budget
    seeds: tuple[int, ...] = ()  # several: generators, reconstructions and evaluations repeat per seed
    # brain: generators fine-tuned on brain data; teacher: also on the teacher's features of the seen images (oracle
    # conditioning, evaluated with the test images' features) — the routing study's two arms
    conditions: tuple[str, ...] = ("brain",)
    # the teacher-feature oracle row: the test images' teacher features given to a generator trained on teacher
    # features — the prior fine-tuned for `oracle_steps` steps on the seen images' features (0: the prior as it is;
    # without a prior, train_generator.init empty, a generator trained from scratch with the brain run's budget)
    oracle_row: bool = True
    oracle_steps: int = 0
    # > 0: a row from the first routing's generator whose first `low_level_scales` scales take the tokens of the
    # encoder's low-level image (sampler.low_level_scales; needs encoder.low_level_px > 0)
    low_level_scales: int = 0
    consistency_samples: int = 4  # R samples of every brain input for the consistency measures (0 = none)
    tokenizer_steps_off_domain: int = 300  # fine-tuning steps of the tokenizer prior on stimuli that are not scenes
    # the test split reconstructed and scored: test (MindEye2's new_test, every shared image the subject saw) or
    # test_old (the older 982-image split of MindEye1 and earlier papers)
    split: str = "test"

    def __post_init__(self) -> None:
        bad = [r for r in self.routings if r not in ROUTING_MODES]
        if not self.routings or bad:
            raise ConfigError(
                f"demo.routings must name routings among {', '.join(ROUTING_MODES)}, got {list(self.routings)};"
                " use only those"
            )
        if not self.conditions or any(c not in CONDITIONS for c in self.conditions):
            raise ConfigError(
                f"demo.conditions must name brain and/or teacher, got {list(self.conditions)};"
                " use brain, teacher or both"
            )
        if self.consistency_samples == 1 or not 0 <= self.consistency_samples <= 64:
            raise ConfigError(
                f"demo.consistency_samples must be 0 or 2..64, got {self.consistency_samples};"
                " set 0 or a count in 2..64"
            )
        check_range("demo.oracle_steps", self.oracle_steps, 0, 10_000_000)
        check_range("demo.low_level_scales", self.low_level_scales, 0, 1000)
        check_range("demo.tokenizer_steps_off_domain", self.tokenizer_steps_off_domain, 1, 1_000_000)
        if self.split not in ("test", "test_old"):
            raise ConfigError(f"demo.split must be test or test_old, got {self.split!r}; use test or test_old")


@dataclass(frozen=True)
class MindhierConfig:
    """Everything a run needs, composed from the component configs."""

    preset: str = "demo"  # the preset this config started from (informational)
    stimuli: StimulusConfig = field(default_factory=StimulusConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    encoder: BrainEncoderConfig = field(default_factory=BrainEncoderConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    train_encoder: EncoderTrainConfig = field(default_factory=EncoderTrainConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train_tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    train_generator: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train_diffusion: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)
    ddim: DdimConfig = field(default_factory=DdimConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    adaptation: AdaptationStudyConfig = field(default_factory=AdaptationStudyConfig)

    def __post_init__(self) -> None:
        n_levels = len(self.teacher.layers) or NAMED_MAPPING_LEVELS
        if n_levels != self.encoder.depth:
            raise ConfigError(
                f"encoder.depth ({self.encoder.depth}) must equal the number of teacher layers ({n_levels}): "
                "one encoder level per teacher level; set encoder.depth to the number of teacher.layers"
            )

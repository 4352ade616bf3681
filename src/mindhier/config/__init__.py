"""Typed, frozen configuration: one dataclass per component, named presets, overrides, provenance.

A run's configuration is resolved in three layers, each on top of the last:

1. a named preset (`tiny`, `demo`, `demo-long`, `adapt`, `nsd-paper`, …) — plain Python functions in `presets.py`;
2. an optional YAML or JSON file (`--config FILE`), holding any subset of the fields;
3. `--set a.b=value` overrides, coerced to the field's declared type.

Unknown keys are an error that lists the valid ones. The resolved config is written beside every output
together with the package version and git revision (`save_resolved`), and a saved `config.json` can be
passed back as `--config` to reproduce a run.
"""

from mindhier.config.adaptation import AdaptationStudyConfig, AdaptConfig
from mindhier.config.baseline import DECODE_MODES, DdimConfig, DiffusionConfig, DiffusionTrainConfig
from mindhier.config.encoder import (
    NAMED_MAPPING_LEVELS,
    SUPERVISION_MODES,
    AlignmentConfig,
    BrainEncoderConfig,
    EncoderTrainConfig,
)
from mindhier.config.generation import (
    ROUTING_MODES,
    GeneratorConfig,
    GeneratorTrainConfig,
    SamplerConfig,
    TokenizerConfig,
    TokenizerTrainConfig,
)
from mindhier.config.loop import LoopConfig
from mindhier.config.pipeline import DemoConfig, MindhierConfig
from mindhier.config.presets import PRESETS, demo, demo_long, nsd_paper, preset, tiny
from mindhier.config.resolve import (
    apply_overrides,
    config_hash,
    from_dict,
    load_file,
    resolve,
    resolved_record,
    save_resolved,
    to_dict,
)
from mindhier.config.teacher import LAYER_MAPPINGS, TEACHER_NAMES, TeacherConfig
from mindhier.config.world import (
    RESERVED_SEEDS,
    ROI_NAMES,
    DataConfig,
    SimulatorConfig,
    StimulusConfig,
    describe_sessions,
)

__all__ = [
    "DECODE_MODES",
    "LAYER_MAPPINGS",
    "NAMED_MAPPING_LEVELS",
    "PRESETS",
    "RESERVED_SEEDS",
    "ROI_NAMES",
    "ROUTING_MODES",
    "SUPERVISION_MODES",
    "TEACHER_NAMES",
    "AdaptConfig",
    "AdaptationStudyConfig",
    "AlignmentConfig",
    "BrainEncoderConfig",
    "DataConfig",
    "DdimConfig",
    "DemoConfig",
    "DiffusionConfig",
    "DiffusionTrainConfig",
    "EncoderTrainConfig",
    "GeneratorConfig",
    "GeneratorTrainConfig",
    "LoopConfig",
    "MindhierConfig",
    "SamplerConfig",
    "SimulatorConfig",
    "StimulusConfig",
    "TeacherConfig",
    "TokenizerConfig",
    "TokenizerTrainConfig",
    "apply_overrides",
    "config_hash",
    "demo",
    "demo_long",
    "describe_sessions",
    "from_dict",
    "load_file",
    "nsd_paper",
    "preset",
    "resolve",
    "resolved_record",
    "save_resolved",
    "tiny",
    "to_dict",
]

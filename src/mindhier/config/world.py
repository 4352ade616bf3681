"""The simulated world and how a dataset is read: stimuli, the simulator, the split (config sections
`stimuli`, `simulator`, `data`)."""

from __future__ import annotations

from dataclasses import dataclass

from mindhier.config.checks import check_range
from mindhier.errors import ConfigError

ROI_NAMES = ("V1", "V2", "V3", "hV4", "LO", "higher")
# seeds from here on belong to the package's own scene streams (the scene judge's, the priors' pretraining), so
# no simulated dataset ever shows one of their images
RESERVED_SEEDS = 1_000_000


@dataclass(frozen=True)
class StimulusConfig:
    """Which images the synthetic subject sees."""

    source: str = "scenes"  # "scenes" | "photos" | "folder:PATH"
    size: int = 64  # side of the square stimulus images, pixels

    def __post_init__(self) -> None:
        if not (self.source in ("scenes", "photos") or self.source.startswith("folder:")):
            raise ConfigError(
                f"stimuli.source must be scenes, photos or folder:PATH, got {self.source!r}; use one of those"
            )
        if self.source == "folder:":
            raise ConfigError(
                "stimuli.source folder: needs a path, e.g. folder:/data/nsd_stimuli; add the folder after the colon"
            )
        check_range("stimuli.size", self.size, 8, 4096)


@dataclass(frozen=True)
class SimulatorConfig:
    """The synthetic brain: a voxel-wise encoding model with an NSD-like design (docs/method.md §2.4)."""

    subjects: tuple[int, ...] = (1,)  # subject ids (1..99); each gets its own voxels and weights
    n_train: int = 4000  # unique training images, each shown once
    n_test: int = 100  # unique test images, each shown `test_repeats` times
    test_repeats: int = 3  # presentations of every test image (NSD: 3)
    session_trials: int = 750  # trials per scan session (NSD: 750); betas are z-scored per session
    voxels_min: int = 2000  # each subject's voxel count is drawn uniformly from [voxels_min, voxels_max]
    voxels_max: int = 4000
    roi_fractions: tuple[float, ...] = (0.20, 0.16, 0.14, 0.12, 0.12, 0.26)  # share of V1 V2 V3 hV4 LO higher
    ncsnr_min: float = 0.2  # per-voxel noise-ceiling SNR (signal sd / noise sd), drawn uniformly
    ncsnr_max: float = 1.0
    # how subjects differ beyond their own voxels (log-normal sd of a per-subject factor; 0 = every subject alike):
    roi_size_sd: float = 0.2  # each ROI's share of the voxels (renormalised)
    prf_size_sd: float = 0.15  # every pRF size of the subject
    ncsnr_subject_sd: float = 0.25  # the subject's noise ceilings (every voxel's ncsnr)
    drift_sd: float = 0.3  # slow drift per session and voxel (offset + linear trend), in noise-sd units
    retina_px: int = 64  # images are resampled to this side before the early-visual filter bank
    feature_grid: int = 32  # receptive fields are evaluated on this grid of the visual field
    compressive_exponent: float = 0.5  # CSS nonlinearity of early and mid voxels: response = drive ** n
    semantic_px: int = 128  # input side of EfficientNet-Lite2 for the semantic voxels
    category_weight: float = 0.5  # share of semantic-voxel variance driven by object categories (scenes)
    image_store: str = "png"  # "png": images/image_000000.png ...; "hdf5": one float16 array like MindEye2
    seed: int = 0  # everything (stimuli, subjects, noise) follows from this seed

    def __post_init__(self) -> None:
        if not self.subjects:
            raise ConfigError(
                "simulator.subjects must name at least one subject, e.g. 1 or 1,2; set simulator.subjects"
            )
        for s in self.subjects:
            check_range("simulator.subjects", s, 1, 99)
        if len(set(self.subjects)) != len(self.subjects):
            raise ConfigError(f"simulator.subjects has duplicates: {list(self.subjects)}; name each subject once")
        check_range("simulator.n_train", self.n_train, 1, 10_000_000)
        check_range("simulator.n_test", self.n_test, 2, 1_000_000)
        check_range("simulator.test_repeats", self.test_repeats, 1, 100)
        check_range("simulator.session_trials", self.session_trials, 10, 100_000)
        check_range("simulator.voxels_min", self.voxels_min, len(ROI_NAMES) * 4, 1_000_000)
        check_range("simulator.voxels_max", self.voxels_max, self.voxels_min, 1_000_000)
        if len(self.roi_fractions) != len(ROI_NAMES) or any(f <= 0 for f in self.roi_fractions):
            raise ConfigError(
                f"simulator.roi_fractions needs {len(ROI_NAMES)} positive shares for {', '.join(ROI_NAMES)};"
                " give one share per ROI"
            )
        if abs(sum(self.roi_fractions) - 1.0) > 1e-6:
            raise ConfigError(
                f"simulator.roi_fractions must sum to 1, got {sum(self.roi_fractions):.4f}; make the shares add up to 1"
            )
        if not 0 < self.ncsnr_min <= self.ncsnr_max:
            raise ConfigError(
                "simulator.ncsnr_min/ncsnr_max must satisfy 0 < ncsnr_min <= ncsnr_max; set 0 < ncsnr_min <= ncsnr_max"
            )
        for name in ("roi_size_sd", "prf_size_sd", "ncsnr_subject_sd"):
            check_range(f"simulator.{name}", getattr(self, name), 0.0, 2.0)
        check_range("simulator.drift_sd", self.drift_sd, 0.0, 100.0)
        check_range("simulator.retina_px", self.retina_px, 16, 1024)
        check_range("simulator.feature_grid", self.feature_grid, 4, self.retina_px)
        if self.retina_px % self.feature_grid:
            raise ConfigError(
                "simulator.retina_px must be a multiple of simulator.feature_grid;"
                " choose a retina_px that feature_grid divides"
            )
        check_range("simulator.compressive_exponent", self.compressive_exponent, 0.05, 1.0)
        check_range("simulator.semantic_px", self.semantic_px, 32, 1024)
        check_range("simulator.category_weight", self.category_weight, 0.0, 1.0)
        if not 0 <= self.seed < RESERVED_SEEDS:
            raise ConfigError(
                f"simulator.seed must be in 0..{RESERVED_SEEDS - 1:,} (larger seeds are the package's own scene "
                f"streams: the scene judge's and the priors' pretraining), got {self.seed}; choose a smaller seed"
            )
        if self.image_store not in ("png", "hdf5"):
            raise ConfigError(f"simulator.image_store must be png or hdf5, got {self.image_store!r}; use png or hdf5")


@dataclass(frozen=True)
class DataConfig:
    """How a dataset in the MindEye2 layout is split and averaged when read."""

    val_fraction: float = 0.05  # share of unique training images held out as `val`
    split_seed: int = 0  # seeds the choice of the `val` images
    test_repeats: int = 3  # test trials per image after MindEye2's duplication of missing repeats
    # scan sessions whose training trials are used (behav column 2; NSD sessions of 750 trials); () = all. Limits
    # `train` and `val` only: the test split is the same whatever the sessions. CLI: --sessions N (the first N)
    sessions: tuple[int, ...] = ()
    # the largest stimulus image decoded, in pixels (a 12000² PNG would take GBs of memory): NSD's are 425², and
    # larger images are refused with one line rather than decoded
    max_image_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        check_range("data.val_fraction", self.val_fraction, 0.0, 0.5)
        check_range("data.max_image_pixels", self.max_image_pixels, 1, 1_000_000_000)
        check_range("data.test_repeats", self.test_repeats, 1, 100)
        for session in self.sessions:
            check_range("data.sessions", session, 1, 100_000)
        if len(set(self.sessions)) != len(self.sessions):
            raise ConfigError(f"data.sessions has duplicates: {list(self.sessions)}; name each session once")

    def describe_sessions(self) -> str:
        """`all` or the session list, for messages and records."""
        return describe_sessions(self.sessions)


def describe_sessions(sessions: tuple[int, ...]) -> str:
    """`all`, `1-4` (the first four) or `1,3,5`."""
    if not sessions:
        return "all"
    ordered = sorted(sessions)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))

"""One simulated subject's voxels: ROI, receptive field, feature weights, and noise level.

ROIs and what drives them (docs/method.md §2.4; the hierarchy the decoder exploits):

* V1, V2, V3 — retinotopic voxels: a Gaussian population receptive field (pRF) whose size grows with
  eccentricity and along the hierarchy, pooling a voxel-specific mix of early feature maps (contrast
  energy, luminance, colour opponency), followed by a compressive power law (CSS model):
  r = (Σ_c w_c Σ_xy g(x, y) E_c(x, y)) ** n.
* hV4, LO — mid-level voxels: the same form over texture/shape statistics with much larger pRFs.
* higher — semantic voxels: a sparse random mixture of deep pooled network features and, when the
  stimuli carry them, of object categories (a preferred category plus a weaker second one).

Subjects differ like people do (docs/method.md §2.4): each draws its own voxel count, pRF centres, channel and
semantic mixtures, and three subject-level factors (`SubjectTraits`) scale its ROI sizes, all of its pRF sizes
and all of its noise ceilings — while every subject sees through the same stimulus features, which is what
makes a model shared across subjects possible.

Every voxel's noise-free signal is standardised to zero mean and unit variance over the calibration
stimuli; its single-trial noise has unit variance, so its configured ncsnr is exactly signal sd / noise sd.

Shape letters (docs/glossary.md): N images, V voxels, C channels, G grid side, D deep feature size, J categories.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from mindhier.config import ROI_NAMES, SimulatorConfig
from mindhier.data.simulator.features import StimulusFeatures

EARLY_ROIS = ("V1", "V2", "V3")
MID_ROIS = ("hV4", "LO")
# pRF sd = base + slope · eccentricity, in units where the visual field spans [-1, 1]
PRF_SIZE = {
    "V1": (0.05, 0.10),
    "V2": (0.08, 0.15),
    "V3": (0.12, 0.20),
    "hV4": (0.22, 0.30),
    "LO": (0.40, 0.40),
}
PRF_FIELD = {"early": 0.9, "mid": 0.6}  # pRF centres are uniform in [-field, field]²
CHANNEL_CONCENTRATION = 0.5  # Dirichlet concentration of channel weights (small = few preferred channels)
SEMANTIC_FEATURES_PER_VOXEL = 32  # sparse mixture: each semantic voxel reads this many deep features


@dataclass(frozen=True)
class SubjectTraits:
    """Subject-level factors (log-normal around 1; exactly 1 when their sd in the config is 0)."""

    roi_size: np.ndarray  # float64 [len(ROI_NAMES)]: factor on each ROI's share of the voxels, before renormalising
    prf_size: float  # factor on every pRF size
    ncsnr: float  # factor on every voxel's ncsnr

    def describe(self) -> dict[str, object]:
        return {
            "roi_size": {name: round(float(f), 4) for name, f in zip(ROI_NAMES, self.roi_size, strict=True)},
            "prf_size": round(self.prf_size, 4),
            "ncsnr": round(self.ncsnr, 4),
        }


def subject_traits(cfg: SimulatorConfig, rng: np.random.Generator) -> SubjectTraits:
    return SubjectTraits(
        roi_size=np.exp(rng.normal(0.0, cfg.roi_size_sd, size=len(ROI_NAMES))),
        prf_size=float(np.exp(rng.normal(0.0, cfg.prf_size_sd))),
        ncsnr=float(np.exp(rng.normal(0.0, cfg.ncsnr_subject_sd))),
    )


@dataclass(frozen=True)
class Calibration:
    """Statistics over the calibration stimuli that fix every voxel's scale (no batch dependence)."""

    early_channel_scale_C: torch.Tensor
    mid_channel_scale_C: torch.Tensor
    deep_mean_D: torch.Tensor
    deep_std_D: torch.Tensor
    semantic_feature_std_V: torch.Tensor  # sd of the feature drive of each higher voxel
    semantic_category_std_V: torch.Tensor  # sd of the category drive (1 where there are no categories)
    response_mean_V: torch.Tensor
    response_std_V: torch.Tensor


@dataclass(frozen=True)
class SubjectModel:
    """The encoding model of one subject; `signal` maps stimulus features to voxel signals."""

    subject: int
    roi_V: np.ndarray  # int8 index into ROI_NAMES
    prf_xy_V2: np.ndarray  # float32 pRF centre (NaN for higher voxels)
    prf_sd_V: np.ndarray  # float32 pRF sd (NaN for higher voxels)
    early_weights_VC: np.ndarray  # float32 rows for early voxels (in voxel order)
    mid_weights_VC: np.ndarray  # float32 rows for mid voxels
    semantic_weights_DV: np.ndarray  # float32 sparse deep-feature mixture of higher voxels
    category_weights_JV: np.ndarray | None  # float32 category mixture of higher voxels
    ncsnr_V: np.ndarray  # float32 configured noise-ceiling SNR of every voxel
    compressive_exponent: float
    category_weight: float
    calibration: Calibration | None = None

    @property
    def n_voxels(self) -> int:
        return int(self.roi_V.shape[0])

    def roi_mask(self, *names: str) -> np.ndarray:
        codes = [ROI_NAMES.index(name) for name in names]
        return np.isin(self.roi_V, codes)

    def roi_labels(self) -> list[str]:
        return [ROI_NAMES[code] for code in self.roi_V]

    # ------------------------------------------------------------------------------------- forward

    def _prf_kernel_GGV(self, mask: np.ndarray, grid: int) -> torch.Tensor:
        """Normalised Gaussian pRFs of the masked voxels sampled on the grid: [G·G, V]."""
        centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid * 2 - 1
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        xy = torch.from_numpy(self.prf_xy_V2[mask])
        sd = torch.from_numpy(self.prf_sd_V[mask])
        d2 = (x.reshape(-1, 1) - xy[:, 0]) ** 2 + (y.reshape(-1, 1) - xy[:, 1]) ** 2
        g = torch.exp(-d2 / (2 * sd**2))
        return g / g.sum(dim=0, keepdim=True)

    def _css_drive(self, maps_NCGG: torch.Tensor, weights_VC: np.ndarray, mask: np.ndarray, scale_C) -> torch.Tensor:
        """Compressive spatial summation of weighted channel maps: [N, V]."""
        n, c, g, _ = maps_NCGG.shape
        prf = self._prf_kernel_GGV(mask, g)  # (G·G, V)
        weights = torch.from_numpy(weights_VC).T * scale_C[:, None]  # (C, V)
        kernel = (weights[:, None, :] * prf[None]).reshape(c * g * g, -1)  # (C·G·G, V)
        drive = maps_NCGG.reshape(n, c * g * g) @ kernel
        return drive.clamp(min=0) ** self.compressive_exponent

    def _semantic_parts(self, features: StimulusFeatures, cal_mean, cal_std):
        deep_z = (features.deep_ND - cal_mean) / cal_std
        feature_drive = deep_z @ torch.from_numpy(self.semantic_weights_DV)
        category_drive = None
        if self.category_weights_JV is not None and features.categories_NJ is not None:
            category_drive = features.categories_NJ @ torch.from_numpy(self.category_weights_JV)
        return feature_drive, category_drive

    def raw_response(self, features: StimulusFeatures) -> torch.Tensor:
        """Noise-free responses before standardisation: [N, V]. Needs a calibrated model."""
        cal = self._require_calibration()
        out = torch.zeros(len(features), self.n_voxels)
        early, mid, higher = self.roi_mask(*EARLY_ROIS), self.roi_mask(*MID_ROIS), self.roi_mask("higher")
        with torch.inference_mode():
            out[:, torch.from_numpy(early)] = self._css_drive(
                features.early_NCGG, self.early_weights_VC, early, cal.early_channel_scale_C
            )
            out[:, torch.from_numpy(mid)] = self._css_drive(
                features.mid_NCGG, self.mid_weights_VC, mid, cal.mid_channel_scale_C
            )
            feature_drive, category_drive = self._semantic_parts(features, cal.deep_mean_D, cal.deep_std_D)
            semantic = feature_drive / cal.semantic_feature_std_V
            if category_drive is not None:
                w = self.category_weight
                semantic = (1 - w) ** 0.5 * semantic + w**0.5 * category_drive / cal.semantic_category_std_V
            out[:, torch.from_numpy(higher)] = semantic
        return out

    def signal(self, features: StimulusFeatures) -> torch.Tensor:
        """Noise-free signal standardised with the calibration statistics: [N, V]."""
        cal = self._require_calibration()
        return (self.raw_response(features) - cal.response_mean_V) / cal.response_std_V

    def calibrated(self, features: StimulusFeatures) -> SubjectModel:
        """Fix channel gains and voxel scales from a stimulus set (the simulated one)."""
        eps = 1e-8
        early_scale = 1.0 / (features.early_NCGG.mean(dim=(0, 2, 3)) + eps)
        mid_scale = 1.0 / (features.mid_NCGG.mean(dim=(0, 2, 3)) + eps)
        deep_mean = features.deep_ND.mean(dim=0)
        deep_std = features.deep_ND.std(dim=0) + 1e-4
        feature_drive, category_drive = self._semantic_parts(features, deep_mean, deep_std)
        feature_std = feature_drive.std(dim=0) + eps
        category_std = torch.ones_like(feature_std) if category_drive is None else category_drive.std(dim=0) + eps
        n_voxels = self.n_voxels
        partial = Calibration(
            early_channel_scale_C=early_scale,
            mid_channel_scale_C=mid_scale,
            deep_mean_D=deep_mean,
            deep_std_D=deep_std,
            semantic_feature_std_V=feature_std,
            semantic_category_std_V=category_std,
            response_mean_V=torch.zeros(n_voxels),
            response_std_V=torch.ones(n_voxels),
        )
        raw = replace(self, calibration=partial).raw_response(features)
        final = replace(partial, response_mean_V=raw.mean(dim=0), response_std_V=raw.std(dim=0) + eps)
        return replace(self, calibration=final)

    def _require_calibration(self) -> Calibration:
        if self.calibration is None:
            raise RuntimeError("SubjectModel.calibrated(features) must be called before computing responses")
        return self.calibration


def random_subject(
    subject: int,
    cfg: SimulatorConfig,
    n_early_channels: int,
    n_mid_channels: int,
    n_deep: int,
    n_categories: int,
    rng: np.random.Generator,
    traits: SubjectTraits | None = None,
) -> SubjectModel:
    """Draw a subject: voxel count, ROI sizes, pRFs, channel and semantic weights, ncsnr (`traits`: the
    subject-level factors; none = all 1)."""
    n_voxels = int(rng.integers(cfg.voxels_min, cfg.voxels_max + 1))
    fractions = np.asarray(cfg.roi_fractions)
    if traits is not None:
        fractions = fractions * traits.roi_size
        fractions = fractions / fractions.sum()
    counts = np.maximum(np.floor(fractions * n_voxels).astype(int), 1)
    counts[-1] += n_voxels - counts.sum()
    roi = np.repeat(np.arange(len(ROI_NAMES), dtype=np.int8), counts)

    prf_xy = np.full((n_voxels, 2), np.nan, dtype=np.float32)
    prf_sd = np.full(n_voxels, np.nan, dtype=np.float32)
    for name in (*EARLY_ROIS, *MID_ROIS):
        idx = np.flatnonzero(roi == ROI_NAMES.index(name))
        field = PRF_FIELD["early" if name in EARLY_ROIS else "mid"]
        xy = rng.uniform(-field, field, size=(len(idx), 2))
        eccentricity = np.hypot(xy[:, 0], xy[:, 1])
        base, slope = PRF_SIZE[name]
        jitter = np.exp(rng.normal(0.0, 0.15, size=len(idx)))
        prf_xy[idx] = xy
        prf_sd[idx] = (base + slope * eccentricity) * jitter * (traits.prf_size if traits else 1.0)

    n_early = int(np.isin(roi, [ROI_NAMES.index(n) for n in EARLY_ROIS]).sum())
    n_mid = int(np.isin(roi, [ROI_NAMES.index(n) for n in MID_ROIS]).sum())
    n_higher = int((roi == ROI_NAMES.index("higher")).sum())
    early_w = rng.dirichlet(np.full(n_early_channels, CHANNEL_CONCENTRATION), size=n_early)
    mid_w = rng.dirichlet(np.full(n_mid_channels, CHANNEL_CONCENTRATION), size=n_mid)

    semantic_w = np.zeros((n_deep, n_higher), dtype=np.float32)
    k = min(SEMANTIC_FEATURES_PER_VOXEL, n_deep)
    for v in range(n_higher):
        chosen = rng.choice(n_deep, size=k, replace=False)
        semantic_w[chosen, v] = rng.standard_normal(k)

    category_w = None
    if n_categories > 0:
        category_w = np.zeros((n_categories, n_higher), dtype=np.float32)
        preferred = rng.integers(0, n_categories, size=n_higher)
        category_w[preferred, np.arange(n_higher)] = 1.0
        second = (preferred + rng.integers(1, n_categories, size=n_higher)) % n_categories if n_categories > 1 else None
        if second is not None:
            category_w[second, np.arange(n_higher)] = rng.uniform(-0.5, 0.5, size=n_higher)

    ncsnr = (rng.uniform(cfg.ncsnr_min, cfg.ncsnr_max, size=n_voxels) * (traits.ncsnr if traits else 1.0)).astype(
        np.float32
    )
    return SubjectModel(
        subject=subject,
        roi_V=roi,
        prf_xy_V2=prf_xy,
        prf_sd_V=prf_sd,
        early_weights_VC=early_w.astype(np.float32),
        mid_weights_VC=mid_w.astype(np.float32),
        semantic_weights_DV=semantic_w,
        category_weights_JV=category_w,
        ncsnr_V=ncsnr,
        compressive_exponent=cfg.compressive_exponent,
        category_weight=cfg.category_weight,
    )

"""Motion correction: rigid registration of each volume to a reference volume with SimpleITK (the ITK
registration framework that ANTs is built on), then resampling it into the reference's grid.

ANTsPy, which Real-time MindEye uses, pins numpy < 2.4 and scipy < 1.16 (antspyx 0.6.3), below the versions
this package is tested with; SimpleITK has no such pins and runs the same kind of registration: a rigid (Euler)
transform about the volume centre, mean-squares metric over every voxel (no random sampling: deterministic,
so a restarted real-time run gets the same numbers), regular-step gradient descent, two levels (shrink 2 then
1, smoothing 1 then 0 voxels — a deep pyramid loses small EPI volumes). Each volume starts from the previous
volume's estimate, as heads move little between volumes.

The six motion parameters are reported the way `head_motion` writes the truth: rotations (degrees) and
translations (mm) in array axis order (A, B, C), so framewise displacement compares directly.

Shape letters (docs/glossary.md): A, B, C the volume's three axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from mindhier.errors import DataError

ITERATIONS = 100
SHRINK_FACTORS = (2, 1)
SMOOTHING_VOXELS = (1.0, 0.0)


@dataclass(frozen=True)
class Corrected:
    volume_ABC: np.ndarray  # float32, in the reference's grid
    motion_6: np.ndarray  # rotations (deg) and translations (mm) of the head relative to the reference


class MotionCorrector:
    """Registers volumes to one reference volume (`voxel_mm` spacing per array axis A, B, C)."""

    def __init__(self, reference_ABC: np.ndarray, voxel_mm: tuple[float, float, float], threads: int | None = None):
        import SimpleITK as sitk

        if threads is not None:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
        self._sitk = sitk
        self.shape = tuple(int(s) for s in reference_ABC.shape)
        self.voxel_mm = tuple(float(s) for s in voxel_mm)
        self._reference = self._image(reference_ABC)
        centre_index = [(s - 1) / 2 for s in self._reference.GetSize()]
        self._centre = self._reference.TransformContinuousIndexToPhysicalPoint(centre_index)
        self._previous = (0.0,) * 6

    def _image(self, volume_ABC: np.ndarray):
        # SimpleITK's image axes (x, y, z) are the array's axes reversed (C, B, A)
        image = self._sitk.GetImageFromArray(np.ascontiguousarray(volume_ABC, dtype=np.float32))
        image.SetSpacing(self.voxel_mm[::-1])
        return image

    def correct(self, volume_ABC: np.ndarray) -> Corrected:
        if tuple(volume_ABC.shape) != self.shape:
            raise DataError(
                f"a volume of shape {tuple(volume_ABC.shape)} arrived where the reference is {self.shape}; "
                "every volume of a session must have the reference's grid"
            )
        sitk = self._sitk
        moving = self._image(volume_ABC)
        transform = sitk.Euler3DTransform()
        transform.SetCenter(self._centre)
        transform.SetParameters(self._previous)
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMeanSquares()
        method.SetMetricSamplingStrategy(method.NONE)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0, minStep=1e-4, numberOfIterations=ITERATIONS, gradientMagnitudeTolerance=1e-8
        )
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
        method.SetSmoothingSigmasPerLevel(list(SMOOTHING_VOXELS))
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(self._reference, moving)
        self._previous = tuple(transform.GetParameters())
        resampled = sitk.Resample(moving, self._reference, transform, sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
        volume = sitk.GetArrayFromImage(resampled)
        return Corrected(volume.astype(np.float32, copy=False), self._motion(transform))

    def _motion(self, transform) -> np.ndarray:
        """The transform maps reference points to moving points, x_moving = M (x − c) + c + t in (x, y, z); the
        head moved by R = Mᵀ about the centre and by t, here in array order (A, B, C) = (z, y, x)."""
        matrix_xyz = np.asarray(transform.GetMatrix()).reshape(3, 3)
        translation_xyz = np.asarray(transform.GetTranslation())
        matrix_abc = matrix_xyz[::-1, ::-1]
        angles = Rotation.from_matrix(matrix_abc.T).as_euler("xyz", degrees=True)
        return np.concatenate([angles, translation_xyz[::-1]]).astype(np.float64)

"""Rigid (default) or affine registration of a follow-up onto the baseline with SimpleITK.

Mattes mutual information (robust to contrast changes and cross-modality) on
clamped intensities (:func:`registration_intensities`),
three-level multi-resolution (shrink 4/2/1, smoothing 2/1/0 voxels; random
sampling of 5/5/15 % of voxels, seeded), geometric
centre initialisation, regular-step gradient descent. The result maps baseline
physical points (LPS) to follow-up points. When the optimiser fails or the
final metric shows no improvement, the identity is returned with a warning
instead of a silently wrong transform.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from RadAISegmentLib.image import Image
from RadAISegmentLib.io import from_sitk, to_sitk


@dataclass
class Registration:
    transform: sitk.Transform
    matrix_lps: np.ndarray            # 4x4, baseline LPS point -> follow-up LPS point
    metric: float                     # final Mattes MI (more negative = better)
    initial_metric: float
    kind: str
    converged: bool
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"transform": {"kind": self.kind, "matrix_lps": self.matrix_lps.tolist()},
                "metric": self.metric, "initial_metric": self.initial_metric, "converged": self.converged,
                "warnings": self.warnings}


def _matrix(transform: sitk.Transform) -> np.ndarray:
    matrix = np.eye(4)
    if isinstance(transform, sitk.Transform) and transform.GetDimension() == 3 and hasattr(transform, "GetMatrix"):
        linear = np.asarray(transform.GetMatrix()).reshape(3, 3)
        centre = np.asarray(transform.GetCenter())
        matrix[:3, :3] = linear
        matrix[:3, 3] = np.asarray(transform.GetTranslation()) + centre - linear @ centre
    return matrix


def register(baseline: Image, followup: Image, kind: str = "rigid", max_iterations: int = 150,
             seed: int = 0) -> Registration:
    """Register ``followup`` (moving) to ``baseline`` (fixed)."""
    fixed = registration_intensities(baseline)
    moving = registration_intensities(followup)
    base_transform = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    initial = sitk.CenteredTransformInitializer(fixed, moving, base_transform,
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # Few samples on the coarse levels, more at full resolution where the final accuracy is
    # decided: with 5 % throughout, the result varied by up to ~1 mm with the thread count.
    method.SetMetricSamplingPercentagePerLevel([0.05, 0.05, 0.15], seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=max_iterations,
                                                     relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)
    identity = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    warnings: list[str] = []
    initial_metric = float("nan")
    try:
        initial_metric = _metric_value(fixed, moving, identity, seed)
        transform = method.Execute(fixed, moving)
        final_metric = _metric_value(fixed, moving, transform, seed)
        converged = final_metric <= initial_metric + 1e-6
        if not converged:
            warnings.append("registration did not improve on the identity; the identity is used")
    except RuntimeError as error:
        transform, final_metric, converged = identity, initial_metric, False
        warnings.append(f"registration failed ({str(error).splitlines()[-1][:120]}); the identity is used")
    if not converged:
        transform, final_metric = identity, initial_metric
    if isinstance(transform, sitk.CompositeTransform):
        transform = transform.GetNthTransform(transform.GetNumberOfTransforms() - 1)
        transform = sitk.Euler3DTransform(transform) if kind == "rigid" else sitk.AffineTransform(transform)
    return Registration(transform, _matrix(transform), float(final_metric), float(initial_metric), kind, converged, warnings)


def registration_intensities(image: Image) -> sitk.Image:
    """Float image with intensities clamped to where anatomy differs: a soft-tissue window
    (−150..250 HU) for CT-like images (air below −500), the 1st–99th percentile otherwise.
    Without it, air/fat/bone contrast of a body that fills the field of view dominates mutual
    information and leaves shifts along the body axis unresolved."""
    values = image.array
    if values.min() < -500:
        low, high = -150.0, 250.0
    else:
        low, high = (float(v) for v in np.percentile(values, [1, 99]))
    return sitk.Clamp(sitk.Cast(to_sitk(image), sitk.sitkFloat32), lowerBound=low, upperBound=high)


def _metric_value(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, seed: int) -> float:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(0.1, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform)
    return float(method.MetricEvaluate(fixed, moving))


def move_labels_to_baseline(labels: Image, baseline: Image, registration: Registration) -> Image:
    """Resample follow-up labels onto the baseline grid (nearest neighbour) — for matching only."""
    moved = sitk.Resample(to_sitk(labels), to_sitk(baseline), registration.transform, sitk.sitkNearestNeighbor, 0)
    return baseline.with_array(from_sitk(moved).array.astype(labels.array.dtype))

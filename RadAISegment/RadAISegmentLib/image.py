"""The one in-memory image type: a voxel array with its exact geometry.

Axis order and coordinate system are defined in :mod:`.geometry`:
``array[k, j, i]``, ``spacing_mm`` in ``(i, j, k)`` order, origin and direction
in **LPS** millimetres. A labelmap is an :class:`Image` with an integer array
and, optionally, :class:`SegmentInfo` per label value.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import geometry
from .errors import DimensionError, GeometryError, GeometryMismatchError, LabelError, NonFiniteError


@dataclass(frozen=True)
class TerminologyCode:
    """A coded concept (DICOM ``CodeSequence`` item), e.g. SNOMED CT ``("10200004", "SCT", "Liver")``."""

    value: str
    scheme: str
    meaning: str

    def as_dict(self) -> dict:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


@dataclass(frozen=True)
class SegmentInfo:
    """Name, display colour (RGB in 0..1) and terminology of one label value."""

    label: int
    name: str
    color_rgb: tuple[float, float, float] = (1.0, 0.0, 0.0)
    category: Optional[TerminologyCode] = None
    type: Optional[TerminologyCode] = None

    def as_dict(self) -> dict:
        return {
            "label": self.label, "name": self.name, "color_rgb": list(self.color_rgb),
            "category": self.category.as_dict() if self.category else None,
            "type": self.type.as_dict() if self.type else None,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "SegmentInfo":
        def code(entry):
            return TerminologyCode(**entry) if entry else None
        return SegmentInfo(int(data["label"]), str(data["name"]), tuple(float(c) for c in data.get("color_rgb", (1, 0, 0))),
                           code(data.get("category")), code(data.get("type")))


#: Tolerance (mm, and unitless for direction cosines) for "same grid" checks.
GRID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Image:
    """A 3D voxel array with geometry.

    Attributes:
        array: voxels, indexed ``[k, j, i]``.
        spacing_mm: voxel size along ``(i, j, k)``, millimetres, all > 0.
        origin_lps: LPS position (mm) of the centre of voxel ``(0, 0, 0)``.
        direction_lps: 3x3 matrix whose columns are the i, j, k axis directions in LPS.
        metadata: free-form facts (``modality``, ``series_instance_uid``,
            ``patient_id``, ``study_date``, ``source_files`` ...).
        segments: for labelmaps, one :class:`SegmentInfo` per label value.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction_lps: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: Mapping[str, Any] = field(default_factory=dict)
    segments: tuple[SegmentInfo, ...] = ()

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise DimensionError(f"Expected a 3D image, got {array.ndim}D with shape {array.shape}; "
                                 "RadAI needs a volume (use a series/stack, not a single slice).")
        spacing = tuple(float(s) for s in self.spacing_mm)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise GeometryError(f"Voxel spacing must be three positive numbers in mm, got {self.spacing_mm}; "
                                "fix the file's header (pixel spacing / slice thickness).")
        direction = np.asarray(self.direction_lps, dtype=float).reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise GeometryError("Direction matrix is not orthonormal; the header's orientation is corrupt.")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_lps", tuple(float(o) for o in self.origin_lps))
        object.__setattr__(self, "direction_lps", direction)
        object.__setattr__(self, "metadata", dict(self.metadata))
        object.__setattr__(self, "segments", tuple(self.segments))

    # -- geometry -----------------------------------------------------------------
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    @property
    def ijk_to_lps(self) -> np.ndarray:
        return geometry.ijk_to_lps_matrix(self.spacing_mm, self.origin_lps, self.direction_lps)

    @property
    def ijk_to_ras(self) -> np.ndarray:
        """Slicer's IJKToRAS matrix, also the NIfTI affine."""
        return geometry.ijk_to_ras_matrix(self.spacing_mm, self.origin_lps, self.direction_lps)

    def index_to_lps(self, indices_ijk: np.ndarray) -> np.ndarray:
        return geometry.index_to_lps(indices_ijk, self.spacing_mm, self.origin_lps, self.direction_lps)

    def index_to_ras(self, indices_ijk: np.ndarray) -> np.ndarray:
        return geometry.lps_to_ras(self.index_to_lps(indices_ijk))

    def lps_to_index(self, points_lps: np.ndarray) -> np.ndarray:
        return geometry.lps_to_index(points_lps, self.spacing_mm, self.origin_lps, self.direction_lps)

    def ras_to_index(self, points_ras: np.ndarray) -> np.ndarray:
        return self.lps_to_index(geometry.ras_to_lps(points_ras))

    def same_grid(self, other: "Image", tolerance: float = GRID_TOLERANCE) -> bool:
        return (self.array.shape == other.array.shape
                and np.allclose(self.spacing_mm, other.spacing_mm, atol=tolerance)
                and np.allclose(self.origin_lps, other.origin_lps, atol=tolerance)
                and np.allclose(self.direction_lps, other.direction_lps, atol=tolerance))

    def grid_difference(self, other: "Image") -> str:
        """Human-readable description of how two grids differ ('' when equal)."""
        parts = []
        if self.array.shape != other.array.shape:
            parts.append(f"shape (i,j,k) {self.shape_ijk} vs {other.shape_ijk}")
        if not np.allclose(self.spacing_mm, other.spacing_mm, atol=GRID_TOLERANCE):
            parts.append(f"spacing {self.spacing_mm} vs {other.spacing_mm} mm")
        if not np.allclose(self.origin_lps, other.origin_lps, atol=GRID_TOLERANCE):
            parts.append(f"origin (LPS) {np.round(self.origin_lps, 3).tolist()} vs {np.round(other.origin_lps, 3).tolist()} mm")
        if not np.allclose(self.direction_lps, other.direction_lps, atol=GRID_TOLERANCE):
            parts.append("direction matrices differ")
        return "; ".join(parts)

    def require_same_grid(self, other: "Image", what: str = "labelmap") -> None:
        """Raise :class:`GeometryMismatchError` naming the difference if grids differ."""
        difference = self.grid_difference(other)
        if difference:
            raise GeometryMismatchError(
                f"The {what} does not lie on the image's voxel grid ({difference}). "
                "Resample it onto the image first, or pick the matching image.")

    # -- construction helpers -------------------------------------------------------
    def with_array(self, array: np.ndarray, segments: Optional[Sequence[SegmentInfo]] = None,
                   **metadata_updates: Any) -> "Image":
        """A new image on the same grid with a different voxel array."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise GeometryMismatchError(f"Array shape {array.shape} differs from the grid's {self.array.shape}")
        metadata = {**self.metadata, **metadata_updates}
        return dataclasses.replace(self, array=array, metadata=metadata,
                                   segments=tuple(segments) if segments is not None else ())

    def require_finite(self) -> None:
        if np.issubdtype(self.array.dtype, np.floating) and not np.all(np.isfinite(self.array)):
            count = int(np.count_nonzero(~np.isfinite(self.array)))
            raise NonFiniteError(f"The image has {count} NaN or infinite voxels; RadAI will not guess values. "
                                 "Fix or mask them before analysis.")

    def segment_for(self, label: int) -> SegmentInfo:
        for info in self.segments:
            if info.label == label:
                return info
        return SegmentInfo(label, f"Segment_{label}", default_color(label))

    def label_values(self) -> list[int]:
        """Non-zero label values present in an integer labelmap."""
        require_integer_labels(self)
        values = np.unique(self.array)
        return [int(v) for v in values if v != 0]


def require_integer_labels(labelmap: Image) -> None:
    """Raise :class:`LabelError` if the labelmap's voxels are not whole numbers."""
    array = labelmap.array
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return
    if not np.all(np.isfinite(array)) or not np.all(np.equal(np.mod(array, 1), 0)):
        raise LabelError("The labelmap holds non-integer values; is it a probability map or an image? "
                         "Pass a labelmap (integer label per voxel).")


def as_label_array(labelmap: Image) -> np.ndarray:
    """The labelmap's voxels as the smallest sufficient unsigned integer type."""
    require_integer_labels(labelmap)
    array = labelmap.array
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.size and array.min() < 0:
        raise LabelError("The labelmap holds negative label values; labels must be 0 (background) or positive.")
    top = int(array.max()) if array.size else 0
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    return array.astype(dtype, copy=False)


# A perceptually distinct palette (Slicer's GenericAnatomyColors is larger; this suffices
# for labels without a card colour).
_PALETTE = [
    (0.50, 0.68, 0.50), (0.95, 0.84, 0.57), (0.69, 0.48, 0.40), (0.44, 0.74, 0.83),
    (0.85, 0.40, 0.36), (0.61, 0.50, 0.85), (0.93, 0.61, 0.25), (0.35, 0.55, 0.86),
    (0.86, 0.86, 0.40), (0.78, 0.35, 0.65), (0.30, 0.75, 0.55), (0.95, 0.55, 0.70),
]


def default_color(label: int) -> tuple[float, float, float]:
    return _PALETTE[(int(label) - 1) % len(_PALETTE)]


def geometry_summary(image: Image) -> str:
    """One line for users: voxels, spacing (mm) and origin in RAS (the coordinates Slicer shows)."""
    origin_ras = geometry.lps_to_ras(image.origin_lps)
    i, j, k = image.shape_ijk
    return (f"{i}×{j}×{k} voxels, spacing {', '.join(f'{s:.3g}' for s in image.spacing_mm)} mm, "
            f"origin (RAS) {', '.join(f'{o:.1f}' for o in origin_ras)} mm")

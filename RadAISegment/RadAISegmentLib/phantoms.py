"""Synthetic phantoms with analytically known answers, for tests and demos.

Every shape is an ellipsoid defined in physical **LPS** millimetres, independent of
the voxel grid, so the same anatomy can be voxelised on an axis-aligned or a rotated
(oblique) grid and must give the same physical volumes. Masks are drawn with
sub-voxel supersampling: the occupied fraction of each boundary voxel is estimated
on an ``s x s x s`` sub-grid and the mask keeps the ``round(sum of fractions)`` most
occupied voxels, so ``voxel count x voxel volume`` matches the analytic volume to
well under 1 % (partial-volume-free counts). Images blend intensities with the same
fractions (realistic partial-volume edges).

Conventions: ``array[k, j, i]``, ``spacing_mm`` in (i, j, k), origin/direction in LPS;
centres reported to users (``truth``) are **RAS** mm, volumes mm³ (and mL where named).
All generators are seeded and deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import geometry
from .errors import GeometryError
from .image import Image, SegmentInfo, TerminologyCode

ANATOMY = TerminologyCode("123037004", "SCT", "Anatomical Structure")
ALTERED = TerminologyCode("49755003", "SCT", "Morphologically Altered Structure")
TISSUE = TerminologyCode("85756007", "SCT", "Tissue")
LIVER = SegmentInfo(1, "Liver", (0.87, 0.51, 0.40), ANATOMY, TerminologyCode("10200004", "SCT", "Liver"))
SPLEEN = SegmentInfo(2, "Spleen", (0.62, 0.37, 0.54), ANATOMY, TerminologyCode("78961009", "SCT", "Spleen"))
KIDNEY_RIGHT = SegmentInfo(3, "Right kidney", (0.73, 0.42, 0.30), ANATOMY, TerminologyCode("64033007", "SCT", "Kidney"))
KIDNEY_LEFT = SegmentInfo(4, "Left kidney", (0.73, 0.42, 0.30), ANATOMY, TerminologyCode("64033007", "SCT", "Kidney"))
LESION = SegmentInfo(5, "Lesion", (0.95, 0.85, 0.20), ALTERED, TerminologyCode("108369006", "SCT", "Neoplasm"))
ABDOMINAL_SEGMENTS = (LIVER, SPLEEN, KIDNEY_RIGHT, KIDNEY_LEFT, LESION)



# -- geometry helpers --------------------------------------------------------------------
def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """3x3 rotation ``Rz @ Ry @ Rx`` for angles (degrees) about the LPS x, y, z axes.

    Applied to column vectors: ``R @ v`` first rotates about x, then y, then z.
    """
    ax, ay, az = np.radians(np.asarray(angles_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid_matrix(angles_deg: Sequence[float], translation_mm: Sequence[float],
                 centre_lps: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 LPS matrix: rotate by :func:`rotation_matrix` about ``centre_lps``, then translate (mm)."""
    rotation = rotation_matrix(angles_deg)
    centre = np.asarray(centre_lps, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre - rotation @ centre + np.asarray(translation_mm, dtype=float)
    return matrix


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 homogeneous matrix to points of shape ``(3,)`` or ``(N, 3)``."""
    points = np.asarray(points, dtype=float)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def centred_grid(shape_ijk: Sequence[int], spacing_mm: Sequence[float], centre_lps: Sequence[float] = (0, 0, 0),
                 direction_lps: Optional[np.ndarray] = None, metadata: Optional[dict] = None,
                 dtype=np.int16) -> Image:
    """An all-zero image whose grid centre lies at ``centre_lps`` (mm), with the given direction."""
    direction = np.eye(3) if direction_lps is None else np.asarray(direction_lps, dtype=float)
    shape = np.asarray(shape_ijk, dtype=int)
    half_extent = direction @ (np.asarray(spacing_mm, dtype=float) * (shape - 1) / 2.0)
    origin = np.asarray(centre_lps, dtype=float) - half_extent
    return Image(np.zeros(tuple(shape[::-1]), dtype=dtype), tuple(spacing_mm), tuple(origin), direction,
                 metadata or {})


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in LPS mm: centre, semi-axes (mm) and a rotation whose columns are its axes."""

    centre_lps: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    axes_lps: tuple[tuple[float, ...], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    @property
    def axes(self) -> np.ndarray:
        return np.asarray(self.axes_lps, dtype=float)

    @property
    def volume_mm3(self) -> float:
        return float(4.0 / 3.0 * np.pi * np.prod(self.semi_axes_mm))

    @property
    def centre_ras(self) -> list[float]:
        return geometry.lps_to_ras(self.centre_lps).tolist()

    def normalised_radius(self, points_lps: np.ndarray) -> np.ndarray:
        """``sqrt(sum((R^T (p - c) / a)^2))``: < 1 inside, 1 on the surface."""
        local = (np.asarray(points_lps, dtype=float) - np.asarray(self.centre_lps)) @ self.axes
        return np.sqrt(np.sum((local / np.asarray(self.semi_axes_mm)) ** 2, axis=-1))

    def transformed(self, matrix: np.ndarray) -> "Ellipsoid":
        """This ellipsoid moved by a rigid 4x4 LPS matrix."""
        centre = apply_matrix(matrix, np.asarray(self.centre_lps))
        axes = np.asarray(matrix)[:3, :3] @ self.axes
        return Ellipsoid(tuple(centre), self.semi_axes_mm, tuple(map(tuple, axes)))

    def with_volume_factor(self, factor: float) -> "Ellipsoid":
        """Same centre and shape, volume multiplied by ``factor`` (isotropic scaling)."""
        scale = float(factor) ** (1.0 / 3.0)
        return Ellipsoid(self.centre_lps, tuple(a * scale for a in self.semi_axes_mm), self.axes_lps)

    def contains(self, other: "Ellipsoid", margin_mm: float = 0.0, samples: int = 2000) -> bool:
        """Whether ``other`` (grown by ``margin_mm``) lies inside this ellipsoid (dense surface sampling)."""
        rng = np.random.default_rng(0)
        directions = rng.standard_normal((samples, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        surface = (directions * (np.asarray(other.semi_axes_mm) + margin_mm)) @ other.axes.T + other.centre_lps
        return bool(np.all(self.normalised_radius(surface) < 1.0))



def _index_quadratic(grid: Image, ellipsoid: Ellipsoid) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Bounding box (``[k, j, i]`` slices) of the ellipsoid on ``grid``, the voxel-centre offsets
    ``d`` (N x 3, index units) from its centre, the quadratic form ``A`` with ``q = d^T A d``
    (``q <= 1`` inside) and ``q`` itself."""
    index_to_lps_linear = grid.direction_lps @ np.diag(grid.spacing_mm)
    to_local = np.diag(1.0 / np.asarray(ellipsoid.semi_axes_mm)) @ ellipsoid.axes.T @ index_to_lps_linear
    quadratic = to_local.T @ to_local
    half_ijk = np.sqrt(np.diag(np.linalg.inv(quadratic)))  # exact half-extent of the ellipsoid along i, j, k
    centre_ijk = grid.lps_to_index(np.asarray(ellipsoid.centre_lps))
    lo = np.floor(centre_ijk - half_ijk).astype(int) - 1
    hi = np.ceil(centre_ijk + half_ijk).astype(int) + 2
    if np.any(lo < 0) or np.any(hi > np.asarray(grid.shape_ijk)):
        raise GeometryError(f"Ellipsoid at {np.round(ellipsoid.centre_ras, 1).tolist()} mm (RAS) extends beyond the "
                            "phantom grid; enlarge shape_ijk or spacing_mm.")
    box = tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
    kk, jj, ii = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    offsets = np.stack([ii, jj, kk], axis=-1).reshape(-1, 3) - centre_ijk
    q = np.einsum("ni,ni->n", offsets @ quadratic, offsets)
    return box, offsets, quadratic, q


def ellipsoid_fraction(grid: Image, ellipsoid: Ellipsoid, supersample: int = 4) -> tuple[tuple[slice, ...], np.ndarray]:
    """Occupied fraction (0..1) of each voxel of ``grid`` within the ellipsoid's bounding box.

    Returns ``(box, fraction)`` where ``box`` slices ``grid.array`` (``[k, j, i]``). Voxels
    whose whole extent is inside (outside) are 1 (0) exactly; boundary voxels are estimated
    on a ``supersample**3`` sub-grid. Raises :class:`GeometryError` if the ellipsoid leaves the grid.
    """
    box, offsets, quadratic, q = _index_quadratic(grid, ellipsoid)
    radius = np.sqrt(q)
    half_diagonal = 0.5 * float(np.linalg.norm(grid.spacing_mm))
    slack = half_diagonal / float(min(ellipsoid.semi_axes_mm))  # Lipschitz bound of the normalised radius
    fraction = (radius <= 1.0 - slack).astype(float)
    band = np.flatnonzero(np.abs(radius - 1.0) < slack)
    if band.size:
        steps = (np.arange(supersample) + 0.5) / supersample - 0.5
        sub = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
        sub_q = np.einsum("si,si->s", sub @ quadratic, sub)
        for start in range(0, band.size, 8192):
            chunk = band[start:start + 8192]
            # q(d + o) = q(d) + 2 o.(A d) + q(o)
            q_sub = q[chunk, None] + 2.0 * (offsets[chunk] @ quadratic) @ sub.T + sub_q[None, :]
            fraction[chunk] = np.mean(q_sub <= 1.0, axis=1)
    return box, fraction.reshape(tuple(s.stop - s.start for s in box))


def ellipsoid_mask(grid: Image, ellipsoid: Ellipsoid, supersample: int = 4,
                   fraction: Optional[tuple] = None) -> np.ndarray:
    """Boolean ``[k, j, i]`` mask whose voxel count matches the ellipsoid's occupied volume.

    Keeps the ``round(sum of occupied fractions)`` most occupied voxels (ties broken by
    distance to the centre), so ``count * voxel volume`` equals the analytic volume to
    within about half a voxel plus the supersampling error. ``fraction`` may pass a
    precomputed :func:`ellipsoid_fraction` result.
    """
    box, frac = fraction if fraction is not None else ellipsoid_fraction(grid, ellipsoid, supersample)
    flat = frac.ravel()
    keep = flat >= 1.0
    partial = np.flatnonzero((flat > 0.0) & (flat < 1.0))
    extra = int(round(float(flat.sum()))) - int(keep.sum())
    if extra > 0 and partial.size:
        q = _index_quadratic(grid, ellipsoid)[3][partial]
        keep[partial[np.lexsort((q, -flat[partial]))[:extra]]] = True
    mask = np.zeros(grid.array.shape, dtype=bool)
    mask[box] = keep.reshape(frac.shape)
    return mask


def _blend(volume: np.ndarray, box: tuple, fraction: np.ndarray, value: float) -> None:
    region = volume[box]
    region += fraction * (value - region)


def _mask_centroid_ras(grid: Image, mask: np.ndarray) -> list[float]:
    kji = np.argwhere(mask)
    return grid.index_to_ras(kji[:, ::-1].mean(axis=0).astype(float)).tolist() if kji.size else [np.nan] * 3


def _direction_for(rotated: bool) -> np.ndarray:
    return rotation_matrix((12.0, -9.0, 27.0)) if rotated else np.eye(3)


# -- abdominal CT -------------------------------------------------------------------------
_ORGANS = (  # segment, ellipsoid (anatomy frame, LPS mm), HU
    (LIVER, Ellipsoid((-38.0, -2.0, 18.0), (38.0, 32.0, 40.0), tuple(map(tuple, rotation_matrix((0, 0, 20))))), 60.0),
    (SPLEEN, Ellipsoid((50.0, 26.0, 28.0), (14.0, 22.0, 28.0), tuple(map(tuple, rotation_matrix((0, 0, -30))))), 48.0),
    (KIDNEY_RIGHT, Ellipsoid((-44.0, 40.0, -38.0), (15.0, 12.0, 26.0)), 32.0),
    (KIDNEY_LEFT, Ellipsoid((44.0, 40.0, -36.0), (15.0, 12.0, 25.0)), 32.0),
)
_LESIONS = (  # name, ellipsoid, HU, host organ label
    ("Lesion 1", Ellipsoid((-30.0, -8.0, 22.0), (11.0, 11.0, 11.0)), 15.0, 1),
    ("Lesion 2", Ellipsoid((-50.0, 6.0, 34.0), (7.0, 5.5, 9.0)), 110.0, 1),
)
_NEW_LESION = ("Lesion 3", Ellipsoid((-24.0, 10.0, 0.0), (6.0, 6.0, 6.0)), 15.0, 1)
_HU = {"air": -1000.0, "fat": -100.0, "soft_tissue": 40.0, "bone": 700.0}


def _axial_axes_mm(ellipsoid: Ellipsoid) -> Optional[tuple[float, float]]:
    """Long and short axial diameters (mm) of the central axial section, if one ellipsoid axis is along S."""
    axes = ellipsoid.axes
    along_s = np.flatnonzero(np.isclose(np.abs(axes[2]), 1.0, atol=1e-9))
    if along_s.size != 1:
        return None
    in_plane = [a for n, a in enumerate(ellipsoid.semi_axes_mm) if n != along_s[0]]
    return 2.0 * max(in_plane), 2.0 * min(in_plane)


def _render_abdomen(grid: Image, anatomy_to_lps: np.ndarray, lesions: Sequence[tuple], rng: np.random.Generator,
                    noise_hu: float = 10.0) -> tuple[Image, Image, dict]:
    """Draw body, organs and lesions (anatomy frame moved by ``anatomy_to_lps``) on ``grid``."""
    kk, jj, ii = np.meshgrid(*(np.arange(n) for n in grid.array.shape), indexing="ij")
    points = grid.index_to_lps(np.stack([ii, jj, kk], axis=-1).reshape(-1, 3).astype(float))
    anatomy = apply_matrix(np.linalg.inv(anatomy_to_lps), points)
    x, y = anatomy[:, 0], anatomy[:, 1]
    outer = (x / 88.0) ** 2 + (y / 68.0) ** 2
    inner = (x / 80.0) ** 2 + (y / 60.0) ** 2
    spine = (x ** 2 + (y - 48.0) ** 2) < 11.0 ** 2
    ct = np.where(outer <= 1.0, _HU["fat"], _HU["air"])
    ct = np.where(inner <= 1.0, _HU["soft_tissue"], ct)
    ct = np.where(spine, _HU["bone"], ct).reshape(grid.array.shape)
    labels = np.zeros(grid.array.shape, dtype=np.uint8)

    organs = [(info, shape.transformed(anatomy_to_lps), hu) for info, shape, hu in _ORGANS]
    moved = [(name, shape.transformed(anatomy_to_lps), hu, host) for name, shape, hu, host in lesions]
    for info, shape, hu in organs:
        frac = ellipsoid_fraction(grid, shape)
        _blend(ct, *frac, hu)
        mask = ellipsoid_mask(grid, shape, fraction=frac)
        if np.any(labels[mask]):
            raise GeometryError(f"Phantom organs overlap at {info.name}; phantom layout is inconsistent.")
        labels[mask] = info.label
    lesion_truth = []
    for name, shape, hu, host in moved:
        host_shape = next(s for info, s, _ in organs if info.label == host)
        if not host_shape.contains(shape, margin_mm=float(np.linalg.norm(grid.spacing_mm))):
            raise GeometryError(f"{name} is not inside its host organ; reduce its size or volume change.")
        frac = ellipsoid_fraction(grid, shape)
        _blend(ct, *frac, hu)
        mask = ellipsoid_mask(grid, shape, fraction=frac)
        if np.any(labels[mask] == LESION.label):
            raise GeometryError(f"{name} overlaps another lesion; phantom layout is inconsistent.")
        labels[mask] = LESION.label
        axial = _axial_axes_mm(shape)
        lesion_truth.append({
            "name": name, "label": LESION.label, "host_label": host, "centre_ras": shape.centre_ras,
            "centre_lps": list(shape.centre_lps), "semi_axes_mm": list(shape.semi_axes_mm),
            "axes_lps": shape.axes.tolist(), "analytic_volume_mm3": shape.volume_mm3,
            "voxel_count": int(mask.sum()), "voxel_volume_mm3": float(mask.sum()) * grid.voxel_volume_mm3,
            "voxel_centroid_ras": _mask_centroid_ras(grid, mask), "max_3d_diameter_mm": 2.0 * max(shape.semi_axes_mm),
            "axial_long_axis_mm": axial[0] if axial else None, "axial_short_axis_mm": axial[1] if axial else None,
        })

    label_truth = {}
    for info, shape, _ in organs:
        inside = [(les["analytic_volume_mm3"], np.asarray(les["centre_lps"])) for les in lesion_truth
                  if les["host_label"] == info.label]
        volume = shape.volume_mm3 - sum(v for v, _ in inside)
        moment = shape.volume_mm3 * np.asarray(shape.centre_lps) - sum((v * c for v, c in inside), np.zeros(3))
        label_truth[info.label] = {"name": info.name, "analytic_volume_mm3": volume,
                                   "centre_ras": geometry.lps_to_ras(moment / volume).tolist()}
    lesion_volume = sum(les["analytic_volume_mm3"] for les in lesion_truth)
    lesion_moment = sum((les["analytic_volume_mm3"] * np.asarray(les["centre_lps"]) for les in lesion_truth), np.zeros(3))
    lesion_centre = lesion_moment / lesion_volume if lesion_truth else np.full(3, np.nan)
    label_truth[LESION.label] = {"name": LESION.name, "analytic_volume_mm3": lesion_volume,
                                 "centre_ras": geometry.lps_to_ras(lesion_centre).tolist()}
    for label, entry in label_truth.items():
        count = int(np.count_nonzero(labels == label))
        entry.update(label=label, voxel_count=count, voxel_volume_mm3=count * grid.voxel_volume_mm3,
                     analytic_volume_ml=entry["analytic_volume_mm3"] / 1000.0)

    ct += rng.normal(0.0, noise_hu, size=ct.shape) * (ct > -900)
    ct_image = grid.with_array(np.clip(np.round(ct), -1024, 3071).astype(np.int16), modality="CT")
    present = [info for info in ABDOMINAL_SEGMENTS if np.any(labels == info.label)]
    label_image = grid.with_array(labels, segments=present, modality="SEG")
    truth = {
        "labels": label_truth,
        "lesions": lesion_truth,
        "analytic_volume_mm3": {e["name"]: e["analytic_volume_mm3"] for e in label_truth.values()},
        "voxel_volume_mm3": {e["name"]: e["voxel_volume_mm3"] for e in label_truth.values()},
        "hu": {**_HU, **{info.name: hu for info, _, hu in _ORGANS}},
        "spacing_mm": list(grid.spacing_mm), "direction_lps": grid.direction_lps.tolist(),
    }
    return ct_image, label_image, truth


def abdominal_ct_phantom(shape_ijk: Sequence[int] = (128, 128, 64), spacing_mm: Sequence[float] = (1.5, 1.5, 3.0),
                         rotated: bool = False, seed: int = 0) -> tuple[Image, Image, dict]:
    """CT-like abdomen: air, fat, soft tissue, spine; liver, spleen, kidneys; two liver lesions.

    Returns ``(ct, labels, truth)``. ``ct`` is int16 HU; ``labels`` uint8 with segments
    1 Liver, 2 Spleen, 3 Right kidney, 4 Left kidney, 5 Lesion (two connected components).
    ``rotated=True`` uses an oblique direction matrix; the anatomy (physical LPS) is identical.
    ``truth["labels"][label]``: name, analytic_volume_mm3 (organ minus contained lesions),
    voxel_count, voxel_volume_mm3, centre_ras (analytic centroid); ``truth["lesions"]``: per
    lesion name, centre_ras/centre_lps, semi_axes_mm, analytic/voxel volumes, voxel_centroid_ras,
    max_3d_diameter_mm, axial_long/short_axis_mm; plus name -> volume maps and HU values.
    """
    grid = centred_grid(shape_ijk, spacing_mm, (0.0, 0.0, 0.0), _direction_for(rotated),
                        {"patient_id": "RADAI-PHANTOM-ABDOMEN", "description": "abdominal CT phantom"})
    return _render_abdomen(grid, np.eye(4), _LESIONS, np.random.default_rng(seed))


def followup_pair_phantom(rotation_deg: Sequence[float] = (3.0, -2.0, 8.0),
                          translation_mm: Sequence[float] = (6.0, -4.0, 9.0),
                          volume_change_fraction: float = 0.3, new_lesion: bool = True, rotated: bool = False,
                          shape_ijk: Sequence[int] = (128, 128, 64), spacing_mm: Sequence[float] = (1.5, 1.5, 3.0),
                          seed: int = 0) -> tuple[Image, Image, Image, Image, dict]:
    """Baseline and follow-up abdominal CT on the same grid; the patient moved rigidly in between.

    Follow-up anatomy = baseline anatomy mapped by ``truth["baseline_to_followup_lps"]`` (4x4,
    LPS mm: rotate by ``rotation_deg`` (x, y, z order, see :func:`rotation_matrix`) about the grid
    centre, then translate by ``translation_mm``). Lesion 1 grows by ``volume_change_fraction``,
    Lesion 2 shrinks by it, Lesion 3 appears only at follow-up (``new_lesion``). Returns
    ``(baseline_ct, baseline_labels, followup_ct, followup_labels, truth)``; ``truth["lesions"]``
    lists per lesion ``baseline``/``followup`` entries (None when absent) with analytic and voxel
    volumes and centres (RAS), plus ``volume_change_fraction``.
    """
    if not 0.0 <= volume_change_fraction < 1.0:
        raise GeometryError("volume_change_fraction must be in [0, 1): the shrinking lesion cannot vanish.")
    grid = centred_grid(shape_ijk, spacing_mm, (0.0, 0.0, 0.0), _direction_for(rotated),
                        {"patient_id": "RADAI-PHANTOM-FOLLOWUP"})
    rng = np.random.default_rng(seed)
    matrix = rigid_matrix(rotation_deg, translation_mm, (0.0, 0.0, 0.0))
    (name1, shape1, hu1, host1), (name2, shape2, hu2, host2) = _LESIONS
    followup_lesions = [(name1, shape1.with_volume_factor(1.0 + volume_change_fraction), hu1, host1),
                        (name2, shape2.with_volume_factor(1.0 - volume_change_fraction), hu2, host2)]
    if new_lesion:
        followup_lesions.append(_NEW_LESION)
    base_ct, base_labels, base_truth = _render_abdomen(
        grid.with_array(grid.array, study_date="20250101"), np.eye(4), _LESIONS, rng)
    follow_ct, follow_labels, follow_truth = _render_abdomen(
        grid.with_array(grid.array, study_date="20250401"), matrix, followup_lesions, rng)
    by_name_base = {les["name"]: les for les in base_truth["lesions"]}
    by_name_follow = {les["name"]: les for les in follow_truth["lesions"]}
    changes = {name1: volume_change_fraction, name2: -volume_change_fraction}
    lesions = [{"name": name, "baseline": by_name_base.get(name), "followup": by_name_follow.get(name),
                "volume_change_fraction": changes.get(name)}
               for name in sorted(set(by_name_base) | set(by_name_follow))]
    truth = {
        "baseline_to_followup_lps": matrix.tolist(),
        "followup_to_baseline_lps": np.linalg.inv(matrix).tolist(),
        "rotation_deg": [float(a) for a in rotation_deg], "translation_mm": [float(t) for t in translation_mm],
        "centre_of_rotation_lps": [0.0, 0.0, 0.0], "rotation_order": "Rz @ Ry @ Rx about LPS axes",
        "lesions": lesions, "baseline": base_truth, "followup": follow_truth,
    }
    return base_ct, base_labels, follow_ct, follow_labels, truth

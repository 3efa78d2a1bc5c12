"""Cardiac cine phantom (short-axis MR) with analytically known volumes, for EF tests and demos.

Built from :mod:`.phantoms`' ellipsoids (physical LPS mm, sub-voxel supersampled masks); same
conventions: ``array[k, j, i]``, ``spacing_mm`` in (i, j, k), truth centres in RAS mm, volumes mL.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import geometry
from .errors import GeometryError
from .image import Image, SegmentInfo, TerminologyCode
from .phantoms import ANATOMY, TISSUE, Ellipsoid, _blend, centred_grid, ellipsoid_fraction, ellipsoid_mask

LV_BLOOD_POOL = SegmentInfo(1, "LV blood pool", (0.85, 0.20, 0.20), ANATOMY,
                            TerminologyCode("87878005", "SCT", "Left ventricle"))
LV_MYOCARDIUM = SegmentInfo(2, "LV myocardium", (0.95, 0.75, 0.45), TISSUE,
                            TerminologyCode("74281007", "SCT", "Myocardium"))
RV_BLOOD_POOL = SegmentInfo(3, "RV blood pool", (0.25, 0.45, 0.90), ANATOMY,
                            TerminologyCode("53085002", "SCT", "Right ventricle"))
CARDIAC_SEGMENTS = (LV_BLOOD_POOL, LV_MYOCARDIUM, RV_BLOOD_POOL)

#: Myocardial density used for LV mass (g/mL), the usual CMR convention.
MYOCARDIUM_DENSITY_G_PER_ML = 1.05


def _volume_fraction(phase: float, es_phase: float) -> float:
    """Smooth periodic weight: 1 at ED (phase 0), 0 at ES (``es_phase``), cosine in between."""
    if phase <= es_phase:
        return 0.5 * (1.0 + np.cos(np.pi * phase / es_phase))
    return 0.5 * (1.0 - np.cos(np.pi * (phase - es_phase) / (1.0 - es_phase)))


def cardiac_cine_phantom(n_phases: int = 20, heart_rate_bpm: float = 60.0, edv_ml: float = 120.0,
                         esv_ml: float = 50.0, rv_edv_ml: Optional[float] = None, rv_esv_ml: Optional[float] = None,
                         wall_mm: float = 8.0, spacing_mm: Sequence[float] = (1.5, 1.5, 2.5),
                         shape_ijk: Sequence[int] = (96, 96, 52), seed: int = 0) -> tuple[list[Image], list[Image], dict]:
    """Short-axis cine MR phantom: prolate LV blood pool, LV myocardium shell, RV pool.

    Volume curve ``V(t) = ESV + (EDV - ESV) w(t)`` with ``w`` 1 at ED (phase 0) and 0 at ES
    (``truth["es_index"]`` ≈ 35 % of the cycle), cosine-shaped in systole and diastole. The LV
    cavity's long semi-axis is ``c = c_ED (V/EDV)^(1/6)`` and short semi-axes ``sqrt(3V/(4πc))``; the
    myocardium (constant volume, incompressible) is the outer ellipsoid (long semi-axis c + wall)
    minus the cavity. The grid is oblique (short-axis orientation: k along the LV long axis).
    Labels: 1 LV blood pool, 2 LV myocardium, 3 RV blood pool. Returns ``(images, labelmaps, truth)``.
    """
    if not (0 < esv_ml < edv_ml):
        raise GeometryError(f"Need 0 < ESV < EDV, got ESV {esv_ml} mL, EDV {edv_ml} mL.")
    if n_phases < 3:
        raise GeometryError("A cine needs at least 3 phases.")
    rv_edv_ml = 1.1 * edv_ml if rv_edv_ml is None else rv_edv_ml
    rv_esv_ml = 1.2 * esv_ml if rv_esv_ml is None else rv_esv_ml
    long_axis = np.array([0.55, -0.45, -0.70])
    long_axis /= np.linalg.norm(long_axis)
    i_axis = np.cross(long_axis, [0.0, 0.0, 1.0])
    i_axis /= np.linalg.norm(i_axis)
    direction = np.column_stack([i_axis, np.cross(long_axis, i_axis), long_axis])
    grid = centred_grid(shape_ijk, spacing_mm, (0.0, 0.0, 0.0), direction,
                        {"patient_id": "RADAI-PHANTOM-CINE", "modality": "MR"})
    axes = tuple(map(tuple, direction))
    aspect = 1.6
    edv, esv = edv_ml * 1000.0, esv_ml * 1000.0
    c_ed = (3.0 * edv * aspect ** 2 / (4.0 * np.pi)) ** (1.0 / 3.0)
    outer_ed_long = c_ed + wall_mm
    outer_ed_short = np.sqrt(3.0 * edv / (4.0 * np.pi * c_ed)) + wall_mm
    myocardium = 4.0 / 3.0 * np.pi * outer_ed_short ** 2 * outer_ed_long - edv
    rv_shape = np.array([0.5, 1.25, 0.9])
    rv_radius_ed = (3.0 * rv_edv_ml * 1000.0 / (4.0 * np.pi * np.prod(rv_shape))) ** (1.0 / 3.0)
    lv_centre = -direction[:, 0] * (rv_radius_ed * rv_shape[0] + 1.0)
    rv_centre = lv_centre + direction[:, 0] * (outer_ed_short + 3.0 + rv_radius_ed * rv_shape[0])
    rr_ms = 60000.0 / heart_rate_bpm
    es_index = int(round(0.35 * n_phases))
    rng = np.random.default_rng(seed)
    kk, jj, ii = np.meshgrid(*(np.arange(n) for n in grid.array.shape), indexing="ij")
    points = grid.index_to_lps(np.stack([ii, jj, kk], axis=-1).reshape(-1, 3).astype(float))
    body = ((points[:, 0] / 150.0) ** 2 + (points[:, 1] / 110.0) ** 2 <= 1.0).reshape(grid.array.shape)
    background = np.where(body, 300.0, 0.0)

    images, labelmaps, phases = [], [], []
    for index in range(n_phases):
        weight = _volume_fraction(index / n_phases, es_index / n_phases)
        volume = esv + (edv - esv) * weight
        rv_volume = (rv_esv_ml + (rv_edv_ml - rv_esv_ml) * weight) * 1000.0
        c = c_ed * (volume / edv) ** (1.0 / 6.0)
        a = np.sqrt(3.0 * volume / (4.0 * np.pi * c))
        outer_long = c + wall_mm
        outer_short = np.sqrt(3.0 * (volume + myocardium) / (4.0 * np.pi * outer_long))
        cavity = Ellipsoid(tuple(lv_centre), (a, a, c), axes)
        outer = Ellipsoid(tuple(lv_centre), (outer_short, outer_short, outer_long), axes)
        rv_radius = (3.0 * rv_volume / (4.0 * np.pi * np.prod(rv_shape))) ** (1.0 / 3.0)
        rv = Ellipsoid(tuple(rv_centre), tuple(rv_radius * rv_shape), axes)
        signal = background.copy()
        labels = np.zeros(grid.array.shape, dtype=np.uint8)
        for shape, label, value in ((outer, LV_MYOCARDIUM.label, 120.0), (cavity, LV_BLOOD_POOL.label, 900.0),
                                    (rv, RV_BLOOD_POOL.label, 880.0)):
            frac = ellipsoid_fraction(grid, shape)
            _blend(signal, *frac, value)
            labels[ellipsoid_mask(grid, shape, fraction=frac)] = label
        signal += rng.normal(0.0, 20.0, size=signal.shape) * body
        time_ms = index * rr_ms / n_phases
        images.append(grid.with_array(np.clip(np.round(signal), 0, 4095).astype(np.int16), modality="MR",
                                      trigger_time_ms=time_ms, cardiac_phase_index=index, heart_rate_bpm=heart_rate_bpm))
        labelmaps.append(grid.with_array(labels, segments=CARDIAC_SEGMENTS, modality="SEG",
                                         trigger_time_ms=time_ms, cardiac_phase_index=index, heart_rate_bpm=heart_rate_bpm))
        counts = {label: int(np.count_nonzero(labels == label)) for label in (1, 2, 3)}
        phases.append({"index": index, "time_ms": time_ms,
                       "lv_volume_ml": volume / 1000.0, "myocardium_volume_ml": myocardium / 1000.0,
                       "rv_volume_ml": rv_volume / 1000.0,
                       "lv_voxel_volume_ml": counts[1] * grid.voxel_volume_mm3 / 1000.0,
                       "myocardium_voxel_volume_ml": counts[2] * grid.voxel_volume_mm3 / 1000.0,
                       "rv_voxel_volume_ml": counts[3] * grid.voxel_volume_mm3 / 1000.0,
                       "lv_semi_axes_mm": [a, a, c]})
    stroke = edv_ml - esv_ml
    truth = {
        "phases": phases, "ed_index": 0, "es_index": es_index, "n_phases": n_phases,
        "times_ms": [phase["time_ms"] for phase in phases],
        "lv_volumes_ml": [phase["lv_volume_ml"] for phase in phases],
        "rv_volumes_ml": [phase["rv_volume_ml"] for phase in phases],
        "heart_rate_bpm": heart_rate_bpm, "rr_interval_ms": rr_ms,
        "edv_ml": edv_ml, "esv_ml": esv_ml, "stroke_volume_ml": stroke, "ef_percent": 100.0 * stroke / edv_ml,
        "cardiac_output_l_per_min": stroke * heart_rate_bpm / 1000.0,
        "rv_edv_ml": rv_edv_ml, "rv_esv_ml": rv_esv_ml, "rv_ef_percent": 100.0 * (rv_edv_ml - rv_esv_ml) / rv_edv_ml,
        "myocardium_volume_ml": myocardium / 1000.0,
        "lv_mass_g": myocardium / 1000.0 * MYOCARDIUM_DENSITY_G_PER_ML,
        "myocardium_density_g_per_ml": MYOCARDIUM_DENSITY_G_PER_ML,
        "lv_centre_ras": geometry.lps_to_ras(lv_centre).tolist(), "rv_centre_ras": geometry.lps_to_ras(rv_centre).tolist(),
        "long_axis_lps": long_axis.tolist(), "label_names": {info.label: info.name for info in CARDIAC_SEGMENTS},
    }
    return images, labelmaps, truth

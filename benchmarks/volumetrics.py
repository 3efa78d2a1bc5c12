"""Full measurement table: RadAI vs SimpleITK label statistics vs the VTK closed-surface path.

Data: a 512x512x300 labelmap (0.7 x 0.7 x 1.5 mm) with 20 ellipsoids of assorted sizes and a
CT-like image (HU with noise). Three ways to tabulate all 20 labels, run in the same process:

* RadAI: ``measure_segments(labelmap, image)`` -- voxel volume, PyRadiomics mesh volume /
  surface area / sphericity, exact 3D and the three 2D diameters, principal axes, RECIST axes,
  centroid, oriented box, connected components, intensity statistics.
* SimpleITK (peer for what it covers): ``LabelShapeStatisticsImageFilter`` (ComputeFeretDiameter
  and ComputePerimeter on: voxel count, physical size, Feret diameter, perimeter, principal
  moments, centroid, oriented box) + ``LabelIntensityStatisticsImageFilter`` (mean, SD, min, max,
  median).
* VTK (the Slicer Segment Statistics closed-surface path): per label, a binary crop padded by 1
  voxel, ``vtkDiscreteFlyingEdges3D`` + ``vtkMassProperties`` (volume and surface area only).

    python benchmarks/volumetrics.py [--json] [--repeats N]

Prints seconds per method and ratios; ``--json`` prints at least ``seconds_full_table`` and
``speedup_vs_simpleitk`` (= SimpleITK seconds / RadAI seconds; > 1 means RadAI is faster).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RadAISegment"))
sys.path.insert(0, str(ROOT / "RadAIVolumetrics"))

from RadAISegmentLib.image import Image  # noqa: E402
from RadAIVolumetricsLib.measurements import measure_segments  # noqa: E402

SHAPE_KJI = (300, 512, 512)
SPACING_MM = (0.7, 0.7, 1.5)      # (i, j, k)
N_LABELS = 20


def make_case(seed: int = 0) -> tuple[Image, Image]:
    """Labelmap with ``N_LABELS`` non-overlapping ellipsoids (semi-axes 4..40 mm) and a HU image."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE_KJI, np.uint8)
    spacing_kji = np.asarray(SPACING_MM)[::-1]
    cells = [(a, b, c) for a in range(2) for b in range(4) for c in range(3)][:N_LABELS]  # 2x4x3 grid of cells
    cell_size = np.asarray(SHAPE_KJI) // np.array([2, 4, 3])
    for label, cell in enumerate(cells, start=1):
        max_semi_mm = cell_size * spacing_kji / 2.0 * 0.9
        semi_mm = np.minimum(rng.uniform(4.0, 40.0, 3), max_semi_mm)
        centre = (np.asarray(cell) + 0.5) * cell_size + rng.uniform(-0.5, 0.5, 3)
        half = np.ceil(semi_mm / spacing_kji).astype(int) + 1
        low = np.maximum(np.floor(centre).astype(int) - half, 0)
        high = np.minimum(np.floor(centre).astype(int) + half + 1, SHAPE_KJI)
        k, j, i = np.ogrid[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        q = (((k - centre[0]) * spacing_kji[0] / semi_mm[0]) ** 2 + ((j - centre[1]) * spacing_kji[1] / semi_mm[1]) ** 2
             + ((i - centre[2]) * spacing_kji[2] / semi_mm[2]) ** 2)
        region = labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        region[q <= 1.0] = label
    hu = (rng.normal(0.0, 15.0, SHAPE_KJI) + labels.astype(np.float32) * 10.0 - 50.0).astype(np.int16)
    image = Image(hu, SPACING_MM)
    return image, image.with_array(labels)


def timed(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def radai_table(image: Image, labelmap: Image) -> list[dict]:
    return measure_segments(labelmap, image)


def simpleitk_table(image: Image, labelmap: Image) -> dict:
    import SimpleITK as sitk
    labels_sitk = sitk.GetImageFromArray(labelmap.array)
    image_sitk = sitk.GetImageFromArray(image.array)
    for volume in (labels_sitk, image_sitk):
        volume.SetSpacing(SPACING_MM)
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.ComputeFeretDiameterOn()
    shape.ComputePerimeterOn()
    shape.ComputeOrientedBoundingBoxOn()
    shape.Execute(labels_sitk)
    intensity = sitk.LabelIntensityStatisticsImageFilter()
    intensity.Execute(labels_sitk, image_sitk)
    return {label: {"volume_mm3": shape.GetPhysicalSize(label), "feret_mm": shape.GetFeretDiameter(label),
                    "perimeter_mm2": shape.GetPerimeter(label), "mean": intensity.GetMean(label),
                    "median": intensity.GetMedian(label)} for label in shape.GetLabels()}


def vtk_closed_surface_table(labelmap: Image) -> dict:
    """Slicer's closed-surface statistics: per-label cropped binary -> flying edges -> mass properties."""
    import vtk
    from scipy import ndimage
    from vtk.util import numpy_support
    spacing_kji = np.asarray(SPACING_MM)[::-1]
    rows = {}
    for label, box in enumerate(ndimage.find_objects(labelmap.array), start=1):
        if box is None:
            continue
        crop = np.pad((labelmap.array[box] == label).astype(np.uint8), 1)
        data = vtk.vtkImageData()
        data.SetDimensions(crop.shape[2], crop.shape[1], crop.shape[0])
        data.SetSpacing(*SPACING_MM)
        data.SetOrigin(*[(s.start - 1) * sp for s, sp in zip(box[::-1], spacing_kji[::-1])])
        data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(crop.ravel(), deep=True))
        surface = vtk.vtkDiscreteFlyingEdges3D()
        surface.SetInputData(data)
        surface.SetValue(0, 1)
        surface.ComputeNormalsOff()
        triangles = vtk.vtkTriangleFilter()
        triangles.SetInputConnection(surface.GetOutputPort())
        mass = vtk.vtkMassProperties()
        mass.SetInputConnection(triangles.GetOutputPort())
        mass.Update()
        rows[label] = {"volume_mm3": mass.GetVolume(), "surface_area_mm2": mass.GetSurfaceArea()}
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print a JSON summary only")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per method (default 2)")
    args = parser.parse_args(argv)

    image, labelmap = make_case()
    seconds_radai, rows = timed(lambda: radai_table(image, labelmap), args.repeats)
    seconds_sitk, sitk_rows = timed(lambda: simpleitk_table(image, labelmap), args.repeats)
    seconds_vtk, vtk_rows = timed(lambda: vtk_closed_surface_table(labelmap), args.repeats)

    # agreement on what the peers also compute (relative differences, worst over labels)
    volume_diff = max(abs(r["volume_mm3"] - sitk_rows[r["label"]]["volume_mm3"]) / r["volume_mm3"] for r in rows)
    mean_diff = max(abs(r["intensity"]["mean"] - sitk_rows[r["label"]]["mean"]) for r in rows)
    feret_diff = max(abs(r["max_3d_diameter_mm"] - sitk_rows[r["label"]]["feret_mm"]) / r["max_3d_diameter_mm"]
                     for r in rows)
    mesh_diff = max(abs(r["mesh_volume_mm3"] - vtk_rows[r["label"]]["volume_mm3"]) / r["mesh_volume_mm3"] for r in rows)
    area_diff = max(abs(r["surface_area_mm2"] - vtk_rows[r["label"]]["surface_area_mm2"]) / r["surface_area_mm2"]
                    for r in rows)
    summary = {
        "shape_kji": list(SHAPE_KJI), "labels": len(rows),
        "seconds_full_table": round(seconds_radai, 3),
        "seconds_simpleitk": round(seconds_sitk, 3),
        "seconds_vtk_closed_surface": round(seconds_vtk, 3),
        "speedup_vs_simpleitk": round(seconds_sitk / seconds_radai, 3),
        "speedup_vs_vtk_closed_surface": round(seconds_vtk / seconds_radai, 3),
        "max_rel_diff_volume_vs_simpleitk": volume_diff,
        "max_abs_diff_mean_hu_vs_simpleitk": mean_diff,
        "max_rel_diff_max3d_vs_simpleitk_feret": feret_diff,
        "max_rel_diff_mesh_volume_vs_vtk": mesh_diff,
        "max_rel_diff_surface_area_vs_vtk": area_diff,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"RadAI full table ({len(rows)} labels, {SHAPE_KJI}): {seconds_radai:.2f} s")
        print(f"SimpleITK shape(+Feret, perimeter, OBB) + intensity: {seconds_sitk:.2f} s "
              f"-> RadAI speedup x{summary['speedup_vs_simpleitk']:.2f}")
        print(f"VTK closed surface (flying edges + mass properties): {seconds_vtk:.2f} s "
              f"-> RadAI speedup x{summary['speedup_vs_vtk_closed_surface']:.2f}")
        print(f"agreement: voxel volume {volume_diff:.2e} rel, mean HU {mean_diff:.2e}, "
              f"max3D vs Feret {feret_diff:.3f} rel (Feret is voxel-centre based), "
              f"mesh volume vs VTK {mesh_diff:.3f} rel, area vs VTK {area_diff:.3f} rel")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate the README pictures of the RadAI modules from a real MRML scene, offscreen.

    .venv/bin/python docs/screenshots.py [--out docs/images]

No Qt window exists on the build machines, so the module's Logic builds the scene on the headless
Slicer core exactly as its buttons do, and the scene's nodes are drawn: the measurement table node
(names and units from the measurement info), the RECIST line markups on the axial slice, the
tracked-lesion segmentation nodes (3D, offscreen VTK) and the volume-over-time chart's data.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "Testing"))

from slicer_harness import load_module_file, start_headless_slicer  # noqa: E402

MEASURE_ROWS = [("volume_ml", "Volume"), ("mesh_volume_mm3", "Mesh volume"), ("surface_area_mm2", "Surface area"),
                ("sphericity", "Sphericity"), ("max_3d_diameter_mm", "Max 3D diameter"),
                ("recist_long_axis_mm", "RECIST long axis"), ("recist_short_axis_mm", "RECIST short axis"),
                ("intensity_mean", "Mean intensity"), ("intensity_sd", "Intensity SD"), ("connected_components", "Components")]


def _line_voxels(image, line_node, steps: int = 400) -> np.ndarray:
    """Voxel indices (k, j, i) along a line markup (RAS control points) on ``image``'s grid."""
    ends = []
    for index in range(2):
        point = [0.0, 0.0, 0.0]
        line_node.GetNthControlPointPositionWorld(index, point)
        ends.append(np.asarray(point))
    points = np.linspace(ends[0], ends[1], steps)
    ijk = np.round(image.ras_to_index(points)).astype(int)
    return ijk[:, ::-1]


def measurement_picture(logic_module, scene, out_png: Path) -> Path:
    """Lung tumour: Measure with RECIST axes; axial slice with outline and axes | the table node."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from RadAISegmentLib.image import SegmentInfo
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    from RadAISegmentLib.render_slices import display_index_of_ras, render_slice
    from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case
    from RadAIVolumetricsLib.mrml import rows_from_table_node
    case = sample_case("lung-tumour")
    image = read_image(case["image"])
    lesion = load_sample_labelmap("lung-tumour")        # yellow: the outline stands apart from the axes
    volume = volume_node_from_image(image, "lung-tumour CT", scene)
    segmentation = segmentation_node_from_labelmap(lesion, "lung-tumour lesion", volume)
    table = logic_module.RadAIVolumetricsLogic().measure(segmentation, volume, drawRecistAxes=True)
    lines = [scene.GetNthNodeByClass(i, "vtkMRMLMarkupsLineNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode"))]
    picture = np.zeros(lesion.array.shape, np.uint8)
    for value, line in ((2, lines[0]), (3, lines[1])):
        k, j, i = _line_voxels(image, line).T
        picture[k, j, i] = value
    segments = (lesion.segments[0] if lesion.segments else SegmentInfo(1, "Lesion", (0.95, 0.35, 0.2)),
                SegmentInfo(2, "RECIST long axis", (0.2, 0.9, 0.3)), SegmentInfo(3, "RECIST short axis", (0.3, 0.6, 1.0)))
    middle = [0.0, 0.0, 0.0]
    lines[0].GetNthControlPointPositionWorld(0, middle)                 # on the axial slice of the long axis
    axial_index = display_index_of_ras(image, middle)[0]
    with tempfile.TemporaryDirectory() as tmp:
        def draw(labelmap, fill_alpha=0.15):
            return render_slice(image, Path(tmp) / "axial.png", labelmap=labelmap, index=axial_index,
                                window=(-600.0, 1600.0), fill_alpha=fill_alpha)
        plain, outlined = draw(None), draw(lesion)
        axes_only = draw(lesion.with_array(np.where(picture > 1, picture, 0).astype(np.uint8), segments=segments),
                         fill_alpha=1.0)
    pixels = np.where(np.any(axes_only != plain, axis=2, keepdims=True), axes_only, outlined)
    row = rows_from_table_node(table)[0]
    units = {table.GetTable().GetColumnName(c): table.GetColumnUnitLabel(table.GetTable().GetColumnName(c))
             for c in range(table.GetTable().GetNumberOfColumns())}
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.6), gridspec_kw={"width_ratios": [1.1, 1]})
    centre = np.argwhere(np.any(pixels != pixels[..., :1], axis=2)).mean(axis=0).astype(int)
    half = 70
    left.imshow(pixels[max(centre[0] - half, 0):centre[0] + half, max(centre[1] - half, 0):centre[1] + half])
    left.set_title("Axial slice: lesion outline, RECIST long (green)\nand short (blue) axes from the line markups",
                   fontsize=9)
    left.axis("off")
    cells = [[label, f"{row[key]:.4g}" if isinstance(row[key], float) else str(row[key]), units.get(key, "")]
             for key, label in MEASURE_ROWS if key in row]
    right.axis("off")
    right.set_title(f"Table node '{table.GetName()}' (first row of {table.GetNumberOfRows()})", fontsize=9)
    grid = right.table(cellText=cells, colLabels=["Measure", "Value", "Unit"], loc="center", cellLoc="left")
    grid.scale(1.0, 1.45)
    figure.suptitle("RadAI Volumetrics — Measurements tab (lung-tumour sample, Draw RECIST axes on)", fontsize=11)
    from RadAIVolumetricsLib.report import save_figure
    return save_figure(figure, out_png)


def longitudinal_picture(logic_module, scene, out_png: Path) -> Path:
    """Phantom pair: Compare timepoints; tracked lesions in 3D at both timepoints | volume over time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import image as mpl_image
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    from RadAISegmentLib.phantoms import followup_pair_phantom
    from RadAISegmentLib.render import render_scene_3d
    from RadAIVolumetricsLib.mrml import rows_from_table_node
    base_ct, base_labels, follow_ct, follow_labels, _ = followup_pair_phantom()
    volumes, segmentations = [], []
    for ct, labels, name in ((base_ct, base_labels, "baseline"), (follow_ct, follow_labels, "follow-up")):
        lesions = labels.with_array((labels.array == max(labels.label_values())).astype(np.uint8))
        volumes.append(volume_node_from_image(ct, name, scene))
        segmentations.append(segmentation_node_from_labelmap(lesions, f"{name} lesions", volumes[-1]))
    outputs = logic_module.RadAIVolumetricsLogic().trackLesions(volumes, segmentations,
                                                                [dt.date(2025, 1, 1), dt.date(2025, 4, 1)])
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    from RadAISegmentLib.mrml import labelmap_from_segmentation_node
    from RadAISegmentLib.render import segment_bounds_ras, union_bounds
    # one frame (the box around both timepoints' lesions) for both pictures: the same scale, so sizes compare
    box = union_bounds([segment_bounds_ras(labelmap_from_segmentation_node(node)) for node in outputs["segmentations"]])
    with tempfile.TemporaryDirectory() as tmp:
        for ax, node, title in zip(axes[:2], outputs["segmentations"], ("Baseline 2025-01-01", "Follow-up 2025-04-01")):
            png = Path(tmp) / f"{node.GetID()}.png"
            render_scene_3d([node], png, size=(420, 360), camera="anterior", focus_bounds_ras=box, margin=1.45)
            ax.imshow(mpl_image.imread(str(png)))
            names = [node.GetSegmentation().GetNthSegment(i).GetName()
                     for i in range(node.GetSegmentation().GetNumberOfSegments())]
            ax.set_title(f"{title}\n" + ", ".join(names), fontsize=8)
            ax.axis("off")
    chart = outputs["chart"]
    for index in range(chart.GetNumberOfPlotSeriesNodes()):
        series = chart.GetNthPlotSeriesNode(index)
        rows = rows_from_table_node(series.GetTableNode())
        axes[2].plot([r[series.GetXColumnName()] for r in rows], [r[series.GetYColumnName()] for r in rows], "-o",
                     color=series.GetColor(), label=series.GetName())
    axes[2].set_xlabel(chart.GetXAxisTitle())
    axes[2].set_ylabel(chart.GetYAxisTitle())
    axes[2].legend(fontsize=8)
    result = outputs["result"].to_json()
    axes[2].set_title(f"Plot chart '{chart.GetName()}'\nRECIST 1.1: {result['recist_response']}, "
                      f"volumetric: {result['volumetric_response']}", fontsize=8)
    figure.suptitle("RadAI Volumetrics — Longitudinal tab (phantom pair: patient moved, one lesion grew, one shrank, "
                    "one appeared); a lesion keeps its colour at every timepoint", fontsize=10)
    from RadAIVolumetricsLib.report import save_figure
    return save_figure(figure, out_png)


def saliency_method_name(model_id: str) -> str:
    """The saliency method the model's card names (what Explain runs), as users read it."""
    from RadAISegmentLib.models.cache import find_model
    from RadAISegmentLib.saliency import METHOD_NAMES
    method = (find_model(model_id).as_dict().get("saliency") or {}).get("method", "gradcam")
    return METHOD_NAMES.get(method, method)


def segment_picture(segment_module, scene, out_png: Path) -> Path:
    """Lung tumour: one seed, Apply (lesion-roi) and Explain, as the RadAISegment buttons do; the scene's volume,
    segmentation and Grad-CAM nodes drawn as the demo draws a case (:func:`render_case.lesion_pictures`): the tumour
    among landmarks of the whole chest from the front and from its side, and a Grad-CAM close-up, side by side."""
    import numpy as np
    from matplotlib import image as mpl_image
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.mrml import image_from_volume_node, labelmap_from_segmentation_node
    from RadAISegmentLib.render_case import lesion_pictures
    from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case, sample_context_path
    seed_ras, box_mm, _ = case_prompt(load_sample_labelmap("lung-tumour"))
    logic = segment_module.RadAISegmentLogic()
    volume = logic.loadVolume(str(sample_case("lung-tumour")["image"]), "lung")
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesion seeds")
    seeds.AddControlPointWorld(*[float(v) for v in seed_ras])
    parameters = logic.getParameterNode()
    parameters.inputVolume, parameters.seedPoints, parameters.modelId = volume, seeds, "lesion-roi"
    parameters.device, parameters.boxSizeMm = "cpu", float(np.round(box_mm))
    job = logic.startSegmentation(parameters)
    if not job.wait(300):
        raise RuntimeError("lesion-roi did not finish within 5 minutes")
    segmentation = logic.finishSegmentation(job)
    saliency = logic.explainSegmentation(volume, "lesion-roi", seedRAS=seed_ras, opacity=0.6,
                                         boxMm=parameters.boxSizeMm)   # as the Widget does
    image = image_from_volume_node(volume)
    with tempfile.TemporaryDirectory() as tmp:
        pictures = lesion_pictures(image, labelmap_from_segmentation_node(segmentation, image), tmp,
                                   saliency=image_from_volume_node(saliency),
                                   context_image=read_image(sample_context_path("lung-tumour")),
                                   size=(460, 420), saliency_name=saliency_method_name("lesion-roi"))
        panels = [mpl_image.imread(path)[..., :3] for path, _ in pictures[:3]]
    from RadAISegmentLib.atomic import atomic_path
    gap = np.ones((panels[0].shape[0], 6, 3))
    with atomic_path(out_png) as tmp:
        mpl_image.imsave(str(tmp), np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1), format="png")
    return out_png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "images"))
    args = parser.parse_args(argv)
    slicer = start_headless_slicer()
    module = load_module_file("RadAIVolumetrics/RadAIVolumetrics.py", "_radai_volumetrics_screenshots")
    out = Path(args.out)
    segment = load_module_file("RadAISegment/RadAISegment.py", "_radai_segment_screenshots")
    print(segment_picture(segment, slicer.mrmlScene, out / "segment-3d.png"))
    print(measurement_picture(module, slicer.mrmlScene, out / "volumetrics-measure.png"))
    print(longitudinal_picture(module, slicer.mrmlScene, out / "volumetrics-longitudinal.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``radai demo``: the whole pipeline on the bundled real cases and phantoms, with one HTML report.

Steps (each timed, each isolated — a failing step is reported and the others run):
1. lesion: the shipped ``lesion-roi`` model segments a real lung tumour from one seed; measures;
   Dice against the bundled reference mask; Grad-CAM; 3D and slice renderings.
2. organs: measures on the bundled organ-labelled abdominal CT (TotalSegmentator example).
3. cardiac: EF, mass and volume–time curve of the analytic cardiac cine phantom (truth shown beside).
4. longitudinal: follow-up phantom pair with known motion and lesion change: registration,
   matching, RECIST 1.1 and volumetric response.
Everything runs offline on the CPU.
"""
from __future__ import annotations

import json
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .report import HtmlReport
from .viewer import ViewerCase


@dataclass
class DemoContext:
    out_dir: Path
    report: HtmlReport
    say: Callable[[str], None]
    timings: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    models_used: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)


#: CT window (level, width) in HU for a tumour in the lung: lung tissue grey, soft tissue and bone light.
LUNG_WINDOW = (-500.0, 1400.0)

MEASURE_COLUMNS = [("name", "Segment"), ("volume_ml", "Volume (mL)"), ("mesh_volume_mm3", "Mesh volume (mm³)"),
                   ("surface_area_mm2", "Surface (mm²)"), ("sphericity", "Sphericity"),
                   ("max_3d_diameter_mm", "Max 3D diameter (mm)"), ("recist_long_axis_mm", "RECIST long (mm)"),
                   ("recist_short_axis_mm", "RECIST short (mm)")]


def step_lesion(ctx: DemoContext) -> None:
    from RadAISegmentLib.inference import run_model
    from RadAISegmentLib.io import VOLUME_RANGE_KEY, read_image, read_labelmap, write_image
    from RadAISegmentLib.render_case import lesion_pictures
    from RadAISegmentLib.sample_data import sample_case, sample_context_path
    from RadAISegmentLib.saliency import METHOD_NAMES, explain_image
    from .measurements import measure_segments
    from .validation.metrics import overlap_metrics

    case = sample_case("lung-tumour")
    image = read_image(case["image"])
    reference = read_labelmap(case["labels"], reference=image)
    from RadAISegmentLib.lesion.evaluate import case_prompt
    seed_ras, box_mm, _ = case_prompt(reference)      # the click a reader makes and the box they drag
    seed_ras = tuple(float(v) for v in seed_ras)
    ctx.say(f"lesion: segmenting the lung tumour from seed RAS {tuple(round(v, 1) for v in seed_ras)} mm, "
            f"box {box_mm:.0f} mm")
    started = time.perf_counter()
    labelmap = run_model(image, "lesion-roi", seeds_ras=[seed_ras], box_mm=box_mm)
    ctx.timings["lesion segmentation (s)"] = time.perf_counter() - started
    ctx.models_used.add("lesion-roi")
    write_image(labelmap, ctx.out_dir / "lesion" / "lesion.seg.nrrd")
    measures = measure_segments(labelmap, image)
    ranges = labelmap.metadata.get(VOLUME_RANGE_KEY) or {}
    for row in measures:                              # the model's stated range (lesion.uncertainty)
        stated = ranges.get(row.get("label"))
        if stated:
            row["volume_range_ml"] = [float(stated[0]), float(stated[1])]
            row["volume_range_text"] = f"{stated[0]:.2f}–{stated[1]:.2f}"
    (ctx.out_dir / "lesion" / "measurements.json").write_text(json.dumps({"segments": measures}, indent=2, default=float))
    agreement = overlap_metrics(labelmap.array > 0, reference.array > 0, image.spacing_mm)
    ctx.say("lesion: Grad-CAM")
    started = time.perf_counter()
    saliency = explain_image(image, "lesion-roi", seed_ras=seed_ras, box_mm=box_mm)
    ctx.timings["lesion Grad-CAM (s)"] = time.perf_counter() - started
    write_image(saliency.map, ctx.out_dir / "lesion" / "saliency.nii.gz")
    method = METHOD_NAMES.get(str(saliency.metadata.get("method")), "Saliency")
    context_path = sample_context_path("lung-tumour")
    chest = read_image(context_path) if context_path else None
    pictures = lesion_pictures(image, labelmap, ctx.out_dir / "lesion", saliency=saliency.map, context_image=chest,
                               callout_text={int(row["label"]): f"{row['name']} {row['volume_ml']:.1f} mL, "
                                             f"{row['max_3d_diameter_mm']:.0f} mm across" for row in measures
                                             if "label" in row},
                               window=LUNG_WINDOW, saliency_name=method)
    ctx.report.heading("1. Lung tumour from one click", anchor="lesion")
    ctx.report.paragraph(f"Real chest CT (PyRadiomics test case lung1, cropped). Seed at RAS "
                         f"{', '.join(f'{v:.1f}' for v in seed_ras)} mm (the centre of the reference mask, as a reader "
                         f"would click) and a {box_mm:.0f} mm box around the tumour. Model: lesion-roi on the CPU.")
    ctx.report.table(measures, MEASURE_COLUMNS[:2] + [("volume_range_text", "Stated range (mL)")] + MEASURE_COLUMNS[2:],
                     caption="Measurements of the segmented tumour (IBSI / PyRadiomics definitions)")
    ctx.report.paragraph("The stated range is how far to trust the volume: from the model's own probabilities "
                         "(calibrated on held-aside synthetic lesions) and never narrower than half a voxel on each "
                         "side of the outline — wide here because the CT's slices are 5 mm thick. A range says how "
                         "open the volume is, not that the outline is right: look at the outline "
                         "(docs/lesion-model.md).")
    ctx.report.key_values([("Dice vs reference mask", agreement.dice), ("HD95 (mm)", agreement.hd95_mm),
                           ("Volume error (%)", agreement.volume_error_percent)],
                          caption="Agreement with the expert reference mask (this case is an evaluation case: it was never used for training)")
    for path, caption in pictures:
        ctx.report.image(path, caption)
    ctx.report.paragraph(f"Saliency method: {saliency.metadata.get('method')}, layer "
                         f"{saliency.metadata.get('layer', '—')}. Warm colours mark the image regions that most "
                         "increased the model's lesion score; they show what the model looked at, not proof that it is right.")
    ctx.report.viewer(lesion_viewer_case(image, labelmap, saliency.map, method, chest))
    ctx.facts["lesion_dice"] = agreement.dice


def step_organs(ctx: DemoContext) -> None:
    from RadAISegmentLib.anatomy import atlas_colours
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.models.catalogue_status import run_demo_organ_model
    from RadAISegmentLib.render_case import atlas_pictures
    from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case
    from .measurements import measure_segments

    case = sample_case("abdomen-ct")
    image = read_image(case["image"])
    labelmap = atlas_colours(load_sample_labelmap("abdomen-ct"))
    organ_model = run_demo_organ_model(image)         # an installed organ model's output, or why there is none
    if organ_model.labelmap is not None:
        labelmap = atlas_colours(organ_model.labelmap)
        ctx.models_used.add(organ_model.model_id)
        ctx.timings["organ segmentation (s)"] = organ_model.seconds
    ctx.say(f"organs: {organ_model.message}")
    ctx.say(f"organs: measuring {len(labelmap.label_values())} labelled structures")
    started = time.perf_counter()
    measures = measure_segments(labelmap, image)
    ctx.timings["organ measurements (s)"] = time.perf_counter() - started
    (ctx.out_dir / "organs").mkdir(parents=True, exist_ok=True)
    (ctx.out_dir / "organs" / "measurements.json").write_text(json.dumps({"segments": measures}, indent=2, default=float))
    largest = sorted(measures, key=lambda row: -row["volume_ml"])[:12]
    pictures = atlas_pictures(image, labelmap, ctx.out_dir / "organs")
    ctx.report.heading("2. Organ measurements", anchor="organs")
    ctx.report.paragraph(organ_model.message)
    ctx.report.paragraph("Real abdominal CT at 3 mm with reference organ labels (TotalSegmentator example, Apache-2.0). "
                         "Volumes are voxel count × voxel volume, as Slicer's Segment Statistics; structures cut by the "
                         "scan's edge are only partly inside it.")
    ctx.report.table(largest, MEASURE_COLUMNS, caption="The twelve largest structures")
    for path, caption in pictures:
        ctx.report.image(path, caption)
    ctx.report.viewer(ViewerCase("Explore the organs: slices and 3D", image, labelmap, image_name="CT", unit="HU",
                                 window=(-160.0, 240.0)))


def step_cardiac(ctx: DemoContext) -> None:
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    from .cardiac import ejection_fraction_from_sequence, plot_volume_curve

    ctx.say("cardiac: ejection fraction of the cine phantom")
    images, labelmaps, truth = cardiac_cine_phantom()
    started = time.perf_counter()
    result = ejection_fraction_from_sequence(labelmaps, label="LV blood pool", myocardium="LV myocardium",
                                             heart_rate_bpm=truth.get("heart_rate_bpm", 60))
    ctx.timings["ejection fraction (s)"] = time.perf_counter() - started
    curve_png = plot_volume_curve(result, ctx.out_dir / "cardiac" / "volume_curve.png")
    ctx.report.heading("3. Ejection fraction", anchor="cardiac")
    ctx.report.paragraph("Analytic cardiac cine phantom (20 phases): the left-ventricular blood pool is an ellipsoid whose "
                         "volume over the cycle is known in closed form, so the measured EF can be checked exactly.")
    ctx.report.key_values([("EDV (mL)", result["edv_ml"]), ("ESV (mL)", result["esv_ml"]),
                           ("Stroke volume (mL)", result["stroke_volume_ml"]),
                           ("EF (%)", result["ejection_fraction_percent"]),
                           ("EF, analytic truth (%)", truth.get("ef_percent")),
                           ("LV myocardial mass (g)", result.get("myocardial_mass_g")),
                           ("Cardiac output (L/min)", result.get("cardiac_output_l_min")),
                           ("ED / ES phase", f"{result['ed_phase']} / {result['es_phase']}")])
    ctx.report.image(curve_png, "LV blood-pool volume over the cardiac cycle")
    ed = int(result["ed_phase"])
    ctx.report.viewer(ViewerCase(f"Explore the phantom at end-diastole (phase {ed})", images[ed], labelmaps[ed],
                                 image_name="MR", note="Analytic phantom on an oblique short-axis grid: the slices "
                                 "follow the image's own axes."))


def step_longitudinal(ctx: DemoContext) -> None:
    import datetime as dt
    from RadAISegmentLib.phantoms import followup_pair_phantom
    from .longitudinal.compare import compare_timepoints
    from .longitudinal.timepoint import Timepoint
    from .longitudinal.tracked import tracked_labelmaps

    ctx.say("longitudinal: registering the follow-up and matching lesions")
    base_ct, base_labels, follow_ct, follow_labels, truth = followup_pair_phantom()
    lesion_label = max(base_labels.label_values())
    timepoints = [Timepoint(base_ct, base_labels.with_array((base_labels.array == lesion_label).astype(np.uint8)),
                            dt.date(2025, 1, 10), "baseline"),
                  Timepoint(follow_ct, follow_labels.with_array((follow_labels.array == lesion_label).astype(np.uint8)),
                            dt.date(2025, 4, 10), "follow-up")]
    started = time.perf_counter()
    result = compare_timepoints(timepoints)
    ctx.timings["longitudinal comparison (s)"] = time.perf_counter() - started
    summary = result.to_json()
    (ctx.out_dir / "longitudinal").mkdir(parents=True, exist_ok=True)
    (ctx.out_dir / "longitudinal" / "comparison.json").write_text(json.dumps(summary, indent=2, default=str))
    plot = result.plot(ctx.out_dir / "longitudinal" / "volumes.png")
    ctx.report.heading("4. Lesion change over time", anchor="longitudinal")
    ctx.report.paragraph("Phantom follow-up pair: the patient moved by a known rigid transform between the scans and the "
                         "liver lesions changed by known volumes.")
    rows = [{"id": lesion["id"], "status": lesion["status"],
             "baseline_ml": lesion["volumes_ml"][0], "followup_ml": lesion["volumes_ml"][-1],
             "change_percent": None if lesion["status"] == "new" else (lesion["volume_change_percent"] or [None])[-1],
             "doubling_time_days": lesion.get("doubling_time_days"),
             "within": _within_text(lesion)} for lesion in summary["lesions"]]
    ctx.report.table(rows, [("id", "Lesion"), ("status", "Status"), ("baseline_ml", "Baseline (mL)"),
                            ("followup_ml", "Follow-up (mL)"), ("change_percent", "Change (%)"),
                            ("within", "Within measurement uncertainty?"),
                            ("doubling_time_days", "Doubling time (days)")])
    ctx.report.paragraph("A change is within measurement uncertainty when the two timepoints' stated volume ranges "
                         "overlap (for outlines without probabilities, as here: half a voxel on each side of the "
                         "outline); such a change is reported beside the response category, not as evidence of "
                         "growth or shrinkage on its own.")
    ctx.report.key_values([("RECIST 1.1 response", summary["recist_response"]),
                           ("Volumetric response", summary["volumetric_response"]),
                           ("Sum of diameters (mm)", summary["sum_of_diameters_mm"])])
    if plot:
        ctx.report.image(plot, "Lesion volume over time")
    tracked = tracked_labelmaps([tp.lesions for tp in timepoints], result.lesions)
    ctx.report.viewer(ViewerCase("Explore the follow-up scan: lesions coloured by track", follow_ct, tracked[-1],
                                 image_name="CT", unit="HU", window=(-160.0, 240.0)))


def _within_text(lesion: dict) -> Optional[str]:
    """'yes' / 'no' for a lesion seen at two or more timepoints (its last change), else None."""
    flags = lesion.get("change_within_uncertainty") or []
    if lesion.get("status") == "new" or len(flags) < 2:
        return None
    return "yes" if flags[-1] else "no"


def lesion_viewer_case(image, labelmap, saliency, method: str, chest=None) -> ViewerCase:
    """The lesion case for the viewer: slices of the whole chest (``chest``, the bundled display copy; else the
    analysis crop) with the segmentation and saliency resampled onto it; 3D surfaces from the full-resolution maps.
    The cross-hair starts where the saliency map is strongest."""
    from RadAISegmentLib.anatomy import context_structures
    from RadAISegmentLib.render_case import beside_heat
    from RadAISegmentLib.saliency.grid import resample_onto
    from .validation.evaluate import resample_labels_onto
    labelmap = beside_heat(labelmap)       # a segment colour no heat colour resembles, as in the pictures above
    if chest is None:
        return ViewerCase("Explore the tumour: slices and 3D", image, labelmap, saliency, method, "CT", "HU",
                          window=(-1000.0, 400.0), context=context_structures(image))
    shown_saliency = chest.with_array(resample_onto(saliency, chest.shape_ijk, chest.spacing_mm, chest.origin_lps,
                                                    chest.direction_lps, linear=True, default=0.0).array)
    spacing = ", ".join(f"{s:.3g}" for s in chest.spacing_mm)
    return ViewerCase("Explore the tumour in the whole chest: slices and 3D", chest,
                      resample_labels_onto(labelmap, chest), shown_saliency, method, "CT", "HU",
                      window=(-1000.0, 400.0), context=context_structures(chest),
                      surface_labelmap=labelmap, surface_saliency=saliency,
                      note=f"Slices: the whole chest at {spacing} mm (a display copy bundled with RadAI), with the "
                           f"segmentation and the {method} map resampled onto it. 3D: their surfaces at full "
                           "resolution among landmarks derived from the CT values (lungs, airway, bone). The "
                           "measurements above come from the full-resolution CT.")


STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("lesion", step_lesion), ("organs", step_organs), ("cardiac", step_cardiac), ("longitudinal", step_longitudinal)]


def _environment_section(ctx: DemoContext) -> None:
    from RadAISegmentLib.device import describe_device
    from RadAISegmentLib.models.cache import find_model
    device = describe_device()
    ctx.report.heading("Models, device and timings", anchor="about")
    ctx.report.key_values([("Device", device.get("summary")), ("Python", platform.python_version()),
                           *[(name, seconds) for name, seconds in ctx.timings.items()]])
    for model_id in sorted(ctx.models_used):
        card = find_model(model_id)
        ctx.report.key_values([("Model", f"{card.id} {card.version}"), ("Title", card.title),
                               ("Licence", card.licence), ("Provenance", card.provenance),
                               ("Measured metrics", json.dumps(card.metrics, default=str)[:1500])],
                              caption=f"Model card: {card.id}")


def run_demo(out_dir: str | Path, say: Optional[Callable[[str], None]] = None,
             steps: Optional[list[str]] = None) -> tuple[Path, dict[str, str]]:
    """Run the demo steps into ``out_dir``; returns the report path and the failures (step -> message)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = say or print
    report = HtmlReport("RadAI demo", "Segmentation, measurement, saliency, cardiac function and lesion tracking "
                        "on bundled real cases and analytic phantoms — offline, on the CPU.")
    ctx = DemoContext(out_dir, report, say)
    selected = [(name, step) for name, step in STEPS if steps is None or name in steps]
    for index, (name, step) in enumerate(selected, start=1):
        say(f"[{index}/{len(selected)}] {name}")
        (out_dir / name).mkdir(exist_ok=True)
        started = time.perf_counter()
        try:
            step(ctx)
        except Exception as error:  # noqa: BLE001 - one failing step must not hide the others
            ctx.failures[name] = f"{type(error).__name__}: {error}"
            report.heading(f"Step '{name}' failed")
            report.paragraph(ctx.failures[name], note=True)
            (out_dir / name / "error.txt").write_text(traceback.format_exc())
        ctx.timings[f"step {name} total (s)"] = time.perf_counter() - started
    try:
        _environment_section(ctx)
    except Exception as error:  # noqa: BLE001
        report.paragraph(f"Environment summary unavailable: {error}", note=True)
    return report.write(out_dir / "report.html"), ctx.failures

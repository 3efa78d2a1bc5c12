"""Validation outputs: per-study CSV, summary JSON and an HTML report with plots."""
from __future__ import annotations

import csv
import io as text_io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from RadAISegmentLib.atomic import write_text_atomic

from ..report import HtmlReport, save_figure
from .evaluate import StudyResult

PER_STUDY_COLUMNS = ("study", "group", "date", "label", "dice", "iou", "hd95_mm", "assd_mm", "nsd", "tolerance_mm",
                     "reference_volume_ml", "predicted_volume_ml", "volume_difference_ml", "volume_error_percent",
                     "status", "lesions_reference", "lesions_detected", "false_positive_lesions",
                     "dice_b", "volume_b_ml", "dice_a_vs_b", "error")


def per_study_rows(results: Sequence[StudyResult]) -> list[dict]:
    rows = []
    for result in results:
        base = {"study": result.study, "group": result.group, "date": result.date.isoformat() if result.date else ""}
        if result.error:
            rows.append({**base, "error": result.error})
            continue
        for label, metrics in result.per_label.items():
            detection = result.detections[label]
            rows.append({**base, "label": label, **metrics,
                         "lesions_reference": detection.true_positives + detection.false_negatives,
                         "lesions_detected": detection.true_positives,
                         "false_positive_lesions": detection.false_positives, "error": ""})
            if label in result.per_label_b:
                rows[-1].update(dice_b=result.per_label_b[label]["dice"],
                                volume_b_ml=result.per_label_b[label]["predicted_volume_ml"],
                                dice_a_vs_b=result.a_vs_b[label]["dice"])
    return rows


def case_rows_text(rows: Sequence[dict]) -> str:
    """One line per segment of one case's rows (:func:`per_study_rows`): Dice and HD95 of the prediction (A),
    then B's Dice and the Dice of A vs B when a second segmentation was compared."""
    def number(value, digits):
        return "—" if value is None or value == "" else f"{value:.{digits}f}"
    lines = []
    for row in rows:
        line = f"{row['label']}: Dice {number(row.get('dice'), 3)}, HD95 {number(row.get('hd95_mm'), 1)} mm"
        if row.get("dice_b") is not None or row.get("dice_a_vs_b") is not None:
            line += f"; B: Dice {number(row.get('dice_b'), 3)}; A vs B: Dice {number(row.get('dice_a_vs_b'), 3)}"
        lines.append(line)
    return "\n".join(lines)


def write_per_study_csv(results: Sequence[StudyResult], path: Path) -> Path:
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_STUDY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in per_study_rows(results):
        writer.writerow({key: ("" if row.get(key) is None else row.get(key, "")) for key in PER_STUDY_COLUMNS})
    return write_text_atomic(path, buffer.getvalue())


def _plot_bland_altman(results: Sequence[StudyResult], label: str, summary: dict, path: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pairs = [(r.per_label[label]["predicted_volume_ml"], r.per_label[label]["reference_volume_ml"])
             for r in results if r.error is None and label in r.per_label]
    agreement = summary.get("volume_bland_altman_ml")
    if len(pairs) < 2 or not agreement:
        return False
    predicted, reference = np.array(pairs).T
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.scatter((predicted + reference) / 2, predicted - reference, s=18, color="#2a6f97")
    for value, style in ((agreement["bias"], "-"), (agreement["lower_limit"], "--"), (agreement["upper_limit"], "--")):
        axes.axhline(value, color="#c0392b", linestyle=style, linewidth=1)
    axes.set_xlabel("Mean of predicted and reference volume (mL)")
    axes.set_ylabel("Predicted − reference (mL)")
    axes.set_title(f"Bland–Altman: {label}")
    save_figure(figure, path)
    return True


def _plot_dice_boxes(results: Sequence[StudyResult], labels: Sequence[str], path: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = [[r.per_label[label]["dice"] for r in results if r.error is None and label in r.per_label] for label in labels]
    if not any(data):
        return False
    figure, axes = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) + 2), 4))
    axes.boxplot(data, tick_labels=list(labels))
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("Dice")
    axes.set_title("Dice per label (one point per study)")
    save_figure(figure, path)
    return True


def write_outputs(results: Sequence[StudyResult], summary: dict, out_dir: Path, model_id: str = "") -> dict[str, Path]:
    """Write per_study.csv, summary.json, plots and report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"per_study_csv": write_per_study_csv(results, out_dir / "per_study.csv"),
             "summary_json": write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, default=str))}
    labels = list(summary["labels"])
    report = HtmlReport("RadAI local validation", f"{summary['studies_evaluated']} studies evaluated"
                        + (f", model {model_id}" if model_id else ""))
    report.paragraph("Metrics are computed on each reference grid with its physical spacing. 95 % confidence "
                     "intervals come from bootstrap resampling of studies. Validate on cases from your own "
                     "institution before clinical use, and keep re-checking over time.", note=True)
    rows = [{"label": label, **values} for label, values in summary["labels"].items()]
    report.heading("Summary per label")
    report.table(rows, [("label", "Label"), ("studies", "Studies"), ("dice_mean", "Dice (mean)"),
                        ("dice_ci95", "Dice 95 % CI"), ("hd95_mm_mean", "HD95 (mm)"), ("nsd_mean", "NSD"),
                        ("volume_error_percent_mean", "Volume error (%)"), ("lesion_sensitivity", "Lesion sensitivity"),
                        ("false_positives_per_case", "FP lesions / case"), ("volume_icc_2_1", "Volume ICC(2,1)")])
    if _plot_dice_boxes(results, labels, out_dir / "dice_boxplot.png"):
        paths["dice_boxplot"] = out_dir / "dice_boxplot.png"
        report.image(paths["dice_boxplot"], "Dice per label across studies")
    for label in labels:
        plot = out_dir / f"bland_altman_{label.replace(' ', '_')}.png"
        if _plot_bland_altman(results, label, summary["labels"][label], plot):
            paths[f"bland_altman_{label}"] = plot
            report.image(plot, f"Volume agreement for {label}: bias (solid) and 95 % limits of agreement (dashed)")
    comparison = [{"label": label, **values} for label, values in summary.get("comparison", {}).items()
                  if values["studies"]]
    if comparison:
        report.heading("Two segmenters compared (A = prediction, B = second model or reader)")
        report.table(comparison, [("label", "Label"), ("studies", "Studies"), ("dice_a_mean", "Dice A"),
                                  ("dice_b_mean", "Dice B"), ("dice_difference_mean", "Dice A − B"),
                                  ("dice_difference_ci95", "A − B 95 % CI"), ("dice_a_vs_b_mean", "Dice A vs B"),
                                  ("volume_icc_a_b", "Volume ICC(2,1) A, B")],
                     caption="A confidence interval of A − B that excludes 0 means one segmenter is better on "
                             "these studies; Dice A vs B is how far the two agree with each other.")
    if summary["subgroups"]:
        report.heading("Subgroups")
        sub_rows = [{"group": group, "label": label, **values}
                    for group, per_label in summary["subgroups"].items() for label, values in per_label.items()]
        report.table(sub_rows, [("group", "Group"), ("label", "Label"), ("studies", "Studies"),
                                ("dice_mean", "Dice"), ("dice_ci95", "Dice 95 % CI"),
                                ("volume_error_percent_mean", "Volume error (%)")],
                     caption="A group far below the others points to bias (site, scanner, sex, age band).")
    if any(summary["drift"].values()):
        report.heading("Drift over time")
        drift_rows = [{"label": label, **window} for label, windows in summary["drift"].items() for window in windows]
        report.table(drift_rows, [("label", "Label"), ("start", "From"), ("end", "To"), ("studies", "Studies"),
                                  ("dice_mean", "Dice"), ("below_threshold", "Below threshold")])
    if summary["studies_failed"]:
        report.heading("Studies not evaluated")
        report.table(summary["studies_failed"], [("study", "Study"), ("error", "Problem")])
    paths["report_html"] = report.write(out_dir / "report.html")
    return paths

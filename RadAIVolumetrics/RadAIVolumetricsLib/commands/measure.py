"""``radai measure IMAGE SEG [--json | --csv FILE]``: per-segment volume, IBSI shape, RECIST axes, intensity."""
from __future__ import annotations

import argparse
import csv
import io as text_io
import json

CONTRACT_KEYS = ("label", "name", "voxel_count", "volume_mm3", "volume_ml", "mesh_volume_mm3", "surface_area_mm2",
                 "sphericity", "max_3d_diameter_mm", "max_2d_diameter_slice_mm", "max_2d_diameter_column_mm",
                 "max_2d_diameter_row_mm", "major_axis_length_mm", "minor_axis_length_mm", "least_axis_length_mm",
                 "elongation", "flatness", "recist_long_axis_mm", "recist_short_axis_mm", "centroid_ras", "intensity")


def register(subparsers) -> None:
    parser = subparsers.add_parser("measure", help="measure every segment of a labelmap",
                                   description="Volumes (voxel count x voxel volume, as Slicer's Segment Statistics), "
                                               "IBSI shape features (PyRadiomics conventions), RECIST axes (endpoints "
                                               "in RAS) and intensity statistics (with an image).")
    parser.add_argument("image", help="image file or DICOM folder, or '-' for shape only")
    parser.add_argument("seg", help="labelmap on the image's grid (.nii.gz, .nrrd, .seg.nrrd)")
    parser.add_argument("--labels", help="comma-separated names or ids (default: all)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", metavar="FILE", help="write a CSV table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from RadAISegmentLib.atomic import write_text_atomic
    from RadAISegmentLib.io import read_image, read_labelmap
    from ..measurements import MEASURES, measure_segments
    image = None if args.image == "-" else read_image(args.image)
    labelmap = read_labelmap(args.seg, reference=image)
    labels = [item.strip() for item in args.labels.split(",")] if args.labels else None
    rows = measure_segments(labelmap, image, labels)
    if args.json:
        extra = ("recist_long_axis_endpoints_ras", "recist_short_axis_endpoints_ras", "connected_components",
                 "oriented_bounding_box", "warnings")
        print(json.dumps({"segments": [{key: row[key] for key in CONTRACT_KEYS + extra} for row in rows],
                          "units": {info.key: info.unit for info in MEASURES}}, indent=2))
        return 0
    columns = [key for key in CONTRACT_KEYS if key not in ("centroid_ras", "intensity")]
    if args.csv:
        buffer = text_io.StringIO()
        intensity_keys = sorted({key for row in rows for key in row["intensity"]})
        writer = csv.writer(buffer)
        writer.writerow(columns + ["centroid_r", "centroid_a", "centroid_s"] + [f"intensity_{k}" for k in intensity_keys])
        for row in rows:
            writer.writerow([row[c] for c in columns] + list(row["centroid_ras"] or ["", "", ""])
                            + [row["intensity"].get(k, "") for k in intensity_keys])
        write_text_atomic(args.csv, buffer.getvalue())
        print(f"wrote {args.csv}")
        return 0
    for row in rows:
        print(f"{row['label']:>4} {row['name'][:28]:<28} {row['volume_ml']:10.3f} mL  max3D {row['max_3d_diameter_mm']:7.1f} mm"
              f"  RECIST {row['recist_long_axis_mm']:6.1f} x {row['recist_short_axis_mm']:5.1f} mm")
    return 0

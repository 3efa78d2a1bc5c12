"""``radai explain IMAGE --model ID [--label NAME_OR_ID] [--seed R,A,S] [--box-mm MM]
[--method gradcam|gradcampp|smoothgrad] --out SALIENCY [--png PNG] [--json]``

Writes the saliency map (float32, values 0..1) on exactly the input image's grid; ``--png``
writes a 3D rendering (CT + segmentation surface + saliency) beside an axial slice overlay.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np



def register(subparsers) -> None:
    parser = subparsers.add_parser("explain", help="Grad-CAM / SmoothGrad saliency of a segmentation model",
                                   description="Which image regions drove the model's segmentation of a label: "
                                               "Seg-Grad-CAM (default), Grad-CAM++ or SmoothGrad (TorchScript models).")
    parser.add_argument("image", help="NIfTI/NRRD/MHA file or DICOM folder")
    parser.add_argument("--model", required=True, help="installed model id, or a model folder with card.json")
    parser.add_argument("--label", help="label name or value (default: the model's first label)")
    parser.add_argument("--seed", help="R,A,S point (mm) inside the target; required for promptable lesion models "
                             "(write --seed=-12,40,5 when R is negative)")
    parser.add_argument("--box-mm", type=float, help="crop edge length around the seed, mm (default: model patch)")
    parser.add_argument("--method", choices=("gradcam", "gradcampp", "smoothgrad"), default=None,
                        help="default: the model card's choice (Grad-CAM unless the card names another)")
    parser.add_argument("--layer", help="Grad-CAM layer name (default: the bottleneck, chosen automatically)")
    parser.add_argument("--region", choices=("mask", "box", "image"), default="mask",
                        help="voxels whose logits form the target (default: the predicted mask of the label)")
    parser.add_argument("--out", required=True, help="saliency volume to write (.nrrd, .nii.gz, .mha)")
    parser.add_argument("--png", help="also write a PNG: 3D view and axial slice overlay side by side")
    parser.add_argument("--json", action="store_true", help="print the metadata as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..geometry import parse_ras_point
    from ..io import read_image, write_image
    from ..progress import TerminalProgress
    from ..saliency import explain_image

    image = read_image(args.image)
    result = explain_image(image, args.model, label=args.label, seed_ras=parse_ras_point(args.seed) if args.seed is not None else None, method=args.method,
                           box_mm=args.box_mm, layer=args.layer, region=args.region,
                           progress=TerminalProgress("explain "))
    out = write_image(result.map, args.out)
    facts = {**result.metadata, "output": str(out)}
    if args.png:
        facts["png"] = str(write_png(image, result, Path(args.png)))
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print(f"{out}: {facts['method']} saliency of {facts['label_name']!r} (label {facts['label']}) "
              f"from model {facts['model_id']}, layer {facts['layer'] or '-'}"
              + (" — the map is all zero (the model gives this label no positive evidence here)" if facts["all_zero"] else ""))
        if facts.get("note"):
            print(f"  note: {facts['note']}")
    return 0


def write_png(image, result, path: Path) -> Path:
    """3D view (CT + segmentation surface + saliency) beside an axial slice overlay, through
    :mod:`RadAISegmentLib.render` when it is available; otherwise a matplotlib figure with a
    maximum-intensity projection (labelled as such) beside the axial slice."""
    focus = _focus_ras(image, result)
    try:
        from .. import render_slices
        from ..render_case import render_case_pngs
    except (ImportError, RuntimeError, OSError):  # no VTK/EGL here
        render_case_pngs = None
    if render_case_pngs is not None:
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            render_case_pngs(image, result.labelmap, Path(folder), saliency=result.map, focus_ras=focus)
            close_up, overlaid = Path(folder) / "3d_saliency.png", Path(folder) / "axial.png"
            if not (close_up.exists() and overlaid.exists()):         # an organ plate: no saliency close-up
                return _matplotlib_png(image, result, focus, path)
            render_slices.render_side_by_side(close_up, overlaid, path)   # 3D close-up | axial slice with the map
            return path
    return _matplotlib_png(image, result, focus, path)


def _focus_ras(image, result) -> list[float]:
    if result.metadata.get("seed_ras"):
        return list(result.metadata["seed_ras"])
    peak_kji = np.unravel_index(int(np.argmax(result.map.array)), result.map.array.shape)
    return [float(v) for v in image.index_to_ras(np.asarray(peak_kji[::-1], float))]


def _matplotlib_png(image, result, focus_ras, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..atomic import atomic_path
    k = int(np.clip(round(float(image.ras_to_index(np.asarray(focus_ras))[2])), 0, image.array.shape[0] - 1))
    ct, heat = image.array.astype(np.float32), result.map.array
    mask = result.labelmap.array if result.labelmap is not None else np.zeros_like(heat)
    figure, axes = plt.subplots(1, 2, figsize=(12, 6))
    axes[0].imshow(ct.max(axis=1), cmap="gray", origin="lower", aspect="auto")
    axes[0].imshow(np.ma.masked_less(heat.max(axis=1), 0.2), cmap="inferno", alpha=0.6, origin="lower", aspect="auto")
    axes[0].set_title("coronal maximum-intensity projection (3D renderer unavailable)")
    axes[1].imshow(ct[k], cmap="gray")
    axes[1].imshow(np.ma.masked_less(heat[k], 0.2), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    if mask[k].any():
        axes[1].contour(mask[k] > 0, levels=[0.5], colors="cyan", linewidths=1)
    axes[1].set_title(f"axial slice k={k}: {result.metadata['method']} of {result.metadata['label_name']}")
    for axis in axes:
        axis.axis("off")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    plt.close(figure)
    return path

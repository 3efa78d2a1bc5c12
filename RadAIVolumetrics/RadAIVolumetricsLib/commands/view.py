"""``radai view IMAGE [--seg SEG] [--saliency MAP] --out view.html``: one self-contained interactive viewer page.

Slices in three planes and a 3D view (NiiVue, embedded; no network when the page is opened): the segmentation
as coloured labels with a legend, the saliency map in heat colours with threshold and opacity controls,
landmarks derived from the image (CT: lungs, airway, bone; MRI: brain) as 3D surfaces, and the position (RAS mm)
and values under the cross-hair.
"""
from __future__ import annotations

import argparse
from pathlib import Path

#: Landmarks are derived on a copy of at most this many voxels (whole blocks averaged) for speed.
LANDMARK_VOXELS = 3_000_000


def register(subparsers) -> None:
    parser = subparsers.add_parser("view", help="write an interactive 3D viewer page (one HTML file, works offline)",
                                   description="Write one HTML file that shows the image in three planes and in 3D, "
                                               "with an optional segmentation and saliency map on the image's grid. "
                                               "Everything is embedded: open it in any browser with WebGL2, mail it "
                                               "to a class; it makes no network request.")
    parser.add_argument("image", help="image file (NIfTI, NRRD, MHA) or DICOM folder")
    parser.add_argument("--seg", help="labelmap on the image's grid (.nii.gz, .nrrd, .seg.nrrd)")
    parser.add_argument("--saliency", help="saliency map on the image's grid, values 0..1 (e.g. from radai explain)")
    parser.add_argument("--out", required=True, help="output page (.html)")
    parser.add_argument("--title", help="page title (default: the image's file name)")
    parser.add_argument("--window", help="grey window LOW,HIGH in the image's units (default: CT -1000,400 HU; "
                                         "MRI the 1st..99.5th percentiles)")
    parser.add_argument("--no-landmarks", action="store_true", help="no landmark surfaces in 3D")
    parser.add_argument("--max-voxels", type=int, default=None,
                        help="display budget; larger images are shown coarser, by whole voxel blocks (default 6000000)")
    parser.set_defaults(func=run)


def _window(text: str | None, image) -> tuple[float, float] | None:
    from RadAISegmentLib.anatomy import is_ct
    from RadAISegmentLib.errors import InputError
    if text is None:
        return (-1000.0, 400.0) if is_ct(image) else None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--window expects LOW,HIGH (two numbers), got {text!r}.") from None
    if not high > low:
        raise InputError(f"--window {text}: HIGH must be greater than LOW.")
    return low, high


def build_case(args: argparse.Namespace):
    """The :class:`~RadAIVolumetricsLib.viewer.ViewerCase` the arguments describe (files read, checked)."""
    import numpy as np
    from RadAISegmentLib.anatomy import context_structures, is_ct
    from RadAISegmentLib.downsample import block_mean, display_factors
    from RadAISegmentLib.errors import InputError
    from RadAISegmentLib.io import read_image, read_labelmap
    from ..viewer import ViewerCase
    image = read_image(args.image)
    labelmap = read_labelmap(args.seg) if args.seg else None
    saliency = read_image(args.saliency) if args.saliency else None
    if saliency is not None:
        values = np.asarray(saliency.array, dtype=float)
        if values.size and (np.nanmin(values) < -1e-6 or np.nanmax(values) > 1.0 + 1e-6):
            raise InputError(f"{args.saliency}: saliency values run from {np.nanmin(values):.3g} to "
                             f"{np.nanmax(values):.3g}; the heat map needs 0..1 (scale the map first).")
    context = None
    if not args.no_landmarks:
        coarse = block_mean(image, display_factors(image, LANDMARK_VOXELS))
        context = context_structures(coarse.with_array(coarse.array, modality="CT" if is_ct(image) else "MR"))
    name = Path(str(args.image).rstrip("/")).name
    return ViewerCase(args.title or name, image, labelmap, saliency, "Saliency", "CT" if is_ct(image) else "Image",
                      "HU" if is_ct(image) else "", window=_window(args.window, image), context=context).checked()


def run(args: argparse.Namespace) -> int:
    from RadAISegmentLib.errors import InputError
    from ..viewer import DEFAULT_MAX_VOXELS, write_viewer_page
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out}: the viewer is an HTML page; name it *.html.")
    if args.max_voxels is not None and args.max_voxels < 1000:
        raise InputError("--max-voxels must be at least 1000.")
    case = build_case(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_viewer_page(out, [case], case.title, args.max_voxels or DEFAULT_MAX_VOXELS)
    print(out.resolve())
    return 0

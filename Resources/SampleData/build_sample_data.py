"""Rebuild the bundled sample cases from ``shared/data`` (run once by a maintainer, not at run time).

Usage: ``python Resources/SampleData/build_sample_data.py [SHARED_DATA_DIR]``

TotalSegmentator examples are copied byte for byte; the PyRadiomics tumour cases are
cropped around the tumour (whole slices kept along k), labels stored as uint8, written
compressed with ``RadAISegmentLib.io.write_image``. Geometry (spacing, direction, the
physical position of every kept voxel) is preserved exactly. Afterwards, update the
SHA-256 column of PROVENANCE.md (printed at the end).
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "RadAISegment"))

from RadAISegmentLib import io  # noqa: E402
from RadAISegmentLib.image import Image  # noqa: E402

COPIES = {  # output name -> source path under shared/data
    "abdomen-ct_image.nii.gz": "totalsegmentator-examples/example_ct_sm.nii.gz",
    "abdomen-ct_labels.nii.gz": "totalsegmentator-examples/example_seg.nii.gz",
    "abdomen-mr_image.nii.gz": "totalsegmentator-examples/example_mr_sm.nii.gz",
    "abdomen-mr_labels.nii.gz": "totalsegmentator-examples/example_seg_mr.nii.gz",
    "LICENSE-totalsegmentator.txt": "totalsegmentator-examples/LICENSE",
    "LICENSE-pyradiomics.txt": "pyradiomics-cases/LICENSE.txt",
}
CROPS = {  # case name -> (PyRadiomics case, in-plane crop size in voxels (i, j))
    "lung-tumour": ("lung1", (128, 128)),
    "brain-tumour": ("brain1", (128, 128)),
    "breast-lesion": ("breast1", None),  # already a small crop: re-written whole
}
#: Whole field of view at a coarser grid, for display only (the 3D context around the tumour and the
#: report's viewer): case name -> (PyRadiomics case, in-plane block size in voxels).
CONTEXTS = {"lung-tumour": ("lung1", 4)}


def crop(image: Image, start_ijk: np.ndarray, size_ijk: np.ndarray) -> Image:
    """Sub-volume ``[start, start + size)`` with the origin moved so every voxel keeps its LPS position."""
    (i0, j0, k0), (i1, j1, k1) = start_ijk, start_ijk + size_ijk
    origin = image.index_to_lps(np.asarray(start_ijk, dtype=float))
    return Image(image.array[k0:k1, j0:j1, i0:i1].copy(), image.spacing_mm, tuple(origin), image.direction_lps)


def tumour_crop_window(label: Image, size_ij) -> tuple[np.ndarray, np.ndarray]:
    """A window of ``size_ij`` voxels in-plane centred on the tumour's bounding box, all slices along k."""
    shape = np.asarray(label.shape_ijk)
    if size_ij is None:
        return np.zeros(3, dtype=int), shape
    kji = np.argwhere(label.array > 0)
    centre = (kji.min(axis=0)[::-1] + kji.max(axis=0)[::-1]) // 2
    size = np.array([size_ij[0], size_ij[1], shape[2]])
    start = np.clip(centre - size // 2, 0, shape - size)
    start[2] = 0
    return start, size


def write_context(case: str, image: Image, block: int) -> None:
    """``<case>_context.nrrd``: the whole image, block means of ``block × block`` voxels in-plane (int16 HU)."""
    from RadAISegmentLib.downsample import block_mean
    io.write_image(block_mean(image, (block, block, 1), dtype=np.int16), HERE / f"{case}_context.nrrd")


def main(shared: Path) -> None:
    for name, source in COPIES.items():
        shutil.copyfile(shared / source, HERE / name)
    for case, (source, size_ij) in CROPS.items():
        image = io.read_image(shared / "pyradiomics-cases" / f"{source}_image.nrrd")
        label = io.read_image(shared / "pyradiomics-cases" / f"{source}_label.nrrd")
        start, size = tumour_crop_window(label, size_ij)
        image_crop = crop(image, start, size)
        label_crop = crop(label, start, size)
        if int(np.count_nonzero(label_crop.array)) != int(np.count_nonzero(label.array)):
            raise RuntimeError(f"The crop of {source} cut the tumour; enlarge the window.")
        io.write_image(image_crop.with_array(image_crop.array.astype(np.int16)), HERE / f"{case}_image.nrrd")
        io.write_image(label_crop.with_array((label_crop.array > 0).astype(np.uint8)), HERE / f"{case}_labels.nrrd")
        print(f"{case}: {source} crop start (i,j,k) {start.tolist()} size {size.tolist()}")
    for case, (source, block) in CONTEXTS.items():
        write_context(case, io.read_image(shared / "pyradiomics-cases" / f"{source}_image.nrrd"), block)
    for path in sorted(HERE.iterdir()):
        if path.is_file():
            print(f"{path.name}  {hashlib.sha256(path.read_bytes()).hexdigest()}  {path.stat().st_size}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data")

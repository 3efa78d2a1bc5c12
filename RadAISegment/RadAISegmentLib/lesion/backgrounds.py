"""Real CT and MR backgrounds for synthetic lesions (training only; evaluation cases are refused).

Sources, each used when present:
* the TotalSegmentator example CT and MR bundled in ``Resources/SampleData`` (``abdomen-ct``, ``abdomen-mr``,
  Apache-2.0) — always in the checkout;
* Colin27 T1 with skull and its higher-contrast average ``ch2better`` (Debian ``mricron-data``, installed by
  the set-up);
* the MNI152 2009a T1 template inside the ``nilearn`` package (``pip install nilearn``), when installed;
* any extra file or DICOM folder given by the caller, e.g. the TotalSegmentator example chest CT DICOM series.

Head MR templates come with their brain (Colin27: ``ch2bet``; MNI152: grey + white matter probability ≥ 0.5,
holes filled): brain lesions are centred in it and, like an intra-axial tumour, stay inside it — a lesion at
the cortex stops at the brain surface although the dura, vessels and scalp beyond are as bright on T1 + contrast.

Never the PyRadiomics ``lung1`` / ``brain1`` / ``breast1`` tumours or the sample cases made from them.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..image import Image
from ..io import read_image, to_sitk
from .preprocess import is_ct_like

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN27_BETTER = Path("/usr/share/mricron/templates/ch2better.nii.gz")
COLIN27_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
MNI_T1_NAME = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
EVALUATION_NAMES = ("lung1", "brain1", "breast1", "lung-tumour", "brain-tumour", "breast-lesion", "pyradiomics")


@dataclass
class Background:
    """One background volume, where crops may be centred, and its native voxel size."""

    name: str
    image: Image
    ct: bool
    tissue_kji: np.ndarray            # voxels inside the body (crop centres for soft-tissue lesions)
    lung_kji: np.ndarray              # CT lung parenchyma voxels (empty for MR)
    source: Optional[sitk.Image] = None
    compartment: Optional[np.ndarray] = None     # bool [k, j, i]: the organ lesions stay in (the brain), if known
    surface_kji: Optional[np.ndarray] = None     # voxels just inside the compartment's surface (attached lesions)
    compartment_source: Optional[sitk.Image] = None

    @property
    def native_spacing_mm(self) -> np.ndarray:
        return np.asarray(self.image.spacing_mm, float)


def default_background_paths(extra: Sequence[Path] = ()) -> list[Path]:
    """The background files present on this machine (see the module docstring), extras last."""
    from ..sample_data import sample_case
    paths = [sample_case("abdomen-ct")["image"], sample_case("abdomen-mr")["image"]]
    paths += [path for path in (COLIN27, COLIN27_BETTER) if path.exists()]
    spec = importlib.util.find_spec("nilearn")
    if spec is not None and spec.submodule_search_locations:
        mni = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / \
            "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
        if mni.exists():
            paths.append(mni)
    return paths + [Path(p) for p in extra if Path(p).exists()]


def _is_evaluation_case(path: Path) -> bool:
    return any(name in str(path).lower() for name in EVALUATION_NAMES)


def brain_mask(path: Path, image: Image) -> Optional[np.ndarray]:
    """bool ``[k, j, i]`` brain of a head MR template on its own grid (see the module docstring), else None."""
    path = Path(path)
    if path.name in (COLIN27.name, COLIN27_BETTER.name) and COLIN27_BRAIN.exists():
        brain = sitk.ReadImage(str(COLIN27_BRAIN), sitk.sitkFloat32) > 0
        resampled = sitk.Resample(brain, to_sitk(image), sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                  sitk.sitkUInt8, True)
        return sitk.GetArrayFromImage(resampled) > 0
    if path.name == MNI_T1_NAME:
        grey, white = (path.parent / MNI_T1_NAME.replace("_t1_", f"_{tissue}_") for tissue in ("gm", "wm"))
        if grey.exists() and white.exists():
            maps = [read_image(tissue) for tissue in (grey, white)]
            for tissue in maps:
                image.require_same_grid(tissue, "tissue probability map")
            probability = sum(tissue.array.astype(np.float32) for tissue in maps)
            return ndimage.binary_fill_holes(probability >= 0.5)
    return None


def load_background(path: Path) -> Background:
    if _is_evaluation_case(Path(path)):
        raise ValueError(f"{path} is an evaluation case and must never be a training background")
    image = read_image(path)
    ct = is_ct_like(image)
    values = image.array
    if ct:
        body = (values > -950) & (values < 300)
        lung = ndimage.binary_erosion((values > -950) & (values < -600), iterations=2)
    else:
        body = values > np.percentile(values, 40)
        lung = np.zeros_like(body)
    body = ndimage.binary_erosion(body, iterations=2)
    brain = None if ct else brain_mask(Path(path), image)
    if brain is not None and brain.any():
        inner = ndimage.binary_erosion(brain, iterations=3)
        return Background(Path(path).name, image, ct, np.argwhere(inner), np.argwhere(lung), compartment=brain,
                          surface_kji=np.argwhere(brain & ~ndimage.binary_erosion(brain, iterations=2)))
    return Background(Path(path).name, image, ct, np.argwhere(body), np.argwhere(lung))


def load_backgrounds(extra: Sequence[Path] = ()) -> list[Background]:
    return [load_background(path) for path in default_background_paths(extra)]


def background_crop(background: Background, centre_kji: np.ndarray, edge_mm: float, grid: int) -> np.ndarray:
    """float32 ``grid``³ crop (axes k, j, i) of edge ``edge_mm`` centred at a continuous voxel index (k, j, i),
    linear interpolation, nearest-value extrapolation outside the image (as at inference)."""
    if background.source is None:
        background.source = sitk.Cast(to_sitk(background.image), sitk.sitkFloat32)
    return _crop(background.source, background.image, centre_kji, edge_mm, grid)


def compartment_crop(background: Background, centre_kji: np.ndarray, edge_mm: float, grid: int
                     ) -> Optional[np.ndarray]:
    """The background's compartment (0..1, linear) on the same crop as :func:`background_crop`, or None."""
    if background.compartment is None:
        return None
    if background.compartment_source is None:
        mask = background.image.with_array(background.compartment.astype(np.float32))
        background.compartment_source = sitk.Cast(to_sitk(mask), sitk.sitkFloat32)
    return _crop(background.compartment_source, background.image, centre_kji, edge_mm, grid)


def _crop(source: sitk.Image, image: Image, centre_kji: np.ndarray, edge_mm: float, grid: int) -> np.ndarray:
    spacing = edge_mm / grid
    centre_lps = image.index_to_lps(np.asarray(centre_kji, float)[::-1])
    direction = np.asarray(image.direction_lps)
    reference = sitk.Image([grid] * 3, sitk.sitkFloat32)
    reference.SetSpacing([spacing] * 3)
    reference.SetOrigin(tuple(centre_lps - direction @ np.full(3, spacing * (grid - 1) / 2.0)))
    reference.SetDirection(tuple(direction.ravel()))
    return sitk.GetArrayFromImage(sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear,
                                                0.0, sitk.sitkFloat32, True))


def edge_centre_near(background: Background, centre_kji: np.ndarray, edge_mm: float, grid: int,
                     rng: np.random.Generator) -> np.ndarray:
    """A voxel index (k, j, i) near ``centre_kji`` on a strong tissue boundary (top 3 % gradient magnitude
    of a wider crop): pleura, bone, vessel wall, brain surface — where attached lesions sit."""
    search_mm = max(3.0 * edge_mm, 150.0)
    search = background_crop(background, centre_kji, search_mm, grid)
    edges = ndimage.gaussian_gradient_magnitude(search, 1.5)
    margin = grid // 4
    inner = edges[margin:-margin, margin:-margin, margin:-margin]
    strongest = np.argwhere(inner >= np.percentile(inner, 97))
    offset_vox = strongest[rng.integers(len(strongest))] + margin - (grid - 1) / 2.0
    image = background.image
    offset_lps = np.asarray(image.direction_lps) @ (offset_vox[::-1] * search_mm / grid)
    return image.lps_to_index(image.index_to_lps(np.asarray(centre_kji, float)[::-1]) + offset_lps)[::-1]

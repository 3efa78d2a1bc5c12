"""Real CT and MR backgrounds for synthetic lesions (training only; evaluation cases are refused).

Sources, each used when present:
* the TotalSegmentator example CT and MR bundled in ``Resources/SampleData`` (``abdomen-ct``, ``abdomen-mr``,
  Apache-2.0) — always in the checkout;
* Colin27 T1 with skull and its higher-contrast average ``ch2better`` (Debian ``mricron-data``, installed by
  the set-up);
* the MNI152 2009a T1 template inside the ``nilearn`` package (``pip install nilearn``), when installed;
* any extra file or DICOM folder given by the caller, e.g. the TotalSegmentator example chest CT DICOM series.

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
    return Background(Path(path).name, image, ct, np.argwhere(body), np.argwhere(lung))


def load_backgrounds(extra: Sequence[Path] = ()) -> list[Background]:
    return [load_background(path) for path in default_background_paths(extra)]


def background_crop(background: Background, centre_kji: np.ndarray, edge_mm: float, grid: int) -> np.ndarray:
    """float32 ``grid``³ crop (axes k, j, i) of edge ``edge_mm`` centred at a continuous voxel index (k, j, i),
    linear interpolation, nearest-value extrapolation outside the image (as at inference)."""
    image = background.image
    spacing = edge_mm / grid
    centre_lps = image.index_to_lps(np.asarray(centre_kji, float)[::-1])
    direction = np.asarray(image.direction_lps)
    reference = sitk.Image([grid] * 3, sitk.sitkFloat32)
    reference.SetSpacing([spacing] * 3)
    reference.SetOrigin(tuple(centre_lps - direction @ np.full(3, spacing * (grid - 1) / 2.0)))
    reference.SetDirection(tuple(direction.ravel()))
    if background.source is None:
        background.source = sitk.Cast(to_sitk(image), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(sitk.Resample(background.source, reference, sitk.Transform(), sitk.sitkLinear,
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

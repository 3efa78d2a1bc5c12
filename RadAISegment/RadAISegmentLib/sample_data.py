"""Bundled sample cases (``Resources/SampleData``): real, compact, licensed, with provenance.

Cases:

* ``abdomen-ct`` — TotalSegmentator example CT (3 mm) with its 117-class v2 ``total`` labels.
* ``abdomen-mr`` — TotalSegmentator example MRI (3 mm) with its v2 ``total_mr`` labels.
* ``lung-tumour``, ``brain-tumour``, ``breast-lesion`` — PyRadiomics cases cropped around the
  tumour, with the reference tumour mask. **Evaluation only: never training data.**

The resources folder is ``<repository>/Resources`` (found relative to this package) unless the
``RADAI_RESOURCES`` environment variable names another one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from . import io
from .errors import InputError, LabelError
from .image import Image, SegmentInfo, TerminologyCode, default_color

RESOURCES_ENV = "RADAI_RESOURCES"
LABEL_NAMES_FILE = "totalsegmentator_labels.json"

ANATOMY = TerminologyCode("123037004", "SCT", "Anatomical Structure")
ALTERED = TerminologyCode("49755003", "SCT", "Morphologically Altered Structure")
NEOPLASM = TerminologyCode("108369006", "SCT", "Neoplasm")

#: SNOMED CT codes and display colours (RGB 0..1) for common TotalSegmentator classes.
_ORGAN_STYLE: dict[str, tuple[str, str, tuple[float, float, float]]] = {
    "spleen": ("78961009", "Spleen", (0.62, 0.37, 0.54)),
    "kidney_right": ("64033007", "Kidney", (0.73, 0.42, 0.30)),
    "kidney_left": ("64033007", "Kidney", (0.73, 0.42, 0.30)),
    "gallbladder": ("28231008", "Gallbladder", (0.54, 0.78, 0.36)),
    "liver": ("10200004", "Liver", (0.87, 0.51, 0.40)),
    "stomach": ("69695003", "Stomach", (0.85, 0.72, 0.55)),
    "pancreas": ("15776009", "Pancreas", (0.98, 0.82, 0.56)),
    "esophagus": ("32849002", "Esophagus", (0.83, 0.67, 0.58)),
    "trachea": ("44567001", "Trachea", (0.71, 0.86, 0.90)),
    "heart": ("80891009", "Heart", (0.81, 0.25, 0.27)),
    "aorta": ("15825003", "Aorta", (0.88, 0.27, 0.22)),
    "urinary_bladder": ("89837001", "Urinary bladder", (0.85, 0.75, 0.35)),
    "brain": ("12738006", "Brain", (0.98, 0.92, 0.84)),
}


@dataclass(frozen=True)
class SampleCase:
    """One bundled case: file names (relative to SampleData), modality and label scheme."""

    name: str
    title: str
    modality: str
    image: str
    labels: str
    label_scheme: str  # "total", "total_mr" (TotalSegmentator v2 ids) or "lesion" (1 = lesion)
    licence: str
    evaluation_only: bool


_CASES = (
    SampleCase("abdomen-ct", "Abdominal CT with 117 TotalSegmentator organ labels", "CT",
               "abdomen-ct_image.nii.gz", "abdomen-ct_labels.nii.gz", "total", "LICENSE-totalsegmentator.txt", False),
    SampleCase("abdomen-mr", "Abdominal MRI with TotalSegmentator MR organ labels", "MR",
               "abdomen-mr_image.nii.gz", "abdomen-mr_labels.nii.gz", "total_mr", "LICENSE-totalsegmentator.txt", False),
    SampleCase("lung-tumour", "Chest CT crop with a lung tumour (evaluation only)", "CT",
               "lung-tumour_image.nrrd", "lung-tumour_labels.nrrd", "lesion", "LICENSE-pyradiomics.txt", True),
    SampleCase("brain-tumour", "Brain MRI crop with a tumour (evaluation only)", "MR",
               "brain-tumour_image.nrrd", "brain-tumour_labels.nrrd", "lesion", "LICENSE-pyradiomics.txt", True),
    SampleCase("breast-lesion", "Breast MRI crop with a lesion (evaluation only)", "MR",
               "breast-lesion_image.nrrd", "breast-lesion_labels.nrrd", "lesion", "LICENSE-pyradiomics.txt", True),
)
_BY_NAME = {case.name: case for case in _CASES}


def resources_dir() -> Path:
    """The ``Resources`` folder: ``$RADAI_RESOURCES`` or ``<repository>/Resources``."""
    override = os.environ.get(RESOURCES_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "Resources"


def sample_data_dir() -> Path:
    folder = resources_dir() / "SampleData"
    if not folder.is_dir():
        raise InputError(f"Sample data folder {folder} not found; set {RESOURCES_ENV} to the RadAI 'Resources' "
                         "folder (the one holding SampleData/).")
    return folder


def list_sample_cases() -> list[str]:
    """Names of the bundled cases, e.g. ``["abdomen-ct", "abdomen-mr", "lung-tumour", ...]``."""
    return [case.name for case in _CASES]


def sample_case_info(name: str) -> SampleCase:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(f"Unknown sample case '{name}'; choose one of: {', '.join(list_sample_cases())}.") from None


def sample_case(name: str) -> dict[str, Path]:
    """Paths of one case: ``{"image", "labels", "licence", "provenance"}`` (all existing files)."""
    case = sample_case_info(name)
    folder = sample_data_dir()
    paths = {"image": folder / case.image, "labels": folder / case.labels,
             "licence": folder / case.licence, "provenance": folder / "PROVENANCE.md"}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise InputError(f"Sample case '{name}' is incomplete, missing: {', '.join(missing)}; "
                         "restore Resources/SampleData from the repository.")
    return paths


def sample_context_path(name: str) -> Optional[Path]:
    """The case's whole field of view at a coarser grid, for display only (``<name>_context.nrrd``), or None."""
    sample_case_info(name)
    path = sample_data_dir() / f"{name}_context.nrrd"
    return path if path.is_file() else None


@lru_cache(maxsize=None)
def _label_names_file(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def totalsegmentator_label_names(scheme: str = "total") -> dict[int, str]:
    """TotalSegmentator v2 label id -> class name for ``scheme`` ``"total"`` (117) or ``"total_mr"`` (50)."""
    data = _label_names_file(str(sample_data_dir() / LABEL_NAMES_FILE))
    if scheme not in data:
        raise InputError(f"Unknown TotalSegmentator label scheme '{scheme}'; use 'total' or 'total_mr'.")
    return {int(label): name for label, name in data[scheme].items()}


def totalsegmentator_segment(label: int, name: str) -> SegmentInfo:
    """A :class:`SegmentInfo` for a TotalSegmentator class (SNOMED code and colour where known)."""
    style = _ORGAN_STYLE.get(name)
    if style is None:
        return SegmentInfo(label, name, default_color(label), ANATOMY, None)
    code, meaning, color = style
    return SegmentInfo(label, name, color, ANATOMY, TerminologyCode(code, "SCT", meaning))


def segments_for(name: str, label_values: Optional[list[int]] = None) -> list[SegmentInfo]:
    """Segment descriptions of a case's labels (restricted to ``label_values`` if given)."""
    case = sample_case_info(name)
    if case.label_scheme == "lesion":
        infos = [SegmentInfo(1, "Lesion", (0.95, 0.85, 0.20), ALTERED, NEOPLASM)]
    else:
        infos = [totalsegmentator_segment(label, class_name)
                 for label, class_name in totalsegmentator_label_names(case.label_scheme).items()]
    if label_values is not None:
        wanted = set(label_values)
        infos = [info for info in infos if info.label in wanted]
    return infos


def load_sample_image(name: str) -> Image:
    """The case's image, with ``modality`` and ``sample_case`` in its metadata."""
    case = sample_case_info(name)
    image = io.read_image(sample_case(name)["image"])
    return image.with_array(image.array, modality=case.modality, sample_case=name)


def load_sample_labelmap(name: str) -> Image:
    """The case's labelmap with names, colours and codes attached to the labels present.

    Raises :class:`~RadAISegmentLib.errors.LabelError` if a label value has no known name.
    """
    paths = sample_case(name)
    labelmap = io.read_labelmap(paths["labels"])
    present = labelmap.label_values()
    infos = segments_for(name, present)
    unknown = sorted(set(present) - {info.label for info in infos})
    if unknown:
        raise LabelError(f"Sample case '{name}' has label values {unknown} without names; "
                         f"update {LABEL_NAMES_FILE}.")
    return labelmap.with_array(labelmap.array, segments=infos, sample_case=name)

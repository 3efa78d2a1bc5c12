"""A timepoint: image, lesion labelmap (one label per lesion) and acquisition date."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from RadAISegmentLib.image import Image, as_label_array


def parse_dicom_date(text: Optional[str]) -> Optional[dt.date]:
    """``YYYYMMDD`` (DICOM DA) or ``YYYY-MM-DD`` to a date; None when absent or malformed."""
    if not text:
        return None
    text = str(text).strip()
    try:
        return dt.date.fromisoformat(text) if "-" in text else dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


@dataclass
class Timepoint:
    """One scan of a patient. ``lesions`` lies on ``image``'s grid.

    A binary mask is split into 26-connected components, one lesion label each;
    a labelmap with several labels keeps its labels as lesion identities.
    ``date`` defaults to the image's DICOM StudyDate/AcquisitionDate.
    """

    image: Image
    lesions: Image
    date: Optional[dt.date] = None
    name: str = ""

    def __post_init__(self) -> None:
        self.image.require_same_grid(self.lesions, what="lesion labelmap")
        labels = as_label_array(self.lesions)
        if len(self.lesions.label_values()) == 1:
            components, _ = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
            labels = components.astype(np.uint16)
        self.lesions = self.lesions.with_array(labels, segments=self.lesions.segments if labels.max() > 1 and
                                               len(self.lesions.segments) > 1 else ())
        if self.date is None:
            self.date = parse_dicom_date(self.image.metadata.get("study_date")
                                         or self.image.metadata.get("acquisition_date"))

    @property
    def patient_id(self) -> Optional[str]:
        return self.image.metadata.get("patient_id")


def order_timepoints(timepoints: Sequence[Timepoint]) -> tuple[list[Timepoint], list[str]]:
    """Sort by date (undated keep their given order) and list warnings: out-of-order input, mixed patients."""
    warnings = []
    dated = [tp.date for tp in timepoints]
    ordered = list(timepoints)
    if all(dated) and dated != sorted(dated):
        ordered = sorted(timepoints, key=lambda tp: tp.date)
        warnings.append("timepoints were given out of date order; they were sorted by date (baseline = earliest)")
    patients = {tp.patient_id for tp in timepoints if tp.patient_id}
    if len(patients) > 1:
        warnings.append(f"timepoints come from different PatientIDs {sorted(patients)}: check they are one patient")
    return ordered, warnings

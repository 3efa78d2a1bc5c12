"""Lesion-track identity made visible: one labelmap per timepoint in which each lesion carries its
track id, name and colour, so a matched lesion looks the same at every timepoint (Slicer's
Longitudinal tab, reports)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from RadAISegmentLib.image import Image, SegmentInfo, default_color
from RadAISegmentLib.errors import InputError


def track_color(track_id: int) -> tuple[float, float, float]:
    """RGB (0..1) of a lesion track: the same at every timepoint."""
    return default_color(track_id)


def tracked_labelmaps(lesion_labelmaps: Sequence[Image], lesions: Sequence[dict]) -> list[Image]:
    """Relabel each timepoint's lesions with their track id.

    lesion_labelmaps: the timepoints' lesion labelmaps in the comparison's (date) order, as the
        comparison saw them (``Timepoint.lesions``: one label per lesion on each timepoint's own grid).
    lesions: ``ComparisonResult.lesions`` (each with ``id``, ``status`` and ``labels_by_timepoint``).
    Returns one labelmap per timepoint on that timepoint's grid; label value = track id, segment
    ``Lesion <id> (<status>)`` coloured by :func:`track_color`. A lesion merged into another at a
    later timepoint keeps the label of the first track that claims its voxels.
    """
    for lesion in lesions:
        if len(lesion["labels_by_timepoint"]) != len(lesion_labelmaps):
            raise InputError(f"Lesion {lesion['id']} has {len(lesion['labels_by_timepoint'])} timepoints but "
                             f"{len(lesion_labelmaps)} labelmaps were given; pass them in the comparison's order.")
    result = []
    for index, labelmap in enumerate(lesion_labelmaps):
        source = labelmap.array
        relabelled = np.zeros(source.shape, np.uint16)
        segments = []
        for lesion in sorted(lesions, key=lambda item: item["id"]):
            labels = lesion["labels_by_timepoint"][index]
            if not labels:
                continue
            mask = np.isin(source, labels) & (relabelled == 0)
            relabelled[mask] = lesion["id"]
            segments.append(SegmentInfo(int(lesion["id"]), f"Lesion {lesion['id']} ({lesion['status']})",
                                        track_color(lesion["id"])))
        array = relabelled.astype(np.uint8) if relabelled.max(initial=0) < 256 else relabelled
        result.append(labelmap.with_array(array, segments=tuple(segments)))
    return result

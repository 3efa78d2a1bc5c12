"""Lesion matching across timepoints on the baseline grid.

Rules, in order:
1. overlap: a follow-up lesion (moved onto the baseline grid) that shares at
   least one voxel with a track's latest mask belongs to that track;
   one track overlapping several follow-up lesions is a *split*, several
   tracks overlapping one follow-up lesion is a *merge*;
2. centroid distance: an unmatched follow-up lesion whose centroid lies within
   ``max(10 mm, 0.5 × the track's largest diameter)`` of an unmatched track's
   latest centroid continues that track (a lesion that shrank away from its old
   outline, or a small registration error);
3. otherwise the follow-up lesion starts a new track (status *new*); a track with
   no lesion at a timepoint has *disappeared* there.
Identities persist over any number of timepoints.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CENTROID_TOLERANCE_MM = 10.0


@dataclass
class Track:
    id: int
    first_timepoint: int
    members: dict[int, list[int]] = field(default_factory=dict)   # timepoint -> lesion labels (own grid)
    latest_mask: np.ndarray | None = None                          # on the baseline grid
    latest_centroid_mm: np.ndarray | None = None
    diameter_mm: float = 0.0
    events: list[str] = field(default_factory=list)


def _centroids_mm(labels: np.ndarray, spacing_kji: np.ndarray) -> dict[int, np.ndarray]:
    result = {}
    for value in np.unique(labels):
        if value:
            result[int(value)] = np.argwhere(labels == value).mean(axis=0) * spacing_kji
    return result


def match_timepoint(tracks: list[Track], timepoint: int, moved_labels: np.ndarray, spacing_mm,
                    diameters_mm: dict[int, float]) -> None:
    """Assign the lesions of ``moved_labels`` (follow-up labels on the baseline grid) to tracks, in place."""
    spacing_kji = np.asarray(spacing_mm, float)[::-1]
    centroids = _centroids_mm(moved_labels, spacing_kji)
    lesion_to_tracks: dict[int, list[Track]] = {label: [] for label in centroids}
    active = [t for t in tracks if t.latest_mask is not None]
    for track in active:
        for value in np.unique(moved_labels[track.latest_mask]):
            if value:
                lesion_to_tracks[int(value)].append(track)
    unmatched_tracks = [t for t in active if not any(t in owners for owners in lesion_to_tracks.values())]
    for label, owners in lesion_to_tracks.items():
        if owners:
            continue
        candidates = [(np.linalg.norm(t.latest_centroid_mm - centroids[label]), t) for t in unmatched_tracks]
        candidates = [(d, t) for d, t in candidates if d <= max(CENTROID_TOLERANCE_MM, 0.5 * t.diameter_mm)]
        if candidates:
            _, track = min(candidates, key=lambda pair: pair[0])
            owners.append(track)
            unmatched_tracks.remove(track)
            track.events.append(f"t{timepoint}: matched by centroid distance")
    new_masks: dict[int, np.ndarray] = {}
    for label, owners in lesion_to_tracks.items():
        if not owners:
            track = Track(id=len(tracks) + 1, first_timepoint=timepoint)
            track.events.append(f"t{timepoint}: new")
            tracks.append(track)
            owners.append(track)
        if len(owners) > 1:
            owners[0].events.append(f"t{timepoint}: merged with track(s) {[t.id for t in owners[1:]]}")
            for other in owners[1:]:
                other.events.append(f"t{timepoint}: merged into track {owners[0].id}")
        owner = owners[0]
        owner.members.setdefault(timepoint, []).append(label)
        for other in owners[1:]:
            other.members.setdefault(timepoint, [])
    for track in tracks:
        labels = track.members.get(timepoint)
        if labels is None:
            if track.latest_mask is not None:
                track.events.append(f"t{timepoint}: disappeared")
            track.latest_mask = None
            continue
        if len(labels) > 1:
            track.events.append(f"t{timepoint}: split into {len(labels)} lesions")
        if labels:
            mask = np.isin(moved_labels, labels)
            track.latest_mask = mask
            track.latest_centroid_mm = np.argwhere(mask).mean(axis=0) * spacing_kji
            track.diameter_mm = max(track.diameter_mm, max(diameters_mm.get(l, 0.0) for l in labels))
        else:  # merged into another track
            track.latest_mask = None


def status_of(track: Track, n_timepoints: int) -> str:
    """matched | new | disappeared | split | merged (the most informative event wins)."""
    text = " ".join(track.events)
    if "merged" in text:
        return "merged"
    if "split" in text:
        return "split"
    if track.first_timepoint > 0:
        return "new"
    if not track.members.get(n_timepoints - 1):
        return "disappeared"
    return "matched"

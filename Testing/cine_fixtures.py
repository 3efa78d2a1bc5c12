"""Test helpers for cine MRI: the cardiac phantom written as a multi-phase DICOM series (one MR image per slice
and phase, as short-axis cine stacks are exported), and a ventricular UNet with the real bundle's architecture
trained briefly on the phantom so that its labels are decisive."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from RadAISegmentLib.image import Image

REPO = Path(__file__).resolve().parents[1]
#: The real ``ventricular_short_axis_3label`` bundle configs (MONAI Model Zoo, Apache-2.0), copied into the repo.
VENTRICULAR_CONFIG = REPO / "Testing" / "Data" / "monai-bundle-configs" / "ventricular_short_axis_3label"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@functools.lru_cache(maxsize=1)
def phantom_cine(n_phases: int = 8):
    """``(images, labelmaps, truth)`` of the short-axis cine phantom (oblique 96×96×52 grid, 1.5×1.5×2.5 mm,
    60 bpm, ES at phase round(0.35 n)), built once per test session."""
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    return cardiac_cine_phantom(n_phases=n_phases)


def decimal_string(value: float) -> str:
    """``value`` as the most precise DICOM decimal string (DS: at most 16 characters), so that geometry read back
    from the header equals the image's to ~1e-13 mm rather than to the 6 decimals a fixed format keeps."""
    for digits in range(16, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a DICOM decimal string")


def write_cine_dicom(phases: Sequence[Image], folder: Path, times_ms: Sequence[float], heart_rate_bpm: float = 60.0,
                     temporal_ids: bool = True, skip: Optional[set] = None, stated_phases: Optional[int] = None,
                     names: str = "sequential") -> Path:
    """One file per (slice k, phase p), all in one series. ``skip`` holds (k, p) pairs left out; ``temporal_ids``
    False leaves out TemporalPositionIdentifier (phases then come from TriggerTime); ``stated_phases`` sets
    CardiacNumberOfImages (default: the number of phases); ``names`` ``"shuffled"`` scrambles file names so
    that nothing can depend on their order. Trigger times get a per-slice jitter of up to 1.5 ms (as scanners
    write them)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    first = phases[0]
    direction = np.asarray(first.direction_lps)
    rng = np.random.default_rng(0)
    count = 0
    for p, phase in enumerate(phases):
        for k in range(phase.array.shape[0]):
            if skip and (k, p) in skip:
                continue
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.Modality, ds.PatientID, ds.SeriesDescription = "MR", "RADAI-PHANTOM-CINE", "SAX cine"
            ds.InstanceNumber = count + 1
            position = np.asarray(first.origin_lps) + direction[:, 2] * first.spacing_mm[2] * k
            ds.ImagePositionPatient = [decimal_string(v) for v in position]
            ds.ImageOrientationPatient = [decimal_string(v) for v in (*direction[:, 0], *direction[:, 1])]
            ds.PixelSpacing = [f"{first.spacing_mm[1]:g}", f"{first.spacing_mm[0]:g}"]
            ds.SliceThickness = f"{first.spacing_mm[2]:g}"
            ds.TriggerTime = f"{times_ms[p] + (rng.uniform(0, 1.5) if p else 0.0):.2f}"
            if temporal_ids:
                ds.TemporalPositionIdentifier = p + 1
                ds.NumberOfTemporalPositions = len(phases)
            ds.CardiacNumberOfImages = stated_phases or len(phases)
            ds.HeartRate = f"{heart_rate_bpm:g}"
            pixels = np.asarray(phase.array[k], dtype=np.int16)
            ds.Rows, ds.Columns = pixels.shape
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.PixelData = pixels.tobytes()
            name = f"IM{count:05d}.dcm" if names == "sequential" else f"{generate_uid()[-12:]}.dcm"
            pydicom.dcmwrite(folder / name, ds, enforce_file_format=True)
            count += 1
    return folder


def ventricular_bundle(root: Path, steps: int = 80, seed: int = 0, phantom=None) -> Path:
    """The real ventricular_short_axis_3label configs + UNet weights of its architecture (2D, channels
    16-256, 2 residual units), trained on slices of an 8-phase cardiac phantom (``phantom(seed)`` returns
    ``(images, labelmaps, truth)``; default: :func:`phantom_cine`'s grid with its own noise), min-max scaled per
    volume as the bundle's ScaleIntensityd and zero-padded to the bundle's 256² window as its SliceInferer does
    (the UNet's instance norm sees the same canvas in training and inference). Adam on cross-entropy + soft
    Dice, batches of slices that hold a ventricle: ``steps`` steps, then ``steps // 2`` more at a time until
    every label's Dice on the ED and ES phases is at least :data:`DECISIVE_DICE` (at most
    :data:`EXTRA_ROUNDS`). One torch thread and fixed seeds: the same weights on every run."""
    import torch
    from monai.networks.nets import UNet
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    shutil.copytree(VENTRICULAR_CONFIG / "configs", root / "configs")
    (root / "models").mkdir(parents=True)
    definition = json.loads((root / "configs" / "inference.json").read_text())["network_def"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        network = UNet(**{k: v for k, v in definition.items() if k != "_target_"})
        make = phantom or (lambda noise_seed: cardiac_cine_phantom(n_phases=8, seed=noise_seed))
        images, labels, truth = make(seed + 11)
        x, y = _bundle_slices(images, labels)
        checked = [p * images[0].array.shape[0] + k for p in (truth["ed_index"], truth["es_index"])
                   for k in range(images[0].array.shape[0])]
        _train_slices(network, x, y, checked, steps, seed)
    finally:
        torch.set_num_threads(threads)
    torch.save(network.eval().state_dict(), root / "models" / "model.pt")
    return root


#: Training continues until every label reaches this Dice on the ED and ES phases (or the extra rounds run out).
DECISIVE_DICE = 0.93
EXTRA_ROUNDS = 6


def _bundle_slices(images, labels):
    """``(x [n, 1, 256, 256] float32, y [n, 256, 256] int64)``: every slice of every phase as the bundle's
    pipeline sees it (MONAI loads NIfTI as [i, j, k] and its SliceInferer cuts along k: slices [i, j]), min-max
    scaled per volume and zero-padded to 256² (centred, as MONAI's sliding window pads)."""
    import torch
    slices, targets = [], []
    for image, labelmap in zip(images, labels):
        volume = image.array.astype(np.float32)
        slices.append(torch.from_numpy((volume - volume.min()) / (volume.max() - volume.min())))
        targets.append(torch.from_numpy(labelmap.array.astype(np.int64)))
    x, y = torch.cat(slices).transpose(1, 2), torch.cat(targets).transpose(1, 2)       # [k, j, i] → [k, i, j]
    pad = [(256 - x.shape[2]) // 2, 256 - x.shape[2] - (256 - x.shape[2]) // 2,
           (256 - x.shape[1]) // 2, 256 - x.shape[1] - (256 - x.shape[1]) // 2]
    return torch.nn.functional.pad(x[:, None], pad), torch.nn.functional.pad(y, pad)


def _train_slices(network, x, y, checked: Sequence[int], steps: int, seed: int, batch: int = 4,
                  lr: float = 3e-3) -> float:
    """Train ``network`` in place (see :func:`ventricular_bundle`); returns the lowest per-label Dice on the
    ``checked`` slices."""
    import torch
    from nnunet_builders import _loss
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    with_ventricle = np.flatnonzero((y > 0).flatten(1).any(1).numpy())
    score = 0.0
    for round_steps in [steps] + [max(1, steps // 2)] * EXTRA_ROUNDS:
        network.train()
        for _ in range(round_steps):
            index = torch.from_numpy(rng.choice(with_ventricle, batch))
            loss = _loss(network(x[index]), y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        network.eval()
        score = _lowest_slice_dice(network, x[checked], y[checked])
        if score >= DECISIVE_DICE:
            break
    return score


def _lowest_slice_dice(network, x, y, labels: Sequence[int] = (1, 2, 3)) -> float:
    import torch
    with torch.no_grad():
        predicted = torch.cat([network(x[start:start + 16]).argmax(1) for start in range(0, len(x), 16)])
    return min(2.0 * int(((predicted == v) & (y == v)).sum()) / max(1, int((predicted == v).sum() + (y == v).sum()))
               for v in labels)

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
            ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
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


def ventricular_bundle(root: Path, steps: int = 120, seed: int = 0) -> Path:
    """The real ventricular_short_axis_3label configs + UNet weights of its architecture (2D, channels
    16-256, 2 residual units), trained ``steps`` Adam steps on slices of an 8-phase cardiac phantom (min-max
    scaled per volume as the bundle's ScaleIntensityd, zero-padded to the bundle's 256² window)."""
    import torch
    from monai.networks.nets import UNet
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    shutil.copytree(VENTRICULAR_CONFIG / "configs", root / "configs")
    (root / "models").mkdir(parents=True)
    definition = json.loads((root / "configs" / "inference.json").read_text())["network_def"]
    torch.manual_seed(seed)
    network = UNet(**{k: v for k, v in definition.items() if k != "_target_"})
    images, labels, _ = cardiac_cine_phantom(n_phases=8, seed=seed + 11)
    slices, targets = [], []
    for image, labelmap in zip(images, labels):
        volume = image.array.astype(np.float32)
        slices.append(torch.from_numpy((volume - volume.min()) / (volume.max() - volume.min())))
        targets.append(torch.from_numpy(labelmap.array.astype(np.int64)))
    x, y = torch.cat(slices), torch.cat(targets)
    pad = [(256 - x.shape[2]) // 2, 256 - x.shape[2] - (256 - x.shape[2]) // 2,
           (256 - x.shape[1]) // 2, 256 - x.shape[1] - (256 - x.shape[1]) // 2]
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    network.train()
    for _ in range(steps):
        index = torch.from_numpy(rng.choice(len(x), 4))
        batch = torch.nn.functional.pad(x[index][:, None], pad)
        loss = torch.nn.functional.cross_entropy(network(batch), torch.nn.functional.pad(y[index], pad))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.save(network.eval().state_dict(), root / "models" / "model.pt")
    return root

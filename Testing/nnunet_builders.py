"""Small nnU-Net v2 models built with nnU-Net's own code, for the equality tests and the benchmark.

A raw dataset of analytic phantoms (ellipsoids with known labels, written with SimpleITK as nnU-Net reads
them) goes through nnU-Net's fingerprint extraction and default experiment planner (fewer features per
stage than the default, so the network is tiny); the network nnU-Net builds from those plans is trained
briefly on the phantoms, nnU-Net-preprocessed, until its labels are decisive; and the result folder is
written as nnU-Net's trainer writes it (``dataset.json``, ``plans.json``, ``fold_0/checkpoint_final.pth``
holding the training log's numpy numbers, as real checkpoints do).

nnU-Net reads its folders from environment variables at import time: :func:`nnunet_dirs` sets them to a
temporary folder of this process before anything imports ``nnunetv2``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

_ROOT: Optional[Path] = None


def nnunet_dirs() -> Path:
    """This process's nnU-Net raw / preprocessed / results root (environment variables set once)."""
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="radai-nnunet-test-"))
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (_ROOT / name).mkdir()
            os.environ[name] = str(_ROOT / name)
    return _ROOT


@dataclass(frozen=True)
class Blob:
    """An ellipsoid (centre and semi-axes in mm, along i, j, k) with its label and intensity."""

    centre_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    label: int
    value: float


def phantom(shape_ijk: Sequence[int], spacing_ijk: Sequence[float], body: Blob, organs: Sequence[Blob],
            background: float, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image [k, j, i] float32, labels [k, j, i] uint8)``: voxel centres inside ``body`` get its value,
    inside an organ its value and label (later organs win); Gaussian noise inside the body only, so a zero
    background stays exactly zero (MR-like)."""
    k, j, i = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape_ijk[::-1], spacing_ijk[::-1])], indexing="ij")
    points = (i, j, k)
    image = np.full(k.shape, background, np.float32)
    labels = np.zeros(k.shape, np.uint8)
    inside = sum(((p - c) / r) ** 2 for p, c, r in zip(points, body.centre_mm, body.radii_mm)) <= 1.0
    image[inside] = body.value
    for organ in organs:
        region = sum(((p - c) / r) ** 2 for p, c, r in zip(points, organ.centre_mm, organ.radii_mm)) <= 1.0
        image[region], labels[region] = organ.value, organ.label
    rng = np.random.default_rng(seed)
    image[inside] += rng.normal(0.0, noise, int(inside.sum())).astype(np.float32)
    return image, labels


def write_case(array_kji: np.ndarray, spacing_ijk: Sequence[float], path: Path) -> None:
    import SimpleITK as sitk
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing([float(s) for s in spacing_ijk])
    sitk.WriteImage(image, str(path))


@dataclass
class BuiltModel:
    folder: Path                 # the nnU-Net result folder
    dataset_json: dict
    plans: dict
    training_dice: float         # the network's lowest per-class Dice on its (nnU-Net-preprocessed) training cases


def build_model(dataset_id: int, name: str, channel: str, labels: dict[str, int],
                cases: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]], steps: int = 60,
                base_features: int = 8, max_features: int = 32, seed: int = 0, lr: float = 3e-3,
                mirror_axes: Optional[tuple] = (0, 1, 2)) -> BuiltModel:
    """Plan, briefly train and save an nnU-Net v2 3d_fullres model for ``cases`` ``(image, labels, spacing)``."""
    import torch
    root = nnunet_dirs()
    dataset = f"Dataset{dataset_id:03d}_{name}"
    raw = root / "nnUNet_raw" / dataset
    shutil.rmtree(raw, ignore_errors=True)
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for index, (image, seg, spacing) in enumerate(cases):
        write_case(image, spacing, raw / "imagesTr" / f"case_{index:03d}_0000.nii.gz")
        write_case(seg, spacing, raw / "labelsTr" / f"case_{index:03d}.nii.gz")
    dataset_json = {"channel_names": {"0": channel}, "labels": {"background": 0, **labels},
                    "numTraining": len(cases), "file_ending": ".nii.gz", "name": name}
    (raw / "dataset.json").write_text(json.dumps(dataset_json))
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor
    from multiprocessing.pool import ThreadPool
    from types import SimpleNamespace
    from unittest import mock
    in_process = SimpleNamespace(get_context=lambda method: SimpleNamespace(Pool=ThreadPool))
    with mock.patch.object(fingerprint_extractor, "multiprocessing", in_process):    # no spawned interpreters
        DatasetFingerprintExtractor(dataset_id, 1, verbose=False).run(overwrite_existing=True)
    planner = ExperimentPlanner(dataset_id)
    planner.UNet_base_num_features, planner.UNet_max_features_3d = base_features, max_features
    planner.plan_experiment()
    plans = json.loads((root / "nnUNet_preprocessed" / dataset / "nnUNetPlans.json").read_text())
    manager = PlansManager(plans)
    config = manager.get_configuration("3d_fullres")
    preprocessor = DefaultPreprocessor(verbose=False)
    data = []
    for image, seg, spacing in cases:
        x, y = preprocessor.run_case_npy(image[None].astype(np.float32), seg[None].astype(np.int16),
                                         {"spacing": list(spacing)[::-1]}, manager, config, dataset_json)
        data.append((torch.from_numpy(x), torch.from_numpy(np.maximum(y[0], 0).astype(np.int64))))
    torch.manual_seed(seed)
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, 1, len(labels) + 1,
                                     deep_supervision=False)
    strides = np.prod(np.asarray(config.network_arch_init_kwargs["strides"]), axis=0)
    training_dice = train(network, data, config.patch_size, steps, lr, seed, [int(s) for s in strides])
    folder = root / "nnUNet_results" / dataset / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    shutil.rmtree(folder.parent, ignore_errors=True)
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    torch.save({"network_weights": network.state_dict(), "optimizer_state": {}, "grad_scaler_state": None,
                "logging": {"mean_fg_dice": [np.float64(training_dice)], "train_losses": [np.float32(0.1)]},
                "_best_ema": np.float64(training_dice), "current_epoch": steps,
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset_json,
                              "device": torch.device("cpu")},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": mirror_axes},
               folder / "fold_0" / "checkpoint_final.pth")
    return BuiltModel(folder=folder, dataset_json=dataset_json, plans=plans, training_dice=training_dice)


def train(network, data, patch: Sequence[int], steps: int, lr: float, seed: int, divisor: Sequence[int]) -> float:
    """Adam on class-weighted cross-entropy + soft Dice (:func:`_loss`) over random patch-sized crops
    (zero-padded where a case is smaller); returns the network's lowest per-class Dice on the whole training
    cases afterwards."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)             # small convolutions: one thread is fastest, and immune to a busy machine
    try:
        return _train(network, data, patch, steps, lr, seed, divisor)
    finally:
        torch.set_num_threads(threads)


def _train(network, data, patch: Sequence[int], steps: int, lr: float, seed: int, divisor: Sequence[int]) -> float:
    """``steps`` Adam steps at a constant ``lr``, then rounds of ``steps // 2`` more while any class's Dice on a
    training case is below :data:`DECISIVE_DICE` (at most :data:`EXTRA_ROUNDS`); returns the lowest per-class
    Dice. Deterministic for a seed: one torch thread, no wall-clock limit."""
    import torch
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    _steps(network, data, patch, steps, rng, optimiser)
    score = _lowest_dice(network, data, divisor)
    for _ in range(EXTRA_ROUNDS):
        if score >= DECISIVE_DICE:
            break
        _steps(network, data, patch, max(1, steps // 2), rng, optimiser)
        score = _lowest_dice(network, data, divisor)
    return score


#: Training continues until every class reaches this Dice on every training case (or the extra rounds run out).
DECISIVE_DICE = 0.9
EXTRA_ROUNDS = 8


def _steps(network, data, patch, steps: int, rng, optimiser) -> None:
    import torch
    network.train()
    for step in range(steps):
        x, y = data[step % len(data)]
        pad = [max(0, p - s) for p, s in zip(patch, y.shape)]
        widths = [w for p in reversed(pad) for w in (p // 2, p - p // 2)]
        x, y = torch.nn.functional.pad(x, widths), torch.nn.functional.pad(y, widths)
        corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(y.shape, patch)]
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        x, y = x[(slice(None),) + window][None], y[window][None]
        flips = [axis + 2 for axis in range(3) if rng.random() < 0.5]          # nnU-Net trains with mirroring
        if flips:
            x, y = torch.flip(x, flips), torch.flip(y, [a - 1 for a in flips])
        loss = _loss(network(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    network.eval()


def _loss(logits, y):
    """nnU-Net's kind of loss: cross-entropy (class-weighted, ∝ 1/√frequency, so small organs are not drowned)
    plus soft Dice over the foreground classes present in the patch (which pulls a class the network does not
    predict yet out of the background; cross-entropy alone leaves an intermediate-intensity class unpredicted
    for many steps)."""
    import torch
    counts = torch.bincount(y.flatten(), minlength=logits.shape[1]).float()
    weight = (counts.sum() / counts.clamp_min(1)) ** 0.5
    cross_entropy = torch.nn.functional.cross_entropy(logits, y, weight=weight / weight.mean())
    probabilities = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).movedim(-1, 1).to(probabilities.dtype)
    axes = (0,) + tuple(range(2, logits.ndim))
    overlap = (probabilities * onehot).sum(axes)
    dice = (2.0 * overlap + 1e-5) / (probabilities.sum(axes) + onehot.sum(axes) + 1e-5)
    present = counts[1:] > 0
    return cross_entropy + (1.0 - dice[1:][present]).mean() if bool(present.any()) else cross_entropy


def _lowest_dice(network, data, divisor: Sequence[int]) -> float:
    import torch
    scores = []
    with torch.no_grad():
        for x, y in data:
            pad = [(-s) % d for s, d in zip(y.shape, divisor)]
            widths = [w for p in reversed(pad) for w in (0, p)]
            predicted = network(torch.nn.functional.pad(x, widths)[None])[0].argmax(0)
            predicted = predicted[tuple(slice(0, s) for s in y.shape)].numpy()
            scores += [2.0 * np.count_nonzero((predicted == v) & (y.numpy() == v)) /
                       (np.count_nonzero(predicted == v) + np.count_nonzero(y.numpy() == v))
                       for v in np.unique(y.numpy()) if v > 0]
    return float(min(scores))


def foreground_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the labels present in either array (background excluded); 1.0 when none are."""
    labels = sorted((set(np.unique(a)) | set(np.unique(b))) - {0})
    if not labels:
        return 1.0
    return float(np.mean([2.0 * np.count_nonzero((a == v) & (b == v)) /
                          (np.count_nonzero(a == v) + np.count_nonzero(b == v)) for v in labels]))


@dataclass
class Case:
    """A built model and a test image of the same anatomy at another spacing, with its analytic labels."""

    model: BuiltModel
    image: np.ndarray            # [k, j, i] float32
    labels: np.ndarray           # [k, j, i] uint8
    spacing_ijk: tuple[float, float, float]
    modality: str


CT_BODY = Blob((25, 25, 30), (22, 18, 27), 0, 40.0)
CT_ORGANS = (Blob((16, 22, 26), (8, 7, 13), 1, 150.0), Blob((35, 22, 36), (6, 6, 10), 2, 400.0),
             Blob((25, 38, 22), (4, 3, 8), 3, 800.0))
MR_BODY = Blob((30, 26, 24), (20, 16, 15), 0, 200.0)
MR_ORGANS = (Blob((24, 24, 24), (8, 7, 7), 1, 500.0), Blob((40, 28, 25), (6, 6, 6), 2, 900.0))

_BUILT: dict = {}


def ct_case(steps: int = 50) -> Case:
    """CT (-1000 HU air, so nnU-Net's crop keeps everything; CT normalisation with the fingerprint's
    foreground percentiles). Trained on a 1.5×1.5×3 mm phantom and the test image itself (1.2×1.2×2.5 mm),
    so the plans' spacing is their median and the test image is resampled (3D spline) on the way in."""
    if "ct" not in _BUILT:
        image, labels = phantom((42, 42, 26), (1.2, 1.2, 2.5), CT_BODY, CT_ORGANS, -1000.0, 10.0, 7)
        other, other_labels = phantom((34, 34, 21), (1.5, 1.5, 3.0), CT_BODY, CT_ORGANS, -1000.0, 10.0, 0)
        model = build_model(611, "RadAICT", "CT", {"liver": 1, "spleen": 2, "bone": 3},
                            [(other, other_labels, (1.5, 1.5, 3.0)), (image, labels, (1.2, 1.2, 2.5))],
                            steps=steps, lr=1e-2)
        _BUILT["ct"] = Case(model, image, labels, (1.2, 1.2, 2.5), "CT")
    return _BUILT["ct"]


def mr_case(steps: int = 50) -> Case:
    """MR (zero background around the body, so nnU-Net crops and z-scores inside the non-zero mask): voxels
    of 3.5–3.8 mm along i make nnU-Net transpose that axis first and resample it separately (nearest).
    Trained on a phantom and the test image itself, as :func:`ct_case`."""
    if "mr" not in _BUILT:
        image, labels = phantom((16, 60, 44), (3.8, 0.9, 1.1), MR_BODY, MR_ORGANS, 0.0, 20.0, 8)
        other, other_labels = phantom((17, 52, 48), (3.5, 1.0, 1.0), MR_BODY, MR_ORGANS, 0.0, 20.0, 1)
        model = build_model(612, "RadAIMR", "T2", {"kidney": 1, "cyst": 2},
                            [(other, other_labels, (3.5, 1.0, 1.0)), (image, labels, (3.8, 0.9, 1.1))],
                            steps=steps, lr=1e-2)
        _BUILT["mr"] = Case(model, image, labels, (3.8, 0.9, 1.1), "MR")
    return _BUILT["mr"]

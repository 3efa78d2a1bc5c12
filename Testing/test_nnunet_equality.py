"""RadAI runs nnU-Net v2 models exactly as nnU-Net does.

Models are built by nnU-Net's own fingerprinting, planning and architecture code (``nnunet_builders``) and
trained briefly on analytic phantoms; the same test image then goes through ``nnUNetPredictor`` (nnunetv2
from PyPI) and through RadAI's engine. With nnU-Net's window positions (no body crop) every label must be
equal; with RadAI's body crop, Dice ≥ 0.99 per label. CT (CT normalisation, 3D spline resampling) and MR
(z-score inside the non-zero mask, transposed axes, separate resampling of the 3.5 mm axis), each with and
without test-time mirroring. The networks' own Dice against the phantom labels is asserted too, so that
agreement is not that of a network with tied logits.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import nnunet_builders as builders

CASES = {"CT": builders.ct_case, "MR": builders.mr_case}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny networks: one torch thread is fastest and keeps timings sane on a busy machine."""
    import torch
    monkeypatch.setenv("RADAI_TORCH_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def radai_image(case: builders.Case):
    from RadAISegmentLib.image import Image
    return Image(case.image.copy(), case.spacing_ijk, (10.0, -4.0, 2.0), np.eye(3), metadata={"modality": case.modality})


_PREDICTED: dict = {}


def nnunet_labels(case: builders.Case, mirroring: bool) -> np.ndarray:
    """``nnUNetPredictor``'s labels for the case's test image (computed once per process)."""
    key = (case.modality, mirroring)
    if key not in _PREDICTED:
        _PREDICTED[key] = _predict(case, mirroring)
    return _PREDICTED[key]


def _predict(case: builders.Case, mirroring: bool) -> np.ndarray:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(case.model.folder), use_folds=(0,))
    return predictor.predict_single_npy_array(case.image[None].astype(np.float32),
                                              {"spacing": list(case.spacing_ijk)[::-1]}, None, None, False)


def dice_per_label(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    labels = sorted((set(np.unique(a)) | set(np.unique(b))) - {0})
    return {int(v): 2.0 * np.count_nonzero((a == v) & (b == v)) / (np.count_nonzero(a == v) + np.count_nonzero(b == v))
            for v in labels}


@pytest.mark.parametrize("mirroring", [False, True], ids=["no-mirroring", "mirroring"])
@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_labels_equal_nnunet_predictor(kind, mirroring, record_property):
    from RadAISegmentLib.inference import segment_image
    from RadAISegmentLib.models.loaders import load_model_folder
    case = CASES[kind]()
    model = load_model_folder(case.model.folder)
    settings = dict(model.extras["nnunet"], use_mirroring=mirroring)
    model = dataclasses.replace(model, extras=dict(model.extras, nnunet=settings))
    theirs = nnunet_labels(case, mirroring)
    image = radai_image(case)
    ours = segment_image(image, model, device="cpu", crop_foreground=False, runtime="torch")
    assert ours.array.shape == image.array.shape and ours.spacing_mm == image.spacing_mm
    assert np.array_equal(ours.array, theirs), f"{np.count_nonzero(ours.array != theirs)} voxels differ"
    cropped = segment_image(image, model, device="cpu", crop_foreground=True).array
    agreement = dice_per_label(cropped, theirs)
    truth = dice_per_label(theirs, case.labels)
    record_property("dice_crop_vs_nnunet", agreement)
    record_property("network_dice_vs_phantom", truth)
    assert set(agreement) == set(case.model.dataset_json["labels"].values()) - {0}
    assert min(agreement.values()) >= 0.99, agreement
    assert min(truth.values()) >= 0.8, f"network not decisive enough for a meaningful comparison: {truth}"
    assert np.array_equal(image.array, case.image)                       # the input is left as it was


def test_parts_combined_with_totalsegmentator_ids_and_canonical_orientation(tmp_path, monkeypatch, repo_root):
    """A two-part model as TotalSegmentator's ``total`` (``network.orientation: "RAS"``; the card lists the
    117 TotalSegmentator classes; parts combined by class name, a later part's foreground wins) through
    ``radai segment --model ID``, on an image stored with i → L and j → P. Part 1 names its classes liver /
    spleen / vertebrae_L1; part 2 (the same network) maps only its class 3 to rib_left_1 (``label_map``)."""
    import json
    import shutil
    from RadAISegmentLib.image import Image
    from RadAISegmentLib.io import read_labelmap, write_image
    from RadAISegmentLib.models.nnunet import nnunet_card
    from RadAIVolumetricsLib.cli import main
    case = builders.ct_case()
    total = json.loads((repo_root / "Resources" / "SampleData" / "totalsegmentator_labels.json").read_text())["total"]
    ids = {name: int(label) for label, name in total.items()}
    model = tmp_path / "models" / "two-parts"
    parts = [model / part / case.model.folder.name for part in ("part1", "part2")]
    for part in parts:
        shutil.copytree(case.model.folder, part)
    dataset = json.loads((parts[0] / "dataset.json").read_text())
    dataset["labels"] = {"background": 0, "liver": 1, "spleen": 2, "vertebrae_L1": 3}
    (parts[0] / "dataset.json").write_text(json.dumps(dataset))
    card = nnunet_card(model, parts, model_id="two-parts")
    card["labels"] = [{"label": label, "name": name} for name, label in sorted(ids.items(), key=lambda x: x[1])]
    card["network"].update(orientation="RAS", use_mirroring=False)
    card["network"]["parts"][1]["label_map"] = {"3": ids["rib_left_1"]}
    (model / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "models"))
    stored = case.image[:, ::-1, ::-1].copy()                            # RAS voxel order flipped along i and j
    direction = np.diag([1.0, 1.0, 1.0])                                 # LPS: i → L, j → P, k → S
    path = write_image(Image(stored, case.spacing_ijk, (0.0, 0.0, 0.0), direction, metadata={"modality": "CT"}),
                       tmp_path / "flipped.nrrd")
    out = tmp_path / "seg.seg.nrrd"                                     # a Slicer segmentation: names kept
    assert main(["segment", str(path), "--model", "two-parts", "--device", "cpu", "--no-crop", "--runtime", "torch",
                 "--out", str(out)]) == 0
    written = read_labelmap(out)
    lut = np.array([0, ids["liver"], ids["spleen"], ids["rib_left_1"]], dtype=np.uint8)
    expected = lut[nnunet_labels(case, False)][:, ::-1, ::-1]
    assert np.array_equal(written.array, expected)
    assert {s.name for s in written.segments} == {"liver", "spleen", "rib_left_1"}


def test_openvino_runtime_at_nnunets_windows_agrees_with_nnunet_predictor():
    """``--runtime openvino`` (the default where OpenVINO is installed) runs nnU-Net's windows through an
    OpenVINO-compiled network: labels agree with ``nnUNetPredictor``'s except at near-ties."""
    from RadAISegmentLib.inference import segment_image
    from RadAISegmentLib.models.loaders import load_model_folder
    case = CASES["CT"]()
    model = load_model_folder(case.model.folder)
    settings = dict(model.extras["nnunet"], use_mirroring=False)
    model = dataclasses.replace(model, extras=dict(model.extras, nnunet=settings))
    theirs = nnunet_labels(case, False)
    ours = segment_image(radai_image(case), model, device="cpu", crop_foreground=False, runtime="openvino")
    assert ours.metadata["inference_precision"] == "fp32 (OpenVINO)"
    differing = np.count_nonzero(ours.array != theirs) / theirs.size
    assert differing <= 1e-3, f"{differing:.2%} of voxels differ from nnU-Net's"
    assert min(dice_per_label(ours.array, theirs).values()) >= 0.999

"""Cine MRI → ventricles → EF in one step: `radai ef --image CINE --model ventricular_short_axis_3label`, with the
real bundle config (Testing/Data) and UNet weights of its architecture trained here on the phantom; the same
measures from reference segmentations equal the phantom's voxel truth exactly; models that do not fit are
refused before anything runs, with nothing written."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from cine_fixtures import phantom_cine, ventricular_bundle, write_cine_dicom
from RadAISegmentLib.cine import read_cine, write_cine
from RadAISegmentLib.models.loaders import load_model_folder
from RadAIVolumetricsLib.cardiac import ejection_fraction_from_sequence
from RadAIVolumetricsLib.cardiac_cine import segment_cine
from test_models_cache import make_model_folder

EF_KEYS = ("edv_ml", "esv_ml", "stroke_volume_ml", "ejection_fraction_percent", "ed_phase", "es_phase",
           "myocardial_mass_g", "cardiac_output_l_min", "volumes_ml", "times_ms", "warnings")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread here and in the `radai` subprocesses: on a busy 2-core machine two threads of these small
    per-slice convolutions wait for each other (several times slower), and results do not depend on the load."""
    monkeypatch.setenv("RADAI_TORCH_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return ventricular_bundle(tmp_path_factory.mktemp("zoo") / "ventricular_short_axis_3label")


def dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_reference_segmentations_give_the_phantoms_exact_volumes_and_analytic_ef(tmp_path):
    """The reference labelmaps as a 4D file through `radai ef --sequence`: EDV, ESV, EF, mass and cardiac output
    equal the phantom's voxel counts to float precision, ED/ES are its phases, EF is within the voxelisation of
    the analytic value."""
    _, labelmaps, truth = phantom_cine(8)
    path = write_cine(labelmaps, tmp_path / "reference.nii.gz", truth["times_ms"])
    done = run_cli("ef", "--sequence", path, "--label", 1, "--myocardium", 2, "--heart-rate", 60, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    lv = [phase["lv_voxel_volume_ml"] for phase in truth["phases"]]
    edv, esv = max(lv), min(lv)
    assert (data["ed_phase"], data["es_phase"]) == (truth["ed_index"], truth["es_index"]) == (0, 3)
    assert data["volumes_ml"] == pytest.approx(lv, rel=1e-12)
    assert data["ejection_fraction_percent"] == pytest.approx(100.0 * (edv - esv) / edv, rel=1e-12)
    assert data["myocardial_mass_g"] == pytest.approx(truth["phases"][0]["myocardium_voxel_volume_ml"] * 1.05, rel=1e-12)
    assert data["cardiac_output_l_min"] == pytest.approx((edv - esv) * 60 / 1000.0, rel=1e-12)
    assert abs(data["ejection_fraction_percent"] - truth["ef_percent"]) < 0.5          # analytic: 58.33 %


def test_cine_to_ef_in_one_step_with_the_real_bundle_config(bundle, tmp_path):
    """4D NIfTI and multi-phase DICOM through `radai ef --image --model`: the same result from both; every
    phase's labels equal MONAI's own pipeline for the bundle (ScaleIntensityd, SliceInferer, softmax, Invertd,
    argmax) in float32; the trained network finds the ventricles (Dice ≥ 0.9), ED/ES and EF within 3 points
    of the analytic value; bf16 keeps the labels (Dice ≥ 0.98 per label)."""
    images, labelmaps, truth = phantom_cine(8)
    nifti = write_cine(images, tmp_path / "cine.nii.gz", truth["times_ms"])
    done = run_cli("ef", "--image", nifti, "--model", bundle, "--heart-rate", 60, "--precision", "fp32",
                   "--runtime", "torch", "--json",
                   "--out", tmp_path / "seg.nii.gz")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert all(key in data for key in EF_KEYS) and data["precision"] == "fp32" and data["phases"] == 8
    segmentation = read_cine(tmp_path / "seg.nii.gz")
    for phase, reference in zip(segmentation.phases, labelmaps):
        assert phase.same_grid(reference, tolerance=1e-4)
        for label in (1, 2, 3):
            assert dice(phase.array == label, reference.array == label) >= 0.9
    again = ejection_fraction_from_sequence(list(segmentation.phases), 1, 2, 60)
    assert data["ejection_fraction_percent"] == pytest.approx(again["ejection_fraction_percent"], rel=1e-12)
    assert (data["ed_phase"], data["es_phase"]) == (0, 3)
    assert abs(data["ejection_fraction_percent"] - truth["ef_percent"]) < 3.0
    assert data["times_ms"] == pytest.approx(truth["times_ms"], abs=1e-3)

    folder = write_cine_dicom(images, tmp_path / "dicom", truth["times_ms"], names="shuffled")
    from_dicom = run_cli("ef", "--image", folder, "--model", bundle, "--precision", "fp32", "--runtime", "torch",
                         "--json")
    assert from_dicom.returncode == 0, from_dicom.stderr
    dicom_data = json.loads(from_dicom.stdout)
    assert dicom_data["volumes_ml"] == pytest.approx(data["volumes_ml"], rel=1e-9)
    assert dicom_data["heart_rate_source"] == "DICOM header" and dicom_data["cardiac_output_l_min"] > 0

    expected = monai_bundle_labels(bundle, images[3], tmp_path)
    assert np.array_equal(segmentation.phases[3].array, expected)

    model = load_model_folder(bundle)
    bf16 = segment_cine(images[:2], model, device="cpu", precision="bf16")
    for ours, reference in zip(bf16, segmentation.phases[:2]):
        assert ours.metadata["inference_precision"].startswith("bf16")
        for label in (1, 2, 3):
            assert dice(ours.array == label, reference.array == label) >= 0.98


def monai_bundle_labels(bundle, image, tmp_path) -> np.ndarray:
    """MONAI's own pipeline from the bundle's inference.json (ConfigParser), on one phase written as NIfTI."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose
    from RadAISegmentLib.io import write_image
    write_image(image, tmp_path / "phase.nii.gz")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"], parser["device"] = str(bundle), "$torch.device('cpu')"
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    network.eval()
    preprocessing = parser.get_parsed_content("preprocessing")
    post = parser.get_parsed_content("postprocessing")
    post = Compose([t for t in post.transforms if type(t).__name__ != "SaveImaged"])
    data = preprocessing({"image": str(tmp_path / "phase.nii.gz")})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    data = post(data)
    return data["pred"][0].numpy().round().astype(np.uint8).transpose(2, 1, 0)


def test_models_that_do_not_fit_are_refused_before_inference_with_nothing_written(bundle, tmp_path):
    """An organ model (no LV blood pool) and a two-channel ventricular model: exit 2 with the reason, no
    --out file; a cine that looks like CT given to the MR model runs but warns."""
    images, _, truth = phantom_cine(8)
    nifti = write_cine(images[:3], tmp_path / "cine.nii.gz", truth["times_ms"][:3])
    organ = make_model_folder(tmp_path / "organ")
    done = run_cli("ef", "--image", nifti, "--model", organ, "--out", tmp_path / "a.nii.gz")
    assert done.returncode == 2 and "no LV blood-pool label" in done.stderr and "Spleen" in done.stderr
    two_channel = tmp_path / "two-channel"
    shutil.copytree(bundle, two_channel)
    config = json.loads((two_channel / "configs" / "inference.json").read_text())
    config["network_def"]["in_channels"] = 2
    (two_channel / "configs" / "inference.json").write_text(json.dumps(config))
    from monai.networks.nets import UNet
    definition = {k: v for k, v in config["network_def"].items() if k != "_target_"}
    torch.save(UNet(**definition).state_dict(), two_channel / "models" / "model.pt")
    done = run_cli("ef", "--image", nifti, "--model", two_channel, "--out", tmp_path / "b.nii.gz")
    assert done.returncode == 2 and "needs 2 input channel(s)" in done.stderr
    assert not list(tmp_path.glob("[ab].nii.gz*")) and not list(tmp_path.glob(".*part*"))
    ct_like = write_cine([image.with_array(image.array.astype(np.int16) - 1024) for image in images[:3]],
                         tmp_path / "ct-like.nii.gz")
    done = run_cli("ef", "--image", ct_like, "--model", bundle, "--json")
    assert "made for MR" in done.stderr

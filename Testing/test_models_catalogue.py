"""The model catalogue: the shipped file against its schema and against the real label lists it mirrors;
each schema rule catching its violation; install state; nnU-Net catalogue installs (agreed layout, SHA-256
recorded at the first download and enforced later); the demo's organ-model choice; the CLI."""
from __future__ import annotations

import copy
import hashlib
import io
import json
import subprocess
import sys
import urllib.parse
import zipfile

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from model_server import FAST, env, model_server, shipped_entry, tree, write_catalogue  # noqa: F401 (env)
from RadAISegmentLib.errors import ChecksumError, ModelError
from RadAISegmentLib.image import Image
from RadAISegmentLib.models.cache import install_model, verify_model
from RadAISegmentLib.models.catalogue import SHIPPED_CATALOGUE, load_catalogue, validate_catalogue
from RadAISegmentLib.models.catalogue_install import install_from_catalogue
from RadAISegmentLib.models.catalogue_status import available_models, demo_organ_model, run_demo_organ_model

REQUIRED = ("wholeBody_ct_segmentation", "wholeBody_ct_segmentation_fast", "spleen_ct_segmentation",
            "swin_unetr_btcv_segmentation", "ventricular_short_axis_3label", "brats_mri_segmentation",
            "totalsegmentator_total", "totalsegmentator_total_fast", "totalsegmentator_body")
TS_RELEASE = "https://github.com/wasserth/TotalSegmentator/releases/download/v2.0.0-weights/"


def test_shipped_catalogue_is_valid_complete_and_matches_the_real_label_lists(test_data, sample_data):
    catalogue = load_catalogue()
    assert set(REQUIRED) <= set(catalogue.ids) and len(set(catalogue.ids)) == len(catalogue.ids)
    for entry in catalogue.entries:
        assert all(urllib.parse.urlsplit(a.url).scheme == "https" for a in entry.archives), entry.id
        assert entry.licence in ("Apache-2.0", "MIT") and entry.size_mb > 0
        for label in entry.labels:
            assert label["type"]["scheme"] in ("SCT", "NCIt") and label["type"]["value"], (entry.id, label)
            assert label["category"]["scheme"] == "SCT" and len(label["color_rgb"]) == 3
        zoo = entry.source == "MONAI Model Zoo"
        assert all((len(a.sha1) == 40) == zoo for a in entry.archives), entry.id   # TotalSegmentator publishes none
    names = lambda entry_id: {label["label"]: label["name"] for label in catalogue.get(entry_id).labels}  # noqa: E731
    total = json.loads((sample_data / "totalsegmentator_labels.json").read_text())["total"]
    assert names("totalsegmentator_total") == names("totalsegmentator_total_fast") == {
        int(k): v for k, v in total.items()}
    for bundle in ("wholeBody_ct_segmentation", "spleen_ct_segmentation", "ventricular_short_axis_3label"):
        metadata = json.loads((test_data / "monai-bundle-configs" / bundle / "configs" / "metadata.json").read_text())
        channels = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        assert names(bundle) == {int(k): v for k, v in channels.items() if int(k) > 0}, bundle
    assert names("wholeBody_ct_segmentation_fast") == names("wholeBody_ct_segmentation")
    spleen = catalogue.get("spleen_ct_segmentation").labels[0]
    assert (spleen["type"]["value"], spleen["type"]["meaning"]) == ("78961009", "Spleen")   # Slicer's mapping
    kidney = catalogue.get("totalsegmentator_total").labels[1]
    assert (kidney["name"], kidney["type"]["value"], kidney["modifier"]["meaning"]) == (
        "kidney_right", "64033007", "Right")
    parts = [a.url for a in catalogue.get("totalsegmentator_total").archives]
    assert parts == [TS_RELEASE + name + ".zip" for name in (
        "Dataset291_TotalSegmentator_part1_organs_1559subj", "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
        "Dataset293_TotalSegmentator_part3_cardiac_1559subj", "Dataset294_TotalSegmentator_part4_muscles_1559subj",
        "Dataset295_TotalSegmentator_part5_ribs_1559subj")]
    assert catalogue.get("totalsegmentator_total_fast").spacing_mm == (3.0, 3.0, 3.0)
    wholebody = catalogue.get("wholeBody_ct_segmentation").archives[0]
    assert wholebody.sha1 == "d3be077219fea4ac9630efddd81c19e0676bf206"       # model_info.json of the zoo


@pytest.mark.parametrize("path, value, message", [
    (("models", 0, "archives", 0, "url"), "http://example.org/x.zip", "only https://"),
    (("models", 4, "archives", 0, "sha1"), "xyz", "sha1: must be 40 lower-case hex digits"),
    (("models", 1, "id"), "totalsegmentator_total_fast", "id 'totalsegmentator_total_fast' appears 2 times"),
    (("models", 0, "labels", "1"), "no_such_organ", "'no_such_organ' has no entry in terms"),
    (("models", 0, "labels", "0"), "spleen", "label value '0' must be 1..255"),
    (("models", 2, "licence"), "CC-BY-NC-4.0", "is not one a default catalogue may offer"),
    (("terms", "liver", "type"), None, "terms.liver.type: must be an object"),
    (("terms", "liver", "type", "value"), "liver", "is not a number"),
    (("models", 0, "archives", 0, "nnunet", "folds"), [], "nnunet.folds"),
    (("models", 0, "network", "orientation"), "LPS", "network.orientation"),
])
def test_each_schema_rule_catches_its_violation(path, value, message):
    data = json.loads(SHIPPED_CATALOGUE.read_text())
    validate_catalogue(data)                                     # the shipped file passes ...
    broken = copy.deepcopy(data)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ModelError, match=message):               # ... and each change is named
        validate_catalogue(broken)


def test_loopback_http_is_allowed_for_test_catalogues_and_the_env_override(tmp_path, monkeypatch):
    entry = dict(shipped_entry("spleen_ct_segmentation"))
    entry["archives"] = [dict(entry["archives"][0], url="http://127.0.0.1:9/s.zip")]
    path = write_catalogue(tmp_path, [entry]).path
    monkeypatch.setenv("RADAI_CATALOGUE", str(path))
    assert load_catalogue().ids == ["spleen_ct_segmentation"] and load_catalogue().path == path
    monkeypatch.setenv("RADAI_CATALOGUE", str(tmp_path / "absent.json"))
    with pytest.raises(ModelError, match="absent.json does not exist; unset RADAI_CATALOGUE"):
        load_catalogue()


def nnunet_part_zip(dataset, trainer, labels, folds=(0,), seed=0):
    """A TotalSegmentator-style release zip: <dataset>/<trainer>__nnUNetPlans__3d_fullres/ with dataset.json,
    plans.json and fold_N/checkpoint_final.pth (random bytes: the installer checks files, it does not load them)."""
    rng = np.random.default_rng(seed)
    base = f"{dataset}/{trainer}__nnUNetPlans__3d_fullres"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(f"{base}/dataset.json", json.dumps({
            "channel_names": {"0": "CT"}, "labels": {"background": 0, **labels}, "numTraining": 1,
            "file_ending": ".nii.gz"}))
        zipped.writestr(f"{base}/plans.json", json.dumps({"dataset_name": dataset, "plans_name": "nnUNetPlans"}))
        for fold in folds:
            zipped.writestr(f"{base}/fold_{fold}/checkpoint_final.pth", rng.bytes(3000))
    return buffer.getvalue()


PARTS = {"/Dataset801_organs.zip": ("Dataset801_organs", {"spleen": 1, "kidney_right": 2}),
         "/Dataset802_bones.zip": ("Dataset802_bones", {"vertebrae_L5": 1})}


def two_part_entry(server, folds=(0,)):
    entry = copy.deepcopy(shipped_entry("totalsegmentator_total"))
    entry["archives"] = [{"url": server.url(path), "size_mb": 1, "nnunet": {
        "dataset": dataset, "trainer": "nnUNetTrainerNoMirroring", "plans": "nnUNetPlans",
        "configuration": "3d_fullres", "folds": list(folds), "checkpoint": "checkpoint_final.pth"}}
        for path, (dataset, _) in PARTS.items()]
    entry["labels"] = {"1": "spleen", "2": "kidney_right", "3": "vertebrae_L5"}
    entry["size_mb"] = 2
    return entry


def test_nnunet_parts_install_in_the_agreed_layout_with_first_download_sha256(env, tmp_path):
    zips = {path: nnunet_part_zip(dataset, "nnUNetTrainerNoMirroring", labels, seed=n)
            for n, (path, (dataset, labels)) in enumerate(PARTS.items())}
    with model_server() as server:
        server.files.update(zips)
        catalogue = write_catalogue(tmp_path, [two_part_entry(server)])
        report = install_from_catalogue("totalsegmentator_total", catalogue=catalogue, settings=FAST)
        model = env / "totalsegmentator_total"
        folders = [f"{dataset}/nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres" for dataset, _ in PARTS.values()]
        assert set(tree(env)) == {"totalsegmentator_total", "totalsegmentator_total/card.json"} | {
            f"totalsegmentator_total/{p}" for folder in folders for p in (
                folder.split("/")[0], folder, f"{folder}/dataset.json", f"{folder}/plans.json", f"{folder}/fold_0",
                f"{folder}/fold_0/checkpoint_final.pth")}
        card = report.card
        assert card.network == {"format": "nnunet_v2", "orientation": "RAS", "use_mirroring": False, "parts": [
            {"folder": folder, "configuration": "3d_fullres", "folds": [0], "checkpoint": "checkpoint_final.pth"}
            for folder in folders]}
        assert [f["file"] for f in card.weights["files"]] == [
            f"{folder}/{name}" for folder in folders for name in ("dataset.json", "plans.json",
                                                                  "fold_0/checkpoint_final.pth")]
        assert all(f["sha256"] == hashlib.sha256((model / f["file"]).read_bytes()).hexdigest()
                   for f in card.weights["files"])
        records = card.raw["source"]["archives"]
        assert [r["sha256"] for r in records] == [hashlib.sha256(z).hexdigest() for z in zips.values()]
        assert all(r["hash_origin"] == "first download (the publisher gives no checksum)" for r in records)
        assert len(report.notes) == 2 and records[0]["sha256"] in report.notes[0] and "publishes no checksum" in \
            report.notes[0]
        assert [label.name for label in card.labels] == ["spleen", "kidney_right", "vertebrae_L5"]
        verify_model("totalsegmentator_total")
        installed = tree(env)
        server.files["/Dataset802_bones.zip"] = nnunet_part_zip("Dataset802_bones", "nnUNetTrainerNoMirroring",
                                                                {"vertebrae_L5": 1}, seed=7)
        with pytest.raises(ChecksumError, match="Dataset802_bones.zip .* was replaced at the source or altered"):
            install_from_catalogue("totalsegmentator_total", catalogue=catalogue, reinstall=True, settings=FAST)
        assert tree(env) == installed                                    # cache as it was, no download left
        server.files["/Dataset802_bones.zip"] = zips["/Dataset802_bones.zip"]
        again = install_from_catalogue("totalsegmentator_total", catalogue=catalogue, reinstall=True, settings=FAST)
    assert again.notes == [] and all(r["hash_origin"].startswith("first download (verified")
                                     for r in again.card.raw["source"]["archives"])
    plans = model / folders[1] / "plans.json"
    plans.write_text(plans.read_text() + " ")
    with pytest.raises(ChecksumError, match="plans.json"):
        verify_model("totalsegmentator_total")


@pytest.mark.parametrize("problem", ["unknown class", "missing fold"])
def test_nnunet_archive_that_does_not_fit_is_refused(env, tmp_path, problem):
    with model_server() as server:
        for path, (dataset, labels) in PARTS.items():
            if problem == "unknown class" and dataset == "Dataset802_bones":
                labels = {"vertebrae_L5": 1, "liver_tumour": 2}
            server.files[path] = nnunet_part_zip(dataset, "nnUNetTrainerNoMirroring", labels)
        folds = (0, 1) if problem == "missing fold" else (0,)
        catalogue = write_catalogue(tmp_path, [two_part_entry(server, folds=folds)])
        expected = "classes liver_tumour are not labels" if problem == "unknown class" else \
            "fold_1/checkpoint_final.pth is missing"
        with pytest.raises(ModelError, match=expected):
            install_from_catalogue("totalsegmentator_total", catalogue=catalogue, settings=FAST)
    assert tree(env) == {}


def test_users_own_nnunet_zip_installs_with_coded_labels(env, tmp_path):
    archive = tmp_path / "Dataset801_organs.zip"
    archive.write_bytes(nnunet_part_zip("Dataset801_organs", "nnUNetTrainer", {"spleen": 1, "my_tumour": 2}))
    card = install_model(archive)
    assert card.id == "Dataset801_organs" and card.format == "nnunet_v2"
    assert card.network["parts"][0]["folder"] == "Dataset801_organs/nnUNetTrainer__nnUNetPlans__3d_fullres"
    spleen, tumour = card.labels
    assert (spleen.type.value, tumour.name, tumour.type) == ("78961009", "my_tumour", None)
    verify_model("Dataset801_organs")


def tiny_organ_model(folder, model_id):
    params = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]}
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(UNet(**params).state_dict(), folder / "model.pt")
    (folder / "card.json").write_text(json.dumps({
        "id": model_id, "title": "Tiny organ model", "version": "1", "task": "segmentation", "modality": ["CT"],
        "labels": [{"label": 1, "name": "spleen"}],
        "input": {"spacing_mm": [4, 4, 4], "patch_size": [16, 16, 16],
                  "normalisation": {"kind": "ct_window", "a_min": -200, "a_max": 300}},
        "network": {"format": "state_dict", "name": "UNet", "parameters": params},
        "weights": {"file": "model.pt", "sha256": hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()}}))


def test_available_models_and_the_demo_organ_model(env):
    assert demo_organ_model().model_id is None
    assert "run `radai models install totalsegmentator_total_fast` (about 250 MB download, Apache-2.0)" in \
        demo_organ_model().message
    tiny_organ_model(env / "spleen_ct_segmentation", "spleen_ct_segmentation")
    rows = {row.id: row for row in available_models()}
    assert rows["spleen_ct_segmentation"].installed_version == "1" and rows["spleen_ct_segmentation"].update_available
    assert not rows["totalsegmentator_total"].installed and rows["totalsegmentator_total"].size_mb == 1250
    image = Image(np.full((20, 24, 28), -50.0, np.float32), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), np.eye(3),
                  metadata={"modality": "CT"})
    run = run_demo_organ_model(image)
    assert run.model_id == "spleen_ct_segmentation" and run.labelmap.same_grid(image) and run.seconds > 0
    assert "Tiny organ model (spleen_ct_segmentation 1)" in run.message
    tiny_organ_model(env / "wholeBody_ct_segmentation_fast", "wholeBody_ct_segmentation_fast")
    assert demo_organ_model().model_id == "wholeBody_ct_segmentation_fast"      # a 3 mm model is preferred


def run_cli(*args, env_vars):
    import os
    return subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env_vars})


def test_cli_available_and_unknown_id(tmp_path):
    env_vars = {"RADAI_MODELS_DIR": str(tmp_path / "cache"), "RADAI_CATALOGUE": str(SHIPPED_CATALOGUE)}
    listed = run_cli("models", "available", "--json", env_vars=env_vars)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["models"]
    assert [row["id"] for row in rows] == load_catalogue().ids and not any(row["installed"] for row in rows)
    assert {row["licence"] for row in rows} <= {"Apache-2.0", "MIT"} and all(row["size_mb"] > 0 for row in rows)
    wrong = run_cli("models", "install", "wholebody_ct", env_vars=env_vars)
    lines = [line for line in wrong.stderr.splitlines() if line.strip()]
    assert wrong.returncode == 2 and len(lines) == 1
    assert "No file or folder 'wholebody_ct' exists" in lines[0] and "radai models available" in lines[0]
    assert not (tmp_path / "cache").exists()


def test_cli_installs_published_files_fetched_by_hand(env, tmp_path, monkeypatch, capsys):
    """`radai models install FILE` with a published file name installs it as that catalogue model (verified,
    coded labels); `--file` gives a model of several files; the user's files stay where they are."""
    from RadAIVolumetricsLib.cli import main
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    body = fetched / "Dataset899_body.zip"
    body.write_bytes(nnunet_part_zip("Dataset899_body", "nnUNetTrainer", {"body_trunc": 1, "body_extremities": 2}))
    for path, (dataset, labels) in PARTS.items():
        (fetched / path.lstrip("/")).write_bytes(nnunet_part_zip(dataset, "nnUNetTrainerNoMirroring", labels))
    body_entry = copy.deepcopy(shipped_entry("totalsegmentator_body"))
    body_entry["archives"][0].update(url="http://127.0.0.1:9/Dataset899_body.zip")
    body_entry["archives"][0]["nnunet"]["dataset"] = "Dataset899_body"
    body_entry["size_mb"] = 1

    class Offline:                                           # a server nothing talks to
        @staticmethod
        def url(path):
            return f"http://127.0.0.1:9{path}"
    catalogue = write_catalogue(tmp_path, [body_entry, two_part_entry(Offline)])
    monkeypatch.setenv("RADAI_CATALOGUE", str(catalogue.path))
    assert main(["models", "install", str(body)]) == 0
    assert "installed totalsegmentator_body 2.0.0" in capsys.readouterr().out and body.is_file()
    record = json.loads((env / "totalsegmentator_body" / "card.json").read_text())["source"]["archives"][0]
    assert record["sha256"] == hashlib.sha256(body.read_bytes()).hexdigest()
    parts = [str(fetched / path.lstrip("/")) for path in PARTS]
    assert main(["models", "install", "totalsegmentator_total", "--file", parts[0], "--file", parts[1]]) == 0
    assert "installed totalsegmentator_total" in capsys.readouterr().out
    installed = tree(env)
    assert main(["models", "install", "totalsegmentator_total", "--reinstall", "--file", str(body)]) == 2
    assert "Dataset899_body.zip is not a file of totalsegmentator_total" in capsys.readouterr().err
    assert tree(env) == installed and all((fetched / p.lstrip("/")).is_file() for p in PARTS)

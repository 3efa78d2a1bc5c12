"""The real MONAI zoo configs load without evaluating code and run end to end (random weights of the same
architecture, made here); expressions in needed keys are refused unless the bundle is trusted."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

from RadAISegmentLib.errors import ModelError, UntrustedCodeError
from RadAISegmentLib.image import Image
from RadAISegmentLib.inference import segment_image
from RadAISegmentLib.models.bundle import BundleConfig
from RadAISegmentLib.models.cache import install_model
from RadAISegmentLib.models.loaders import build_monai_network, load_model_folder

ZOO = ("spleen_ct_segmentation", "wholeBody_ct_segmentation", "ventricular_short_axis_3label",
       "brats_mri_segmentation")


def make_bundle(test_data, name, tmp_path, shrink=None):
    """Copy a zoo bundle's configs (Testing/Data/monai-bundle-configs); save random weights of its architecture
    as models/model.pt."""
    root = tmp_path / name
    shutil.copytree(test_data / "monai-bundle-configs" / name / "configs", root / "configs")
    if shrink:
        config = json.loads((root / "configs" / "inference.json").read_text())
        config["network_def"].update(shrink)
        (root / "configs" / "inference.json").write_text(json.dumps(config))
    network_name, args = BundleConfig(root).network_def()
    torch.manual_seed(0)
    (root / "models").mkdir()
    torch.save(build_monai_network(network_name, args).state_dict(), root / "models" / "model.pt")
    return root


def small_volume(modality="CT", seed=0):
    rng = np.random.default_rng(seed)
    array = rng.normal(40 if modality == "CT" else 300, 60, (14, 30, 34)).astype(np.float32)
    array[:, :3] = -1000 if modality == "CT" else 0
    direction = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])                 # non-identity direction
    return Image(array, (1.3, 1.1, 2.4), (5.0, -7.0, 11.0), direction, metadata={"modality": modality})


# smaller channel widths keep the 105-class SegResNet and the 3D UNets fast; the architecture class, label
# count, input channels, preprocessing and inferer all stay those of the real config.
SHRINK = {"spleen_ct_segmentation": {"channels": [4, 8, 16, 32, 64]},
          "wholeBody_ct_segmentation": {"init_filters": 8},
          "ventricular_short_axis_3label": {"channels": [4, 8, 16, 32, 64]},
          "brats_mri_segmentation": {"init_filters": 8}}


@pytest.mark.parametrize("name", ZOO)
def test_zoo_config_runs_end_to_end_untrusted(test_data, tmp_path, name):
    root = make_bundle(test_data, name, tmp_path, SHRINK[name])
    model = load_model_folder(root, trusted=False)
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    names = {s.label: s.name for s in model.segments}
    if model.activation == "softmax":
        assert names == {int(k): v for k, v in channel_def.items() if int(k) > 0}
    else:
        assert name == "brats_mri_segmentation" and names == {int(k) + 1: v for k, v in channel_def.items()}
    expected = {"spleen_ct_segmentation": (3, 1, 2, (1.5, 1.5, 2.0)), "wholeBody_ct_segmentation": (3, 1, 105, (1.5,) * 3),
                "ventricular_short_axis_3label": (2, 1, 4, None), "brats_mri_segmentation": (3, 4, 3, None)}[name]
    assert (model.spatial_dims, model.in_channels, model.out_channels, model.spacing_mm) == expected
    inferer = json.loads((root / "configs" / "inference.json").read_text())["inferer"]
    assert model.window_weighting == inferer.get("mode", "constant")       # wholeBody: gaussian; others: MONAI's default
    assert model.padding_mode == inferer.get("padding_mode", "constant")   # wholeBody: replicate
    model.roi_size = tuple(min(r, 32) for r in model.roi_size)
    image = small_volume("MR" if name.startswith(("brats", "ventricular")) else "CT")
    inputs = [image] * model.in_channels if model.in_channels > 1 else image
    labelmap = segment_image(inputs, model, device="cpu")
    assert labelmap.same_grid(image) and labelmap.array.dtype == np.uint8
    assert set(np.unique(labelmap.array)) <= {0} | {s.label for s in model.segments}
    assert labelmap.array.any()


def test_untrusted_expression_in_needed_key_is_refused_naming_the_key(test_data, tmp_path):
    root = make_bundle(test_data, "spleen_ct_segmentation", tmp_path, {"channels": [4, 8, 16, 32, 64]})
    config = json.loads((root / "configs" / "inference.json").read_text())
    config["network_def"]["out_channels"] = "$__import__('os').system('touch pwned') or 2"
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(UntrustedCodeError, match="network_def#out_channels"):
        load_model_folder(root, trusted=False)
    assert not (tmp_path / "pwned").exists()
    config["network_def"]["_target_"] = "subprocess.Popen"
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(UntrustedCodeError, match="_target_"):
        load_model_folder(root, trusted=False)


def test_trusted_bundle_uses_config_parser_and_zip_install(test_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "cache"))
    root = make_bundle(test_data, "spleen_ct_segmentation", tmp_path / "src", {"channels": [4, 8, 16, 32, 64]})
    archive = tmp_path / "spleen.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in root.rglob("*"):
            zipped.write(path, path.relative_to(root.parent))
    card = install_model(archive, trusted=True)
    assert card.trusted and card.id == "spleen_ct_segmentation"
    model = load_model_folder(card.folder)
    untrusted = load_model_folder(root, trusted=False)
    probe = torch.zeros(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.network(probe), untrusted.network(probe))


def test_wrong_channel_count_is_a_model_error(test_data, tmp_path):
    model = load_model_folder(make_bundle(test_data, "brats_mri_segmentation", tmp_path, SHRINK["brats_mri_segmentation"]))
    with pytest.raises(ModelError, match="4 input channel"):
        segment_image(small_volume("MR"), model, device="cpu")


def test_literal_expressions_are_read_from_the_ast_and_calls_refused(tmp_path):
    root = tmp_path / "b"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "inference.json").write_text(json.dumps({
        "flags": {"highres": False}, "pixdim": "$[1.5, 1.5, 1.5] if @flags#highres else [3.0, 3.0, -3.0]",
        "evil": "$open('/etc/passwd').read()", "neg": "$-2"}))
    config = BundleConfig(root)
    assert config.resolve("@pixdim", "x") == [3.0, 3.0, -3.0]
    assert config.resolve(config.config["neg"], "neg") == -2
    with pytest.raises(UntrustedCodeError, match="evil"):
        config.resolve(config.config["evil"], "evil")


def test_bundle_zip_loads_directly(test_data, tmp_path):
    root = make_bundle(test_data, "ventricular_short_axis_3label", tmp_path / "src",
                       SHRINK["ventricular_short_axis_3label"])
    archive = tmp_path / "vsa.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in root.rglob("*"):
            zipped.write(path, path.relative_to(root.parent))
    model = load_model_folder(archive)
    assert model.spatial_dims == 2 and model.extras["inferer"] == "SliceInferer"
    assert [s.name for s in model.segments] == ["lv_pool", "myocardium", "rv_pool"]


def test_unknown_window_blending_is_a_model_error(test_data, tmp_path):
    root = make_bundle(test_data, "spleen_ct_segmentation", tmp_path, SHRINK["spleen_ct_segmentation"])
    config = json.loads((root / "configs" / "inference.json").read_text())
    config["inferer"]["mode"] = "median"
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="window_weighting 'median'"):
        load_model_folder(root, trusted=False)

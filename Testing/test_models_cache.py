"""Model cards, the per-user cache, zip safety, checksums and the download path (local http.server only)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import zipfile

import pytest
import torch
from monai.networks.nets import UNet

from RadAISegmentLib.errors import ChecksumError, ModelError, UnsafeArchiveError
from RadAISegmentLib.models import card as card_module
from RadAISegmentLib.models.cache import (download, find_model, install_model, list_models, remove_model,
                                          verify_model)
from RadAISegmentLib.models.loaders import load_from_card

UNET_PARAMS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]}


def make_model_folder(folder, model_id="tiny-unet", params=UNET_PARAMS):
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(UNet(**params).state_dict(), folder / "model.pt")
    sha = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    card = {"id": model_id, "title": "Tiny UNet", "version": "1.2.0", "task": "segmentation", "modality": ["CT"],
            "labels": [{"label": 1, "name": "Spleen", "color_rgb": [0.6, 0.2, 0.2],
                        "category": {"value": "123037004", "scheme": "SCT", "meaning": "Anatomical Structure"},
                        "type": {"value": "78961009", "scheme": "SCT", "meaning": "Spleen"}}],
            "input": {"spacing_mm": [2, 2, 2], "channels": 1, "patch_size": [16, 16, 16],
                      "normalisation": {"kind": "ct_window", "a_min": -200, "a_max": 300}},
            "network": {"format": "state_dict", "name": "monai.networks.nets.UNet", "parameters": params},
            "weights": {"file": "model.pt", "sha256": sha}, "licence": "CC0", "provenance": "test",
            "metrics": {"dice": 0.0}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RADAI_RESOURCES", str(tmp_path / "no-resources"))
    return tmp_path / "cache"


def test_card_validation_names_missing_and_invalid_fields(tmp_path):
    folder = make_model_folder(tmp_path / "m")
    data = json.loads((folder / "card.json").read_text())
    card = card_module.parse_card(data, folder)
    assert (card.id, card.version, card.weights_sha256) == ("tiny-unet", "1.2.0", data["weights"]["sha256"])
    assert card.labels[0].type.meaning == "Spleen" and card.spacing_mm == (2.0, 2.0, 2.0)
    for key in ("id", "task", "network", "weights"):
        broken = {k: v for k, v in data.items() if k != key}
        with pytest.raises(ModelError, match=key):
            card_module.parse_card(broken)
    with pytest.raises(ModelError, match="sha256"):
        card_module.parse_card({**data, "weights": {"file": "model.pt", "sha256": "xyz"}})
    with pytest.raises(ModelError, match="task"):
        card_module.parse_card({**data, "task": "classification"})
    with pytest.raises(ModelError, match="normalisation"):
        card_module.parse_card({**data, "input": {"normalisation": {"kind": "magic"}}})
    with pytest.raises(ModelError, match="allow-listed"):
        load_from_card(card_module.parse_card({**data, "network": {"format": "state_dict", "name": "os.system"}},
                                              folder))


def test_install_list_verify_remove_from_zip_offline(tmp_path, cache_dir):
    folder = make_model_folder(tmp_path / "src" / "tiny-unet")
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in folder.iterdir():
            zipped.write(path, f"tiny-unet/{path.name}")
    card = install_model(archive)
    assert card.folder == cache_dir / "tiny-unet"
    assert [c.id for c in list_models()] == ["tiny-unet"]
    assert verify_model("tiny-unet").weights_sha256 == card.weights_sha256
    model = load_from_card(find_model("tiny-unet"))
    assert model.out_channels == 2 and model.spacing_mm == (2.0, 2.0, 2.0)
    conversion = cache_dir / ".openvino" / "0123abcd" / "model.xml"      # a kept OpenVINO conversion
    conversion.parent.mkdir(parents=True)
    conversion.write_text("<net/>")
    remove_model("tiny-unet")
    with pytest.raises(ModelError, match="Unknown model"):
        find_model("tiny-unet")
    assert not (cache_dir / ".openvino").exists()            # no conversion outlives the models it came from


def test_tampered_weights_raise_checksum_error_on_verify_and_load(tmp_path, cache_dir):
    install_model(make_model_folder(tmp_path / "tiny-unet"))
    weights = cache_dir / "tiny-unet" / "model.pt"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="tampered"):
        verify_model("tiny-unet")
    with pytest.raises(ChecksumError):
        load_from_card(find_model("tiny-unet"))


def test_zip_with_parent_paths_is_refused_and_nothing_extracted(tmp_path, cache_dir):
    folder = make_model_folder(tmp_path / "tiny-unet")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(folder / "card.json", "tiny-unet/card.json")
        zipped.writestr("../escaped.txt", "owned")
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        install_model(archive)
    assert not (tmp_path / "escaped.txt").exists()
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (cache_dir / "tiny-unet").exists()


def test_download_streams_with_progress_and_checksum_from_local_server(tmp_path):
    payload = bytes(range(256)) * 4000
    served = tmp_path / "served"
    served.mkdir()
    (served / "weights.bin").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/weights.bin"
        fractions = []
        good = download(url, tmp_path / "out" / "w.bin", hashlib.sha256(payload).hexdigest(),
                        progress=lambda f, m: fractions.append(f), chunk_bytes=100_000)
        assert good.read_bytes() == payload
        assert fractions[-1] == pytest.approx(1.0) and len(fractions) >= 10 and fractions == sorted(fractions)
        with pytest.raises(ChecksumError):
            download(url, tmp_path / "out" / "bad.bin", "0" * 64)
        assert not (tmp_path / "out" / "bad.bin").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_remove_refuses_paths_and_shipped_models(tmp_path, cache_dir, monkeypatch):
    """`radai models remove ../x` must not delete a folder outside the cache; shipped models stay."""
    victim = cache_dir.parent / "outside" / "victim"
    victim.mkdir(parents=True)
    (victim / "card.json").write_text("{}")
    for bad in ("../outside/victim", str(victim), "..", ""):
        with pytest.raises(ModelError, match="not a model id"):
            remove_model(bad)
    assert (victim / "card.json").is_file()
    monkeypatch.delenv("RADAI_RESOURCES")                      # the repository's shipped models
    with pytest.raises(ModelError, match="shipped models cannot be removed"):
        remove_model("lesion-roi")
    assert find_model("lesion-roi").id == "lesion-roi"


class _CodeOnUnpickling:
    """A pickle payload: unpickling it runs ``exec`` (here it would only write a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('unpickled')",)


@pytest.mark.parametrize("payload", ["code", "whole-module"])
def test_pickled_weights_with_a_valid_checksum_are_refused(tmp_path, cache_dir, payload):
    """A model file whose SHA-256 matches its card but which needs unpickling: a payload that runs code, or a
    whole ``nn.Module`` saved with ``torch.save(model)``. The checksum passes, yet the loader refuses it
    (``weights_only=True``) with a ModelError naming the file, and no code runs; ``radai segment`` says so in
    one line and writes nothing."""
    import subprocess
    import sys
    marker = tmp_path / "pwned"
    folder = make_model_folder(tmp_path / "src" / "tiny-unet")
    if payload == "code":
        torch.save({"model": _CodeOnUnpickling(marker)}, folder / "model.pt")
    else:
        torch.save(UNet(**UNET_PARAMS), folder / "model.pt")
    card = json.loads((folder / "card.json").read_text())
    card["weights"]["sha256"] = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps(card))
    installed = install_model(folder)                              # the checksum is right: install accepts it
    assert verify_model("tiny-unet").weights_sha256 == card["weights"]["sha256"]
    with pytest.raises(ModelError, match="model.pt is not a plain state dict loadable with weights_only=True"):
        load_from_card(installed)
    assert not marker.exists()
    if payload != "code":
        return
    image = tmp_path / "ct.nrrd"
    from RadAISegmentLib.image import Image
    from RadAISegmentLib.io import write_image
    import numpy as np
    write_image(Image(np.zeros((8, 8, 8), np.int16), metadata={"modality": "CT"}), image)
    run = subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", "segment", str(image), "--model", "tiny-unet",
                          "--out", str(tmp_path / "seg.nrrd")], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "weights_only=True" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not marker.exists() and not (tmp_path / "seg.nrrd").exists()


def test_pickled_weights_in_a_bundle_are_refused(tmp_path, test_data):
    """The same for a MONAI bundle loaded without trust: its models/model.pt is read with weights_only=True."""
    import shutil
    from RadAISegmentLib.models.loaders import load_model_folder
    marker = tmp_path / "pwned"
    root = tmp_path / "spleen_ct_segmentation"
    shutil.copytree(test_data / "monai-bundle-configs" / "spleen_ct_segmentation" / "configs", root / "configs")
    (root / "models").mkdir()
    torch.save({"state_dict": _CodeOnUnpickling(marker)}, root / "models" / "model.pt")
    with pytest.raises(ModelError, match="weights_only=True"):
        load_model_folder(root, trusted=False)
    assert not marker.exists()

"""nnU-Net model folders that cannot be run: each refused with a typed error naming the problem, nothing
written, the input untouched. Model: the small CT model of ``nnunet_builders`` (nnU-Net's own planning)."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import nnunet_builders as builders
from RadAISegmentLib.errors import ModelError, UnsafeArchiveError, UntrustedCodeError

PART = "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture
def model_dir(tmp_path, monkeypatch) -> Path:
    """A copy of the CT result folder as an installed model (card.json written from its dataset.json)."""
    from RadAISegmentLib.models.nnunet import nnunet_card
    monkeypatch.setenv("RADAI_TORCH_THREADS", "1")
    case = builders.ct_case()
    folder = tmp_path / "models" / "ct-nnunet"
    shutil.copytree(case.model.folder, folder / PART)
    card = nnunet_card(folder, [folder / PART], model_id="ct-nnunet")
    (folder / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "models"))
    return folder


def edit_card(folder: Path, change) -> None:
    card = json.loads((folder / "card.json").read_text())
    change(card)
    (folder / "card.json").write_text(json.dumps(card))


def write_image(tmp_path: Path) -> Path:
    from RadAISegmentLib.image import Image
    from RadAISegmentLib.io import write_image as write
    case = builders.ct_case()
    return write(Image(case.image, case.spacing_ijk, (0.0, 0.0, 0.0), np.eye(3), metadata={"modality": "CT"}),
                 tmp_path / "ct.nrrd")


def segment_cli(tmp_path: Path, capsys) -> tuple[int, str, Path]:
    from RadAIVolumetricsLib.cli import main
    image = write_image(tmp_path)
    before = image.read_bytes()
    out = tmp_path / "out" / "seg.nrrd"
    code = main(["segment", str(image), "--model", "ct-nnunet", "--device", "cpu", "--out", str(out)])
    assert image.read_bytes() == before
    return code, capsys.readouterr().err, out


def test_missing_fold_refused_by_the_cli_nothing_written(model_dir, tmp_path, capsys):
    edit_card(model_dir, lambda card: card["network"]["parts"][0].update(folds=[0, 1]))
    code, err, out = segment_cli(tmp_path, capsys)
    assert code == 2 and "fold_1" in err and "missing" in err
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


class Payload:
    """Unpickling this runs ``open(path, "w")``: what a malicious checkpoint would do with worse code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_checkpoint_needing_unpickling_refused_unless_trusted(model_dir, tmp_path, capsys):
    from RadAISegmentLib.models.cache import sha256_file
    from RadAISegmentLib.models.loaders import load_model_folder
    checkpoint = model_dir / PART / "fold_0" / "checkpoint_final.pth"
    marker = tmp_path / "code-ran"
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    content["trainer_state"] = Payload(str(marker))
    torch.save(content, checkpoint)

    def rehash(card):
        for entry in card["weights"]["files"]:
            if entry["file"].endswith("checkpoint_final.pth"):
                entry["sha256"] = sha256_file(model_dir / entry["file"])
        card["weights"]["sha256"] = sha256_file(model_dir / card["weights"]["file"])
    edit_card(model_dir, rehash)
    with pytest.raises(UntrustedCodeError, match=r"io\.open.*--trusted"):
        load_model_folder(model_dir)
    code, err, out = segment_cli(tmp_path, capsys)
    assert code == 2 and "io.open" in err and not out.exists()
    assert not marker.exists()                                         # nothing in the pickle ran
    model = load_model_folder(model_dir, trusted=True)                # the user vouches for it: nnU-Net's way
    assert marker.exists() and model.extras["nnunet_parts"][0].networks


def test_plans_and_dataset_mismatch(model_dir):
    from RadAISegmentLib.models.loaders import load_model_folder
    dataset_path = model_dir / PART / "dataset.json"
    dataset = json.loads(dataset_path.read_text())
    dataset_path.write_text(json.dumps(dict(dataset, channel_names={"0": "CT", "1": "CT"})))
    edit_card(model_dir, lambda card: card["weights"].pop("files"))
    with pytest.raises(ModelError, match=r"normalises 1 channel\(s\) but dataset.json names 2"):
        load_model_folder(model_dir)
    dataset_path.write_text(json.dumps(dict(dataset, labels={**dataset["labels"], "kidney": 4})))
    edit_card(model_dir, lambda card: card["labels"].append({"label": 4, "name": "kidney"}))
    with pytest.raises(ModelError, match="checkpoint does not fit the network"):
        load_model_folder(model_dir)
    dataset_path.write_text(json.dumps(dict(dataset, labels={"background": 0, "organs": [1, 2], "liver": 1},
                                            regions_class_order=[1, 2])))
    with pytest.raises(ModelError, match="region-based"):
        load_model_folder(model_dir)


def test_part_class_missing_from_card_and_tampered_checkpoint(model_dir):
    from RadAISegmentLib.errors import ChecksumError
    from RadAISegmentLib.models.loaders import load_model_folder
    edit_card(model_dir, lambda card: card.update(labels=[x for x in card["labels"] if x["name"] != "spleen"]))
    with pytest.raises(ModelError, match="class 'spleen'"):
        load_model_folder(model_dir)
    with open(model_dir / PART / "fold_0" / "checkpoint_final.pth", "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ChecksumError):
        load_model_folder(model_dir)


def test_channel_count_must_match(model_dir):
    from RadAISegmentLib.image import Image
    from RadAISegmentLib.inference import segment_image
    from RadAISegmentLib.models.loaders import load_model_folder
    case = builders.ct_case()
    image = Image(case.image.copy(), case.spacing_ijk, (0.0, 0.0, 0.0), np.eye(3), metadata={"modality": "CT"})
    with pytest.raises(ModelError, match=r"needs 1 input channel\(s\) but 2 image"):
        segment_image([image, image], load_model_folder(model_dir), device="cpu")
    assert np.array_equal(image.array, case.image)


def test_zip_with_path_traversal_refused(tmp_path):
    from RadAISegmentLib.models.loaders import load_model_folder
    case = builders.ct_case()
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in case.model.folder.rglob("*"):
            if path.is_file():
                zipped.write(path, f"{PART}/{path.relative_to(case.model.folder)}")
        zipped.writestr("../escaped.txt", "x")
    with pytest.raises(UnsafeArchiveError):
        load_model_folder(archive)
    assert not (tmp_path.parent / "escaped.txt").exists()

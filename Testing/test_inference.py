"""Inference engine: exact output grid, agreement with MONAI's sliding window, cancellation, OOM fallback,
bad input, and the `radai segment` / `radai models` CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from RadAISegmentLib.device import DeviceChoice, choose_device, describe_device, run_with_cpu_fallback
from RadAISegmentLib.errors import CancelledError, InputError
from RadAISegmentLib.image import Image
from RadAISegmentLib.inference import check_seed, model_grid, run_lesion_model, segment_image
from RadAISegmentLib.io import read_image, read_labelmap, write_image
from RadAISegmentLib.models.cache import install_model
from RadAISegmentLib.models.card import load_card
from RadAISegmentLib.models.loaders import load_from_card
from RadAISegmentLib.progress import CancelToken
from RadAISegmentLib.sliding import sliding_window_labels
from test_models_cache import make_model_folder


def oblique_ct(shape_kji=(18, 40, 36), seed=1):
    """CT-like volume (air outside a water cylinder with a bright insert) on a rotated grid."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape_kji)
    array = np.full(shape_kji, -1000.0, np.float32)
    body = (j - 20) ** 2 + (i - 18) ** 2 < 14 ** 2
    array[body] = 40 + rng.normal(0, 20, body.sum())
    array[body & ((j - 16) ** 2 + (i - 20) ** 2 < 25)] = 200
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Image(array, (0.9, 1.1, 2.0), (-30.0, 12.0, 50.0), direction, metadata={"modality": "CT"})


@pytest.fixture()
def tiny_model(tmp_path):
    return load_from_card(load_card(make_model_folder(tmp_path / "tiny-unet")))


def test_output_is_on_exact_input_grid_with_card_segments(tiny_model):
    image = oblique_ct()
    grid_spacing, direction, origin, size = model_grid(image, tiny_model)
    assert grid_spacing == (2.0, 2.0, 2.0) and np.allclose(direction.T @ direction, np.eye(3))
    labelmap = segment_image(image, tiny_model, device="cpu")
    assert labelmap.same_grid(image) and labelmap.array.shape == image.array.shape
    assert labelmap.array.dtype == np.uint8 and image.array.min() == -1000.0          # input untouched
    assert {s.name for s in labelmap.segments} <= {"Spleen"}
    fast = segment_image(image, tiny_model, device="cpu", fast=True)
    assert fast.same_grid(image) and model_grid(image, tiny_model, fast=True)[0] == (4.0, 4.0, 4.0)


def test_sliding_window_matches_monai_sliding_window_inference(monkeypatch):
    """Same windows, same Gaussian weights (bit for bit MONAI's importance map, border clamp included), same
    argmax: every label equals MONAI's. Weights rescaled to peak 1 before the 1e-3 clamp changed 107 of
    48,285 labels here (top-two logit gaps up to 0.014, not rounding ties). Sliding and reducing the slab
    buffer one X column at a time (as a large volume does in 64 MB pieces) changes no label."""
    from monai.data.utils import compute_importance_map
    from RadAISegmentLib.sliding import gaussian_importance
    for roi in ((16, 16, 16), (96, 96, 96), (17, 9, 33)):
        assert torch.equal(gaussian_importance(roi), compute_importance_map(roi, mode="gaussian", device="cpu"))
    torch.manual_seed(3)
    from monai.networks.nets import UNet
    network = UNet(3, 1, 4, channels=(4, 8), strides=(2,)).eval()
    volume = torch.randn(1, 37, 29, 45)
    ours = sliding_window_labels(volume, network, (16, 16, 16), 4, choose_device("cpu"), overlap=0.5,
                                 sw_batch_size=3)
    with torch.no_grad():
        reference = sliding_window_inference(volume[None], (16, 16, 16), 3, network, overlap=0.5,
                                             mode="gaussian").argmax(1)[0].numpy()
    np.testing.assert_array_equal(ours, reference)
    import RadAISegmentLib.sliding as sliding
    monkeypatch.setattr(sliding, "SLAB_CHUNK_BYTES", 1)
    assert sliding._x_step(torch.zeros(4, 37, 29, 16), 4) == 1
    np.testing.assert_array_equal(sliding_window_labels(volume, network, (16, 16, 16), 4, choose_device("cpu"),
                                                        overlap=0.5, sw_batch_size=3), reference)


def test_cancellation_stops_and_writes_nothing(tiny_model, tmp_path):
    token = CancelToken()
    messages = []

    def progress(fraction, message):
        messages.append((fraction, message))
        if fraction > 0:
            token.cancel()
    out = tmp_path / "seg.nrrd"
    with pytest.raises(CancelledError):
        write_image(segment_image(oblique_ct((30, 60, 60)), tiny_model, device="cpu", progress=progress,
                                  cancel=token), out)
    assert not out.exists() and not list(tmp_path.glob("*.nrrd"))
    assert any("ETA" in m or "window" in m for _, m in messages)


def test_gpu_out_of_memory_retries_on_cpu_with_message():
    calls, warnings_seen = [], []

    def fake_predictor(choice):
        calls.append(choice.device.type)
        if choice.device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "ok"
    fake_gpu = DeviceChoice(torch.device("cuda"), torch.device("cpu"), True)
    assert run_with_cpu_fallback(fake_predictor, fake_gpu, warn=warnings_seen.append) == "ok"
    assert calls == ["cuda", "cpu"] and "retrying on CPU" in warnings_seen[0]
    with pytest.raises(ValueError):
        run_with_cpu_fallback(lambda c: (_ for _ in ()).throw(ValueError("other")), fake_gpu)
    info = describe_device("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__ and info["cpu_threads"] >= 1


def test_seed_outside_image_and_mri_into_ct_model(tiny_model):
    image = oblique_ct()
    centre = image.index_to_ras(np.array([[18.0, 20.0, 9.0]]))[0]
    check_seed(image, centre)
    with pytest.raises(InputError, match="outside the image"):
        run_lesion_model(image, tiny_model, [tuple(centre + np.array([0, 0, 500.0]))], None, "cpu")
    mri = Image(np.abs(image.array) * 0.3, image.spacing_mm, image.origin_lps, image.direction_lps,
                metadata={"modality": "MR"})
    with pytest.warns(UserWarning, match="made for CT"):
        segment_image(mri, tiny_model, device="cpu")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_cli_models_install_and_segment(tmp_path):
    env = {**os.environ, "RADAI_MODELS_DIR": str(tmp_path / "cache")}
    folder = make_model_folder(tmp_path / "src" / "tiny-unet")
    done = run_cli("models", "install", folder, env=env)
    assert done.returncode == 0, done.stderr
    listing = json.loads(run_cli("models", "list", "--json", env=env).stdout)
    assert "tiny-unet" in [m["id"] for m in listing["models"]]
    image = oblique_ct()
    write_image(image, tmp_path / "ct.nrrd")
    for name in ("seg.nii.gz", "seg.seg.nrrd"):
        result = run_cli("segment", tmp_path / "ct.nrrd", "--model", "tiny-unet", "--device", "cpu",
                         "--out", tmp_path / name, "--json", env=env)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["timings"]["inference_s"] > 0 and all(l["name"] == "Spleen" for l in report["labels"])
        labelmap = read_labelmap(tmp_path / name)
        assert labelmap.same_grid(read_image(tmp_path / "ct.nrrd"))
    bad = run_cli("segment", tmp_path / "ct.nrrd", "--model", "nope", "--out", tmp_path / "x.nrrd", env=env)
    assert bad.returncode != 0 and "Unknown model" in bad.stderr and not (tmp_path / "x.nrrd").exists()
    assert run_cli("models", "verify", "tiny-unet", env=env).returncode == 0
    assert run_cli("models", "remove", "tiny-unet", env=env).returncode == 0


def test_largest_component_keeps_one_blob_per_label():
    from RadAISegmentLib.inference import largest_components
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[1:4, 1:4, 1:4] = 1            # 27 voxels
    labels[5:9, 10:15, 10:15] = 1        # 100 voxels (kept)
    labels[0, 19, 19] = 2
    out = largest_components(labels)
    assert np.count_nonzero(out == 1) == 100 and np.count_nonzero(out == 2) == 1


def test_small_gpu_is_reported_with_a_warning(monkeypatch):
    """A GPU with little free memory is named, with its memory and a warning saying what to do."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (2048 * 2**20, 8192 * 2**20))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tiny GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (7, 5))
    info = describe_device("cuda")
    assert info["gpu"] == "Tiny GPU" and info["free_memory_mb"] == 2048 and info["total_memory_mb"] == 8192
    assert "2048 MB" in info["warning"] and "fast mode" in info["warning"]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (12000 * 2**20, 16000 * 2**20))
    assert describe_device("cuda")["warning"] is None


def test_body_crop_leaves_out_the_patient_table():
    """CT body (ellipse, 340 x 240 mm) over a 12 mm table plate 400 mm wide, 20 mm below it, 1.5 mm voxels:
    the crop is the body's extent plus the 5 mm margin; without the table the box is the same; a small
    object alone (thinner than the opening) still gets its own box."""
    from RadAISegmentLib.inference import CROP_MARGIN_MM, foreground_box
    spacing = (1.5, 1.5, 1.5)
    x, y = np.meshgrid((np.arange(267) - 133) * 1.5, (np.arange(267) - 133) * 1.5, indexing="ij")
    body = (x / 170) ** 2 + (y / 120) ** 2 < 1
    table = (np.abs(y - 146) < 6) & (np.abs(x) < 200)
    volume = np.full((267, 267, 40), -1000.0, np.float32)
    volume[body] = 40.0
    with_table = volume.copy()
    with_table[table] = 300.0
    box = foreground_box(with_table, spacing, ct_like=True)
    margin = int(np.ceil(CROP_MARGIN_MM / 1.5))
    body_x, body_y = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    for piece, present in ((box[0], body_x), (box[1], body_y)):
        assert abs(piece.start - (present[0] - margin)) <= 4 and abs(piece.stop - (present[-1] + 1 + margin)) <= 4
    assert box[1].stop < np.flatnonzero(table.any(axis=0))[0]             # the table is outside the crop
    assert foreground_box(volume, spacing, ct_like=True) == box
    small = np.full((60, 60, 20), -1000.0, np.float32)
    small[28:32, 28:32, 8:12] = 50.0                                        # 6 mm cube: kept, not opened away
    small_box = foreground_box(small, spacing, ct_like=True)
    assert small_box[0].start <= 28 and small_box[0].stop >= 32 and small_box[0].stop - small_box[0].start < 60


def test_crop_box_grows_to_the_span_of_its_windows():
    """96-voxel windows at overlap 0.25 (interval 72): a 236-voxel extent needs 3 windows, which reach 240
    voxels, so the box grows to 240 (centred, inside the volume); 168 voxels need exactly 2 windows and stay;
    a box smaller than one window grows to one window. The window count never changes."""
    from RadAISegmentLib.inference import fit_box_to_windows, grow_box
    from RadAISegmentLib.sliding import window_starts
    shape = (266, 266, 133)
    box = (slice(16, 252), slice(52, 220), slice(26, 110))
    fitted = fit_box_to_windows(box, (96, 96, 96), 0.25, shape)
    assert [(piece.stop - piece.start) for piece in fitted] == [240, 168, 96]
    for original, grown, size in zip(box, fitted, shape):
        assert 0 <= grown.start <= original.start and original.stop <= grown.stop <= size
        assert (len(window_starts(grown.stop - grown.start, 96, 0.25))
                == len(window_starts(max(96, original.stop - original.start), 96, 0.25)))
    assert fit_box_to_windows((slice(0, 260),), (96,), 0.25, (266,)) == (slice(0, 266),)   # clipped to the volume
    assert grow_box((slice(120, 130),), (96,), (133,)) == (slice(37, 133),)                  # pushed inside


@pytest.mark.parametrize("blending, padding", [("gaussian", "constant"), ("constant", "replicate"),
                                               ("gaussian", "reflect")])
def test_without_crop_output_equals_monai_inferer_with_the_models_blending(tiny_model, blending, padding):
    """`radai segment --no-crop`: windows at MONAI's positions over the whole volume, blended and padded as
    the model asks (`window_weighting` / `padding_mode`, a bundle's inferer `mode` / `padding_mode`), so the
    labels equal MONAI's `sliding_window_inference(mode=..., padding_mode=...)` argmax on the same normalised
    volume (image already on the model grid, so no resampling is involved), with the network in float32 (bf16
moves near-ties). With the body crop, windows sit elsewhere."""
    import dataclasses
    tiny_model = dataclasses.replace(tiny_model, window_weighting=blending, padding_mode=padding)
    from RadAISegmentLib.inference import normalise
    base = oblique_ct(shape_kji=(12, 44, 52))             # 12 slices < the 16-voxel window: padded as the model says
    image = Image(base.array, (2.0, 2.0, 2.0), (10.0, -5.0, 3.0), np.diag([-1.0, -1.0, 1.0]),
                  metadata={"modality": "CT"})
    spacing, direction, origin, size = model_grid(image, tiny_model)
    assert size == image.shape_ijk and np.allclose(direction, image.direction_lps)       # no resampling
    ours = segment_image(image, tiny_model, device="cpu", crop_foreground=False, precision="fp32",
                         runtime="torch").array
    volume = normalise(torch.from_numpy(image.array.transpose(2, 1, 0).astype(np.float32).copy())[None],
                       tiny_model.normalisation)
    with torch.no_grad():
        logits = sliding_window_inference(volume[None], tiny_model.roi_size, 1, tiny_model.network,
                                          overlap=tiny_model.overlap, mode=blending, padding_mode=padding)
    reference = logits[0].argmax(0).numpy().transpose(2, 1, 0)
    labels = {info.label for info in tiny_model.segments}
    assert labels and set(np.unique(ours)) <= labels | {0}
    assert 0.05 < np.mean(ours > 0) < 0.95                                  # a real segmentation, not all one label
    np.testing.assert_array_equal(ours, reference)                          # every voxel, not "agrees"


def test_background_job_honours_the_crop_choice(tmp_path, monkeypatch):
    """The Slicer module's "Crop to body" reaches the engine: each worker job's labels equal ``segment_image``
    with the same choice, and the two choices differ on a volume mostly made of air (windows move)."""
    import sys
    from RadAISegmentLib.inference import load_model
    from RadAISegmentLib.jobs import JobInputs, WorkerJob
    from RadAISegmentLib.models.cache import install_model
    from RadAISegmentLib.worker_client import WorkerProcess
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "cache"))
    install_model(make_model_folder(tmp_path / "tiny-unet", model_id="tiny-crop"))
    image = oblique_ct(shape_kji=(20, 80, 80))                    # body in one corner, air elsewhere
    model = load_model("tiny-crop", "cpu")
    expected = {crop: segment_image(image, model, device="cpu", crop_foreground=crop).array for crop in (True, False)}
    assert not np.array_equal(expected[True], expected[False])
    worker = WorkerProcess(sys.executable)
    try:
        for crop, labels in expected.items():
            inputs = JobInputs("air-corner", "tiny-crop", device="cpu", crop_foreground=crop)
            job = WorkerJob(worker, inputs, image, models_env={"RADAI_MODELS_DIR": str(tmp_path / "cache")})
            assert job.wait(300)
            np.testing.assert_array_equal(job.result().labelmap.array, labels)
            job.cleanup()
    finally:
        worker.stop()

"""RadAI's model grid and both resampling steps against MONAI's own bundle transforms (Orientationd, Spacingd,
Invertd), on small images with flips and odd spacings: same grid, same interpolated volume, identical labels
back on the input grid — including a structure cut by the edge of the scan, which keeps its rim."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from RadAISegmentLib.grid_resample import grid_axes, image_to_model_grid, labels_to_input_grid
from RadAISegmentLib.image import Image
from RadAISegmentLib.inference import model_grid, segment_image
from RadAISegmentLib.models.card import load_card
from RadAISegmentLib.models.loaders import load_from_card
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import (AsDiscreted, Compose, EnsureChannelFirstd, Invertd, Orientationd, ScaleIntensityRanged,
                              Spacingd)                      # Orientationd needs nibabel (a test dependency)
from test_models_cache import make_model_folder

SPACING_MM = (1.5, 1.5, 1.5)
ANGLE = np.deg2rad(90.0)
#: (spacing i,j,k mm, direction columns LPS): axis-aligned LPS (RAS flips i, j), and a grid stored as
#: j, i, -k (Orientationd permutes and flips it back); spacings that never put an input voxel exactly
#: half-way between two model voxels (where nearest-neighbour ties could go either way).
GEOMETRIES = [((0.8, 0.7, 2.6), np.eye(3)),
              ((0.9, 1.1, 3.1), np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))]


def as_loaded(image: Image) -> dict:
    """The image as MONAI's ``LoadImaged`` + ``EnsureChannelFirstd`` would give it: ``(1, i, j, k)`` with the
    RAS affine (the NIfTI affine)."""
    data = torch.from_numpy(np.ascontiguousarray(image.array.transpose(2, 1, 0)).astype(np.float32))
    return {"image": MetaTensor(data, affine=torch.as_tensor(image.ijk_to_ras), meta={"space": "RAS"})}


def monai_preprocessing() -> Compose:
    return Compose([EnsureChannelFirstd("image", channel_dim="no_channel"),
                    Orientationd("image", axcodes="RAS", labels=None),
                    Spacingd("image", pixdim=SPACING_MM, mode="bilinear")])


def phantom(spacing, direction, seed=0) -> Image:
    """Blocks of 0 / 1000 on a grid of 41×37×11 voxels, one block running out of the image on every side."""
    rng = np.random.default_rng(seed)
    array = np.zeros((11, 37, 41), np.float32)
    for _ in range(12):
        corner = [int(rng.integers(-3, n - 2)) for n in array.shape]
        extent = [int(rng.integers(2, max(3, n // 2))) for n in array.shape]
        array[tuple(slice(max(0, c), max(0, c + e)) for c, e in zip(corner, extent))] = 1000.0
    array[:, :, -3:] = 1000.0                           # a structure cut by the image edge along i ...
    array[:, -2:, :] = 1000.0                           # ... and along j
    return Image(array, spacing, (10.0, -4.0, 3.0), direction, metadata={"modality": "CT"})


@pytest.mark.parametrize("spacing, direction", GEOMETRIES)
def test_model_grid_and_linear_resampling_equal_monai_spacingd(spacing, direction):
    image = phantom(spacing, direction)
    reference = monai_preprocessing()(as_loaded(image))["image"]
    model = type("Spec", (), {"orientation": "RAS", "spacing_mm": SPACING_MM, "spatial_dims": 3})()
    grid = model_grid(image, model)
    assert tuple(grid[3]) == tuple(reference.shape[1:])
    ours_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.block([[grid[1] @ np.diag(grid[0]), grid[2][:, None]],
                                                                [np.zeros((1, 3)), np.ones((1, 1))]])
    assert np.allclose(ours_affine, reference.affine.numpy(), atol=1e-6)
    ours = image_to_model_grid(image, grid_axes(image, *grid))
    assert np.allclose(ours, reference[0].numpy(), atol=1e-3)             # border padding included


@pytest.mark.parametrize("spacing, direction", GEOMETRIES)
def test_labels_back_on_the_input_grid_equal_monai_invertd(spacing, direction):
    """Random labels on MONAI's model grid, inverted by ``Invertd(nearest_interp=True)`` and by RadAI: identical,
    voxel for voxel, also in the outermost voxels beyond the model grid's last centres."""
    image = phantom(spacing, direction)
    preprocessing = monai_preprocessing()
    data = preprocessing(as_loaded(image))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=data["image"].shape[1:]).astype(np.float32)
    data["pred"] = MetaTensor(torch.from_numpy(labels)[None], affine=data["image"].affine)
    inverted = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=True)(data)["pred"]
    expected = inverted[0].numpy().round().astype(np.uint8).transpose(2, 1, 0)             # (i,j,k) → [k,j,i]
    model = type("Spec", (), {"orientation": "RAS", "spacing_mm": SPACING_MM, "spatial_dims": 3})()
    ours = labels_to_input_grid(labels.astype(np.uint8), image, grid_axes(image, *model_grid(image, model)))
    assert ours.shape == image.array.shape
    assert np.array_equal(ours, expected)


def test_structure_cut_by_the_image_edge_keeps_its_rim(tmp_path):
    """A voxel-wise threshold network (1×1×1 convolution: label 1 where the normalised value > 0.37) through
    ``segment_image`` and through MONAI's bundle pipeline (Orientationd, Spacingd, ScaleIntensityRanged,
    SlidingWindowInferer, AsDiscreted, Invertd): equal labels everywhere, and the blocks that run out of the
    image are labelled up to the image's last voxel (before the fix the outermost 1-2 voxels were background)."""
    loaded = load_from_card(load_card(make_model_folder(tmp_path / "m")))
    network = torch.nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        network.weight[:] = torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1, 1)
        network.bias[:] = torch.tensor([0.0, -0.37])
    model = dataclasses.replace(loaded, network=network.eval(), spacing_mm=SPACING_MM, orientation="RAS",
                                normalisation=[{"kind": "ct_window", "a_min": 0.0, "a_max": 1000.0}],
                                roi_size=(16, 16, 16))
    for spacing, direction in GEOMETRIES:
        image = phantom(spacing, direction, seed=3)
        ours = segment_image(image, model, device="cpu", crop_foreground=False, precision="fp32",
                             runtime="torch").array
        transforms = Compose([*monai_preprocessing().transforms,
                              ScaleIntensityRanged("image", 0.0, 1000.0, 0.0, 1.0, clip=True)])
        data = transforms(as_loaded(image))
        with torch.no_grad():
            data["pred"] = SlidingWindowInferer((16, 16, 16))(data["image"][None], network)[0]
        data = AsDiscreted("pred", argmax=True)(data)
        data = Invertd("pred", transform=transforms, orig_keys="image", nearest_interp=True)(data)
        expected = data["pred"][0].numpy().round().astype(np.uint8).transpose(2, 1, 0)
        assert np.array_equal(ours, expected)
        assert np.all(ours[:, :, -1] == 1) and np.all(ours[:, -1, :] == 1)           # the rim is kept

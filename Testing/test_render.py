"""Offscreen rendering (EGL, no display): real CT + organ surface, synthetic heat blob, slices, side by side.

Assertions are on pixels at positions computed through the camera's own projection matrix.
"""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image as mpl_image

from RadAISegmentLib import io
from RadAISegmentLib.image import Image, SegmentInfo

GREEN = (0.1, 0.9, 0.1)


def read_rgb(path) -> np.ndarray:
    return mpl_image.imread(str(path))[..., :3].astype(float)


def near(rgb: np.ndarray, column_row, radius: int) -> np.ndarray:
    column, row = (int(round(v)) for v in column_row)
    return rgb[max(row - radius, 0):row + radius + 1, max(column - radius, 0):column + radius + 1]


def greenish(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 1] > pixels[..., 0] + 0.15) & (pixels[..., 1] > pixels[..., 2] + 0.15)


def heatish(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 0] > 0.4) & (pixels[..., 0] > pixels[..., 2] + 0.2)


@pytest.fixture(scope="module")
def liver_case(shared_data):
    folder = shared_data / "totalsegmentator-examples"
    ct = io.read_image(folder / "example_ct_sm.nii.gz")
    seg = io.read_image(folder / "example_seg.nii.gz")
    liver = seg.with_array((seg.array == 5).astype(np.uint8), segments=[SegmentInfo(1, "Liver", GREEN)])
    return ct, liver


def blob_case() -> tuple[Image, np.ndarray]:
    """A Gaussian heat blob (peak 1) off-centre in a 40×40×40 volume of 2 mm voxels; returns it and its RAS centre."""
    k, j, i = np.mgrid[0:40, 0:40, 0:40]
    centre_ijk = (28.0, 12.0, 20.0)
    heat = np.exp(-(((i - centre_ijk[0]) ** 2 + (j - centre_ijk[1]) ** 2 + (k - centre_ijk[2]) ** 2) / (2 * 4.0 ** 2)))
    image = Image(heat.astype(np.float32), (2.0, 2.0, 2.0), (-40.0, -40.0, -40.0))
    return image, image.index_to_ras(centre_ijk)


def test_3d_render_of_real_ct_shows_liver_where_it_projects(slicer_scene, liver_case, tmp_path):
    from RadAISegmentLib import mrml, render
    ct, liver = liver_case
    volume = mrml.volume_node_from_image(ct, "ct-render", slicer_scene)
    segmentation = mrml.segmentation_node_from_labelmap(liver, "liver-render", volume)
    result = render.render_scene_3d([volume, segmentation], tmp_path / "liver.png", size=(400, 300), camera="anterior")
    rgb = read_rgb(tmp_path / "liver.png")
    assert rgb.shape == (300, 400, 3) and rgb.std() > 0.02
    k, j, i = np.argwhere(liver.array).mean(axis=0)
    centre = result.project_ras(ct.index_to_ras([i, j, k]))[0]
    assert greenish(near(rgb, centre, 10)).mean() > 0.5
    # From the front, the patient's right (liver) is on the viewer's left: the far side has little green.
    mirrored = (400 - centre[0], centre[1])
    assert greenish(near(rgb, mirrored, 10)).mean() < 0.2
    # The projection itself: the liver's RAS-rightmost point projects left of its leftmost point.
    points = ct.index_to_ras(np.argwhere(liver.array)[:, ::-1].astype(float))
    columns = result.project_ras(points[[points[:, 0].argmax(), points[:, 0].argmin()]])[:, 0]
    assert columns[0] < columns[1]


def test_3d_render_of_heat_blob_puts_heat_at_its_projection(slicer_scene, tmp_path):
    from RadAISegmentLib import mrml, render
    heat, centre_ras = blob_case()
    node = mrml.saliency_volume_node(heat, "blob", slicer_scene, threshold=0.3)
    for camera in ("anterior", "left"):
        result = render.render_scene_3d([node], tmp_path / f"blob_{camera}.png", size=(320, 240), camera=camera)
        rgb = read_rgb(tmp_path / f"blob_{camera}.png")
        column, row = result.project_ras(centre_ras)[0]
        assert heatish(near(rgb, (column, row), 4)).mean() > 0.8
        assert not heatish(rgb[:20, :20]).any()  # corners stay background
        blob_columns = np.nonzero(heatish(rgb).any(axis=0))[0]
        assert blob_columns.min() < column < blob_columns.max()


def test_render_slice_and_side_by_side(liver_case, tmp_path):
    from RadAISegmentLib import render_slices
    ct, liver = liver_case
    heat = ct.with_array(np.zeros(ct.array.shape, np.float32))
    k, j, i = (int(v) for v in np.argwhere(liver.array).mean(axis=0))
    heat.array[k, max(j - 3, 0):j + 4, max(i - 3, 0):i + 4] = 1.0
    out = render_slices.render_slice(ct, tmp_path / "axial.png", labelmap=liver, overlay=heat, axis="axial", index=k,
                              window=(40, 400))
    rgb = read_rgb(tmp_path / "axial.png")
    assert rgb.shape == out.shape and rgb.std() > 0.05
    assert greenish(rgb).sum() > 100 and heatish(rgb).sum() > 20
    # Radiological convention: liver (patient right) on the image's left half.
    green_columns = np.nonzero(greenish(rgb))[1]
    assert np.median(green_columns) < rgb.shape[1] / 2
    render_slices.render_side_by_side(tmp_path / "axial.png", tmp_path / "axial.png", tmp_path / "pair.png", gap_px=8)
    pair = read_rgb(tmp_path / "pair.png")
    assert pair.shape == (rgb.shape[0], 2 * rgb.shape[1] + 8, 3)
    assert np.allclose(pair[:, -rgb.shape[1]:], rgb, atol=1 / 255)


def test_engine_render_without_slicer_places_surface_and_heat(liver_case, tmp_path):
    """render_images_3d / render_case_pngs work from engine Images alone (the demo and CLI path)."""
    from RadAISegmentLib import render
    ct, liver = liver_case
    k, j, i = np.argwhere(liver.array).mean(axis=0)
    liver_centre = ct.index_to_ras([i, j, k])
    result = render.render_images_3d(tmp_path / "engine.png", ct, liver, size=(400, 300))
    rgb = read_rgb(tmp_path / "engine.png")
    assert greenish(near(rgb, result.project_ras(liver_centre)[0], 10)).mean() > 0.5
    heat, centre_ras = blob_case()
    result = render.render_images_3d(tmp_path / "blob.png", saliency=heat, size=(320, 240), camera="superior")
    rgb = read_rgb(tmp_path / "blob.png")
    assert heatish(near(rgb, result.project_ras(centre_ras)[0], 4)).mean() > 0.8
    saliency = ct.with_array(np.zeros(ct.array.shape, np.float32))
    saliency.array[int(k) - 2:int(k) + 3, int(j) - 4:int(j) + 5, int(i) - 4:int(i) + 5] = 0.9
    pictures = render.render_case_pngs(ct, liver, tmp_path / "case", saliency=saliency, focus_ras=liver_centre)
    names = [p.split("/")[-1] for p, _ in pictures]
    assert names == ["3d.png", "axial.png", "side_by_side.png"]
    axial = read_rgb(tmp_path / "case" / "axial.png")
    assert heatish(axial).sum() > 20 and greenish(axial).sum() > 100


def test_real_tumour_gradcam_render_puts_heat_at_the_lesion(tmp_path, sample_data):
    """The shipped lesion model's Grad-CAM on the real lung tumour, rendered in 3D: heat where the tumour projects."""
    from RadAISegmentLib import render
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.saliency import explain_image
    image = io.read_image(sample_data / "lung-tumour_image.nrrd")
    reference = io.read_labelmap(sample_data / "lung-tumour_labels.nrrd", reference=image)
    seed_ras, box_mm, _ = case_prompt(reference)
    saliency = explain_image(image, "lesion-roi", seed_ras=seed_ras, box_mm=box_mm)
    result = render.render_images_3d(tmp_path / "lesion3d.png", image=image, labelmap=saliency.labelmap,
                                     saliency=saliency.map, size=(480, 360))
    rgb = read_rgb(result.path)
    assert rgb.std() > 0.02                                        # not an empty or uniform picture
    column, row = result.project_ras(np.asarray(seed_ras))[0]
    assert heatish(near(rgb, (column, row), 12)).any()            # heat colours where the tumour projects
    assert heatish(rgb).sum() < 0.2 * rgb.shape[0] * rgb.shape[1]  # and not everywhere

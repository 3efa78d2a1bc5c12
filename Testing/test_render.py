"""Offscreen rendering (EGL, no display) of the bundled real cases: where things land, what a picture tells.

Assertions are on pixels at positions computed through the camera's own projection matrix, on exact
geometry (parallel projection: millimetres per pixel), and on the teaching pictures' content: the saliency
panel differs from the plain one and only it holds heat colours; the side views look from the patient's
sides their letters name.
"""
from __future__ import annotations

import subprocess
import sys

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
    """Heat colours over grey: red clearly above green (reds, oranges) or above blue (oranges, yellows)."""
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return (red > 0.3) & ((red > green + 0.15) | (red > blue + 0.25))


@pytest.fixture(scope="module")
def liver_case(sample_data):
    ct = io.read_image(sample_data / "abdomen-ct_image.nii.gz")
    seg = io.read_image(sample_data / "abdomen-ct_labels.nii.gz")
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
    result = render.render_scene_3d([volume, segmentation], tmp_path / "liver.png", size=(400, 300), camera="anterior",
                                    annotate=False)
    rgb = read_rgb(tmp_path / "liver.png")
    assert rgb.shape == (300, 400, 3) and rgb.std() > 0.02
    k, j, i = np.argwhere(liver.array).mean(axis=0)
    centre = result.project_ras(ct.index_to_ras([i, j, k]))[0]
    assert greenish(near(rgb, centre, 10)).mean() > 0.5
    # The projection itself: the liver's RAS-rightmost point projects left of its leftmost point (patient's right
    # on the viewer's left, seen from the front), and the picture agrees: more green left of the image centre.
    points = ct.index_to_ras(np.argwhere(liver.array)[:, ::-1].astype(float))
    columns = result.project_ras(points[[points[:, 0].argmax(), points[:, 0].argmin()]])[:, 0]
    assert columns[0] < columns[1]
    green_columns = np.nonzero(greenish(rgb))[1]
    assert np.median(green_columns) < result.project_ras(ct.index_to_ras((np.array(ct.shape_ijk) - 1) / 2))[0][0]


def test_3d_render_of_heat_blob_puts_heat_at_its_projection(slicer_scene, tmp_path):
    from RadAISegmentLib import mrml, render
    heat, centre_ras = blob_case()
    node = mrml.saliency_volume_node(heat, "blob", slicer_scene, threshold=0.3)
    for camera in ("anterior", "left"):
        result = render.render_scene_3d([node], tmp_path / f"blob_{camera}.png", size=(320, 240), camera=camera,
                                        annotate=False)
        rgb = read_rgb(tmp_path / f"blob_{camera}.png")
        column, row = result.project_ras(centre_ras)[0]
        assert heatish(near(rgb, (column, row), 4)).mean() > 0.8
        assert not heatish(rgb[:20, :20]).any()  # corners stay background
        blob_columns = np.nonzero(heatish(rgb).any(axis=0))[0]
        assert blob_columns.min() < column < blob_columns.max()


def test_parallel_projection_is_to_scale_and_the_scale_bar_is_exact(tmp_path):
    """A 40 mm cube seen from the front spans 40 / mm_per_pixel pixels; the drawn bar spans its label's length."""
    from RadAISegmentLib import render
    from RadAISegmentLib.picture_annotations import scale_bar_length_mm
    cube = np.zeros((40, 40, 40), np.uint8)
    cube[10:30, 10:30, 10:30] = 1                                   # 20 voxels of 2 mm = 40 mm
    labelmap = Image(cube, (2.0, 2.0, 2.0), (-40.0, -40.0, -40.0), segments=[SegmentInfo(1, "Cube", GREEN)])
    plain = render.render_images_3d(tmp_path / "cube.png", labelmap=labelmap, size=(400, 300), annotate=False,
                                    background=(0, 0, 0), background_top=None, margin=2.0)
    rgb = read_rgb(plain.path)
    columns = np.nonzero(greenish(rgb).any(axis=0))[0]
    # the smoothed surface sits at the 0.5 level, i.e. on the voxel faces: 40 mm wide
    assert columns.max() - columns.min() + 1 == pytest.approx(40.0 / plain.mm_per_pixel, abs=3)
    assert scale_bar_length_mm(0.5, 400) == 25.0 and scale_bar_length_mm(1.9, 640) == 200.0   # 44 mm, 267 mm wide
    annotated = render.render_images_3d(tmp_path / "cube_bar.png", labelmap=labelmap, size=(400, 300),
                                        background=(0, 0, 0), background_top=None, margin=2.0)
    rgb = read_rgb(annotated.path)
    bar_length_px = scale_bar_length_mm(annotated.mm_per_pixel, 400) / annotated.mm_per_pixel
    bar_row = int(round(300 - 0.06 * 300))
    white = (rgb[bar_row - 1:bar_row + 2] > 0.9).all(axis=2).any(axis=0)
    white_columns = np.nonzero(white[260:])[0] + 260               # the bar sits at the bottom right
    assert white_columns.max() - white_columns.min() == pytest.approx(bar_length_px, abs=2)


def test_edge_letters_name_the_sides_the_projection_shows():
    """For every camera: moving a point towards the patient's side a letter names moves it towards that edge."""
    from RadAISegmentLib.render import Render3D
    from RadAISegmentLib.render_parts import CAMERAS, EDGE_LETTERS, frame_camera, new_renderer
    towards = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
    for camera in CAMERAS:
        renderer = new_renderer((0, 0, 0))
        frame_camera(renderer, camera, (-50, 50, -50, 50, -50, 50), (400, 400))
        matrix = renderer.GetActiveCamera().GetCompositeProjectionTransformMatrix(1.0, -1, 1)
        result = Render3D("", (400, 400), np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)]))
        left, right, top, bottom = EDGE_LETTERS[camera]
        origin = result.project_ras([0, 0, 0])[0]
        for letter, expected in ((left, (-1, 0)), (right, (1, 0)), (top, (0, -1)), (bottom, (0, 1))):
            moved = result.project_ras(np.array(towards[letter]) * 20.0)[0] - origin
            assert np.sign(np.round(moved, 6)).tolist() == list(expected), (camera, letter, moved)


def test_lesion_pictures_teach(sample_data, tmp_path):
    """The real lung tumour in its chest: 3D views from the front and its side with landmarks derived from the
    CT; the saliency panel differs from the plain one and only it has heat colours."""
    from RadAISegmentLib.render_case import BESIDE_HEAT_RGB, lesion_pictures
    image = io.read_image(sample_data / "lung-tumour_image.nrrd")
    lesion = io.read_labelmap(sample_data / "lung-tumour_labels.nrrd", reference=image)
    lesion = lesion.with_array(lesion.array, segments=[SegmentInfo(1, "Lesion", (0.95, 0.35, 0.2))])
    k, j, i = np.argwhere(lesion.array).mean(axis=0)
    grid_k, grid_j, grid_i = np.mgrid[0:48, 0:128, 0:128]
    distance2 = ((grid_i - i) * 0.57) ** 2 + ((grid_j - j) * 0.57) ** 2 + ((grid_k - k) * 5.0) ** 2
    blob = np.exp(-distance2 / (2 * 8.0 ** 2))
    saliency = image.with_array(blob.astype(np.float32))
    chest = io.read_image(sample_data / "lung-tumour_context.nrrd")
    pictures = lesion_pictures(image, lesion, tmp_path, saliency=saliency, context_image=chest, size=(480, 420))
    names = [path.split("/")[-1] for path, _ in pictures]
    # the tumour lies in the right lung: the side view looks from the patient's right
    assert names == ["3d_anterior.png", "3d_right.png", "3d_saliency.png", "side_by_side.png"]
    for path, _ in pictures[:2]:
        rgb = read_rgb(path)
        lesion_like = (np.abs(rgb - np.array([0.95, 0.35, 0.2])) < 0.2).all(axis=2)
        assert lesion_like.sum() > 20                                  # the tumour shows (through ribs if need be)
    plain, overlaid = read_rgb(tmp_path / "axial_plain.png"), read_rgb(tmp_path / "axial.png")
    assert plain.shape == overlaid.shape and np.abs(plain - overlaid).max() > 0.2
    assert heatish(overlaid).sum() > 100 and heatish(plain).sum() == 0
    outline = (np.abs(plain - np.array(BESIDE_HEAT_RGB)) < 0.05).all(axis=2)
    assert outline.sum() > 20                                          # the segment outline, in green beside heat


def test_lung_landmarks_from_hu(sample_data):
    """Lungs left and right of the midline, the airway between them and above, bone present; the tumour inside
    a lung."""
    from RadAISegmentLib.anatomy import ct_context
    chest = io.read_image(sample_data / "lung-tumour_context.nrrd")
    context = ct_context(chest)
    ras = {v: chest.index_to_ras(np.argwhere(context.array == v)[:, ::-1].astype(float)) for v in (1, 2, 3)}
    millilitres = {v: len(points) * chest.voxel_volume_mm3 / 1000 for v, points in ras.items()}
    assert 1500 < millilitres[1] < 6000 and 5 < millilitres[2] < 80 and millilitres[3] > 100
    airway_x = np.median(ras[2][:, 0])
    assert (ras[1][:, 0] > airway_x + 30).sum() > 1000 and (ras[1][:, 0] < airway_x - 30).sum() > 1000
    assert abs(airway_x - np.median(ras[3][:, 0])) < 25                # airway in the midline, over the spine
    lesion = io.read_labelmap(sample_data / "lung-tumour_labels.nrrd")
    centre = lesion.index_to_ras(np.argwhere(lesion.array).mean(axis=0)[::-1])
    i, j, k = np.round(chest.ras_to_index(centre)).astype(int)
    from scipy import ndimage
    lung_with_holes_filled = ndimage.binary_fill_holes(context.array[k] == 1)
    assert lung_with_holes_filled[j, i]                                # the tumour sits in a lung


def test_brain_surface_from_a_t1_matches_colin27_brain_mask(colin27):
    from RadAISegmentLib.anatomy import mr_context
    from RadAISegmentLib.downsample import block_mean, block_mode
    image_path, brain_path = colin27
    image, brain = io.read_image(image_path), io.read_image(brain_path)
    image = block_mean(image, (2, 2, 2))
    reference = block_mode(brain.with_array((brain.array > 0).astype(np.uint8)), (2, 2, 2)).array > 0
    found = mr_context(image.with_array(image.array, modality="MR")).array > 0
    dice = 2 * np.sum(found & reference) / (found.sum() + reference.sum())
    assert dice > 0.9


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


def test_atlas_plate_names_visible_organs(liver_case, sample_data, tmp_path):
    from RadAISegmentLib.render_case import atlas_pictures
    from RadAISegmentLib.sample_data import load_sample_labelmap
    ct, _ = liver_case
    pictures = atlas_pictures(ct, load_sample_labelmap("abdomen-ct"), tmp_path, size=(700, 400))
    rgb = read_rgb(pictures[0][0])
    assert rgb.shape == (400, 700, 3)
    assert (rgb.mean(axis=2) > 0.9).mean() > 0.3                       # atlas plate: light background
    liver_brown = (np.abs(rgb - np.array([0.62, 0.26, 0.20])) < 0.15).all(axis=2)
    assert liver_brown[:, :350].sum() > liver_brown[:, 350:].sum()    # liver on the viewer's left (patient's right)


def test_real_tumour_gradcam_render_puts_heat_at_the_lesion(tmp_path, sample_data):
    """The shipped lesion model's Grad-CAM on the real lung tumour, rendered in 3D: heat where the tumour projects."""
    from RadAISegmentLib import render
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.saliency import explain_image
    image = io.read_image(sample_data / "lung-tumour_image.nrrd")
    reference = io.read_labelmap(sample_data / "lung-tumour_labels.nrrd", reference=image)
    seed_ras, box_mm, _ = case_prompt(reference)
    saliency = explain_image(image, "lesion-roi", seed_ras=seed_ras, box_mm=box_mm)
    result = render.render_images_3d(tmp_path / "lesion3d.png", image=image, saliency=saliency.map, size=(480, 360),
                                     annotate=False)
    rgb = read_rgb(result.path)
    assert rgb.std() > 0.02                                        # not an empty or uniform picture
    column, row = result.project_ras(np.asarray(seed_ras))[0]
    assert heatish(near(rgb, (column, row), 12)).any()            # heat colours where the tumour projects
    assert heatish(rgb).sum() < 0.2 * rgb.shape[0] * rgb.shape[1]  # and not everywhere


def test_slice_renderer_does_not_import_the_3d_renderer():
    """No import circle: the 2D slice module stands alone (the 3D module may use it, never the reverse)."""
    code = ("import sys, RadAISegmentLib.render_slices; "
            "print(any(m in sys.modules for m in ('RadAISegmentLib.render', 'RadAISegmentLib.render_parts', 'vtk')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"

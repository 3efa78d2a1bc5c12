"""Offscreen rendering to PNG without the Slicer application.

* :func:`render_scene_3d` — plain VTK (not trame-slicer's views, whose per-event re-rendering is slow):
  the CT volume (default: bone ramp 150..700 HU) via ``vtkSmartVolumeMapper`` placed by its IJKToRAS matrix, each segment's
  closed surface (``vtkMRMLSegmentationNode`` closed-surface representation, RAS) semi-transparent, and
  an optional saliency volume with heat colours. Rendered once into an offscreen window.
* :func:`render_case_pngs` — the standard 3D + axial pictures of a case (2D slices: :mod:`.render_slices`).

Environment: ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` is set (if unset) before any window is
created, so rendering works on machines without a display (needs ``libegl1`` + Mesa's ``libegl-mesa0``
and ``libgl1-mesa-dri``). Multi-sampling is off so translucent geometry (depth peeling) is drawn.
Coordinates are RAS mm (Slicer's world).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .errors import InputError  # noqa: E402
from .image import Image, as_label_array  # noqa: E402

#: Camera directions: (direction from the focal point to the camera, view-up), RAS.
CAMERAS = {
    "anterior": ((0, 1, 0), (0, 0, 1)), "posterior": ((0, -1, 0), (0, 0, 1)),
    "left": ((-1, 0, 0), (0, 0, 1)), "right": ((1, 0, 0), (0, 0, 1)),
    "superior": ((0, 0, 1), (0, 1, 0)), "inferior": ((0, 0, -1), (0, 1, 0)),
}
#: Node attribute marking a volume as a saliency map (drawn with heat colours).
SALIENCY_ATTRIBUTE = "RadAI.Saliency"
#: Control points (value in 0..1, RGB) of the heat colour map: black-purple-red-orange-yellow (inferno-like).
HEAT_CONTROL_POINTS = ((0.0, (0.0, 0.0, 0.02)), (0.25, (0.34, 0.06, 0.43)), (0.5, (0.73, 0.21, 0.33)),
                       (0.75, (0.98, 0.55, 0.04)), (1.0, (0.99, 1.0, 0.64)))


def heat_rgb(fraction) -> np.ndarray:
    """Heat colours (RGB 0..1, shape ``(..., 3)``) for values in 0..1, by linear interpolation of the control points."""
    fraction = np.clip(np.asarray(fraction, dtype=float), 0.0, 1.0)
    xs = [p[0] for p in HEAT_CONTROL_POINTS]
    return np.stack([np.interp(fraction, xs, [p[1][c] for p in HEAT_CONTROL_POINTS]) for c in range(3)], axis=-1)


@dataclass(frozen=True)
class Render3D:
    """Where a 3D render went and how to find things in it.

    ``world_to_ndc`` is the camera's composite projection (RAS mm -> normalised device coordinates).
    """

    path: str
    size: tuple[int, int]
    world_to_ndc: np.ndarray

    def project_ras(self, points_ras) -> np.ndarray:
        """PNG pixel positions ``(column, row)`` (row 0 at the top) of RAS points, shape ``(N, 2)``."""
        points = np.atleast_2d(np.asarray(points_ras, dtype=float))
        homogeneous = np.c_[points, np.ones(len(points))] @ self.world_to_ndc.T
        ndc = homogeneous[:, :3] / homogeneous[:, 3:4]
        width, height = self.size
        column = (ndc[:, 0] + 1) / 2 * width
        row = height - (ndc[:, 1] + 1) / 2 * height
        return np.c_[column, row]


def _matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _nodes_of(nodes_or_scene) -> list:
    if hasattr(nodes_or_scene, "GetNodesByClass"):
        collection = nodes_or_scene.GetNodesByClass("vtkMRMLDisplayableNode")
        found = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        return [n for n in found if not n.GetHideFromEditors()]
    return list(nodes_or_scene)


def _volume_actor(image_data, ijk_to_ras, color, opacity):
    """A ``vtkVolume`` of ``image_data`` (origin 0, spacing 1) placed in RAS by the 4x4 ``ijk_to_ras``."""
    import vtk
    mapper = vtk.vtkSmartVolumeMapper()
    mapper.SetInputData(image_data)
    mapper.SetRequestedRenderModeToRayCast()
    prop = vtk.vtkVolumeProperty()
    prop.SetColor(color)
    prop.SetScalarOpacity(opacity)
    prop.SetInterpolationTypeToLinear()
    volume = vtk.vtkVolume()
    volume.SetMapper(mapper)
    volume.SetProperty(prop)
    volume.SetUserMatrix(_vtk_matrix(ijk_to_ras))
    return volume


def _vtk_matrix(matrix) -> "object":
    import vtk
    if isinstance(matrix, vtk.vtkMatrix4x4):
        return matrix
    result = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            result.SetElement(r, c, float(matrix[r][c]))
    return result


def _image_data(array: np.ndarray):
    """``vtkImageData`` (origin 0, spacing 1) from ``array[k, j, i]`` (i varies fastest, as VTK stores points)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk
    data = vtk.vtkImageData()
    data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
    data.GetPointData().SetScalars(scalars)
    return data


def _node_ijk_to_ras(node):
    import vtk
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def _display_property(node):
    """The transfer functions of the node's volume-rendering display node, if mrml.setup_* made one."""
    for index in range(node.GetNumberOfDisplayNodes()):
        display = node.GetNthDisplayNode(index)
        if display is not None and display.IsA("vtkMRMLVolumeRenderingDisplayNode") and display.GetVolumePropertyNode():
            prop = display.GetVolumePropertyNode().GetVolumeProperty()
            return prop.GetRGBTransferFunction(), prop.GetScalarOpacity()
    return None


def _ct_transfer(window=(150.0, 700.0), max_opacity=0.3):
    import vtk
    opacity = vtk.vtkPiecewiseFunction()
    opacity.AddPoint(window[0] - 1000, 0.0)
    opacity.AddPoint(window[0], 0.0)
    opacity.AddPoint(window[1], max_opacity)
    color = vtk.vtkColorTransferFunction()
    color.AddRGBPoint(window[0], 0.55, 0.25, 0.15)
    color.AddRGBPoint(window[1], 1.0, 0.94, 0.85)
    return color, opacity


def _heat_transfer(threshold=0.3, max_opacity=0.6):
    import vtk
    color = vtk.vtkColorTransferFunction()
    for value, rgb in HEAT_CONTROL_POINTS:
        color.AddRGBPoint(value, *rgb)
    opacity = vtk.vtkPiecewiseFunction()
    opacity.AddPoint(0.0, 0.0)
    opacity.AddPoint(threshold, 0.0)
    opacity.AddPoint(threshold + 1e-3, 0.05 * max_opacity)
    opacity.AddPoint(1.0, max_opacity)
    return color, opacity


def _surface_actor(polydata, color_rgb, opacity: float, user_matrix=None):
    import vtk
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*[float(c) for c in color_rgb])
    actor.GetProperty().SetOpacity(opacity)
    if user_matrix is not None:
        actor.SetUserMatrix(_vtk_matrix(user_matrix))
    return actor


def _surface_actors(segmentation_node, opacity: float) -> list:
    import vtk
    segmentation_node.CreateClosedSurfaceRepresentation()
    segmentation = segmentation_node.GetSegmentation()
    ids = vtk.vtkStringArray()
    segmentation.GetSegmentIDs(ids)
    actors = []
    for index in range(ids.GetNumberOfValues()):
        segment_id = ids.GetValue(index)
        polydata = vtk.vtkPolyData()
        if not segmentation_node.GetClosedSurfaceRepresentation(segment_id, polydata) or polydata.GetNumberOfPoints() == 0:
            continue
        actor = _surface_actor(polydata, segmentation.GetSegment(segment_id).GetColor(), opacity)
        actors.append(actor)
    return actors


def render_scene_3d(nodes, path_png, size: tuple[int, int] = (800, 600), camera: str = "anterior",
                    surface_opacity: float = 0.6, saliency_threshold: float = 0.3,
                    background: Sequence[float] = (0.1, 0.1, 0.15), zoom: float = 1.5) -> Render3D:
    """Render volumes and segmentations to ``path_png`` (written atomically) and return a :class:`Render3D`.

    Args:
        nodes: an MRML scene, or a sequence of nodes: ``vtkMRMLScalarVolumeNode`` (CT/MR, volume-rendered
            with its volume-rendering display node's transfer functions if any, else a soft-tissue ramp;
            a node with attribute ``RadAI.Saliency`` is drawn with heat colours above
            ``saliency_threshold``), ``vtkMRMLSegmentationNode`` (closed surfaces at ``surface_opacity``).
        camera: one of ``CAMERAS`` (side the viewer looks from: 'anterior' looks at the patient's face).
        size: (width, height) pixels.
    """
    if camera not in CAMERAS:
        raise InputError(f"Unknown camera '{camera}'; use one of {', '.join(CAMERAS)}.")
    renderer = _new_renderer(background)
    shown = 0
    for node in _nodes_of(nodes):
        if node.IsA("vtkMRMLSegmentationNode"):
            for actor in _surface_actors(node, surface_opacity):
                renderer.AddActor(actor)
                shown += 1
        elif node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetImageData():
            if node.GetAttribute(SALIENCY_ATTRIBUTE):
                color, opacity = _heat_transfer(saliency_threshold)
            else:
                color, opacity = _display_property(node) or _ct_transfer()
            renderer.AddVolume(_volume_actor(node.GetImageData(), _node_ijk_to_ras(node), color, opacity))
            shown += 1
    if shown == 0:
        raise InputError("Nothing to render: pass volume or segmentation nodes (or a scene holding them).")
    return _render_to_png(renderer, path_png, size, camera, zoom)


def _new_renderer(background):
    import vtk
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(*background)
    renderer.SetUseDepthPeeling(True)
    renderer.SetMaximumNumberOfPeels(8)
    return renderer


def _render_to_png(renderer, path_png, size, camera: str, zoom: float) -> Render3D:
    """Render once into an offscreen (EGL) window with the named camera and write the PNG atomically."""
    import vtk
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(0)
    window.SetAlphaBitPlanes(True)
    window.SetSize(int(size[0]), int(size[1]))
    window.AddRenderer(renderer)
    direction, view_up = CAMERAS[camera]
    active = renderer.GetActiveCamera()
    active.SetFocalPoint(0, 0, 0)
    active.SetPosition(*direction)
    active.SetViewUp(*view_up)
    renderer.ResetCamera()
    active.Zoom(zoom)
    renderer.ResetCameraClippingRange()
    window.Render()
    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.ReadFrontBufferOff()
    grabber.Update()
    world_to_ndc = _matrix_to_numpy(active.GetCompositeProjectionTransformMatrix(size[0] / size[1], -1, 1))
    with atomic_path(path_png) as tmp:
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputConnection(grabber.GetOutputPort())
        writer.Write()
    window.Finalize()
    return Render3D(str(path_png), (int(size[0]), int(size[1])), world_to_ndc)


def label_surface(labelmap: Image, label: int, smoothing_iterations: int = 15):
    """Closed surface (``vtkPolyData`` in IJK voxel units) of one label, by discrete flying edges + windowed-sinc smoothing."""
    import vtk
    flying = vtk.vtkDiscreteFlyingEdges3D()
    flying.SetInputData(_image_data((as_label_array(labelmap) == label).astype(np.uint8)))
    flying.SetValue(0, 1)
    flying.ComputeNormalsOff()
    smoother = vtk.vtkWindowedSincPolyDataFilter()
    smoother.SetInputConnection(flying.GetOutputPort())
    smoother.SetNumberOfIterations(smoothing_iterations)
    smoother.SetPassBand(0.05)
    smoother.NormalizeCoordinatesOn()
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(smoother.GetOutputPort())
    normals.Update()
    return normals.GetOutput()


def render_images_3d(path_png, image: Optional[Image] = None, labelmap: Optional[Image] = None,
                     saliency: Optional[Image] = None, size: tuple[int, int] = (800, 600), camera: str = "anterior",
                     surface_opacity: float = 0.6, saliency_threshold: float = 0.3,
                     ct_window: tuple[float, float] = (150.0, 700.0),
                     background: Sequence[float] = (0.1, 0.1, 0.15), zoom: float = 1.5) -> Render3D:
    """Like :func:`render_scene_3d` but from engine :class:`Image` objects (no Slicer needed).

    ``image``: volume-rendered with an opacity ramp over ``ct_window`` (HU, low..high; invisible below low).
    ``labelmap``: one smoothed surface per label in its segment colour. ``saliency`` (0..1): heat colours.
    """
    if camera not in CAMERAS:
        raise InputError(f"Unknown camera '{camera}'; use one of {', '.join(CAMERAS)}.")
    renderer = _new_renderer(background)
    shown = 0
    if image is not None:
        color, opacity = _ct_transfer(ct_window)
        renderer.AddVolume(_volume_actor(_image_data(image.array.astype(np.float32)), image.ijk_to_ras, color, opacity))
        shown += 1
    if labelmap is not None:
        for value in labelmap.label_values():
            polydata = label_surface(labelmap, value)
            if polydata.GetNumberOfPoints():
                renderer.AddActor(_surface_actor(polydata, labelmap.segment_for(value).color_rgb, surface_opacity,
                                                 labelmap.ijk_to_ras))
                shown += 1
    if saliency is not None:
        color, opacity = _heat_transfer(saliency_threshold)
        renderer.AddVolume(_volume_actor(_image_data(saliency.array.astype(np.float32)), saliency.ijk_to_ras,
                                         color, opacity))
        shown += 1
    if shown == 0:
        raise InputError("Nothing to render: give an image, a non-empty labelmap or a saliency map.")
    return _render_to_png(renderer, path_png, size, camera, zoom)


def render_case_pngs(image: Image, labelmap: Optional[Image], out_dir, saliency: Optional[Image] = None,
                     focus_ras: Optional[Sequence[float]] = None, size: tuple[int, int] = (640, 480),
                     window: tuple[float, float] = (40.0, 400.0)) -> list[tuple[str, str]]:
    """The standard pictures of a case, written into ``out_dir``: returns ``[(png_path, caption), ...]``.

    ``3d.png`` (anterior view: volume + surfaces [+ saliency]), ``axial.png`` (slice through
    ``focus_ras`` or the labelmap's largest plane, with outline and heat overlay) and, with a saliency map,
    ``side_by_side.png`` (slice without | with the heat overlay).
    """
    from pathlib import Path
    from .render_slices import display_index_of_ras, render_side_by_side, render_slice
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = []
    render_images_3d(out_dir / "3d.png", image, labelmap, saliency, size=size)
    pictures.append((str(out_dir / "3d.png"), "3D view from the front (offscreen VTK): bone by volume rendering, "
                     "segments as semi-transparent surfaces" + (", saliency in heat colours" if saliency is not None else "")))
    index = None
    if focus_ras is not None:
        sar_index = display_index_of_ras(image, focus_ras)
        index = int(sar_index[0])
    render_slice(image, out_dir / "axial.png", labelmap=labelmap, overlay=saliency, index=index, window=window)
    pictures.append((str(out_dir / "axial.png"), "Axial slice (radiological convention: patient right on the left)"
                     + (" with segment outlines" if labelmap is not None else "")
                     + (" and saliency above 0.3" if saliency is not None else "")))
    if saliency is not None:
        render_slice(image, out_dir / "axial_plain.png", labelmap=labelmap, index=index, window=window)
        render_side_by_side(out_dir / "axial_plain.png", out_dir / "axial.png", out_dir / "side_by_side.png")
        pictures.append((str(out_dir / "side_by_side.png"), "Segmentation alone (left) and with the saliency map (right)"))
    return pictures

"""Building blocks of RadAI's offscreen 3D pictures (plain VTK, no Slicer): surfaces, volumes, lights, camera.

* :func:`mask_surface` — a smooth closed surface of a ``[k, j, i]`` mask, in RAS mm (points mapped by
  the image's IJKToRAS matrix: no second copy of the geometry).
* :func:`surface_actor`, :func:`volume_actor` — lit like Slicer's 3D view presets (shaded, specular).
* :func:`frame_camera` — parallel projection from a named anatomical side onto a region of interest,
  so one pixel is the same number of millimetres everywhere in the picture (the scale bar is exact).
* :func:`orientation_cube` — a small renderer with an R/L/A/P/S/I cube turned like the main camera.
* :func:`render_to_array` — one offscreen (EGL) render, returned as RGB pixels.

Environment: ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` (set if unset, before any window),
multi-sampling off (or translucent geometry vanishes), depth peeling for translucent surfaces.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
from .heatmap import HEAT_CONTROL_POINTS  # noqa: E402
from .surfaces import iso_level, smoothed_field  # noqa: E402

#: Camera sides: (direction from the focal point to the camera, view-up), RAS.
CAMERAS = {
    "anterior": ((0, 1, 0), (0, 0, 1)), "posterior": ((0, -1, 0), (0, 0, 1)),
    "left": ((-1, 0, 0), (0, 0, 1)), "right": ((1, 0, 0), (0, 0, 1)),
    "superior": ((0, 0, 1), (0, 1, 0)), "inferior": ((0, 0, -1), (0, 1, 0)),
}
#: What the viewer sees at the picture's (left, right, top, bottom) edge for each camera side.
EDGE_LETTERS = {
    "anterior": ("R", "L", "S", "I"), "posterior": ("L", "R", "S", "I"),
    "left": ("A", "P", "S", "I"), "right": ("P", "A", "S", "I"),
    "superior": ("L", "R", "A", "P"), "inferior": ("R", "L", "A", "P"),
}


def vtk_matrix(matrix):
    """A ``vtkMatrix4x4`` from a 4x4 array (or the matrix itself)."""
    import vtk
    if isinstance(matrix, vtk.vtkMatrix4x4):
        return matrix
    result = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            result.SetElement(r, c, float(matrix[r][c]))
    return result


def image_data(array: np.ndarray, spacing_k: float = 1.0, origin=(0.0, 0.0, 0.0)):
    """``vtkImageData`` of ``array[k, j, i]`` (i fastest, as VTK stores points), IJK units (k step ``spacing_k``)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk
    data = vtk.vtkImageData()
    data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    data.SetSpacing(1.0, 1.0, float(spacing_k))
    data.SetOrigin(*(float(v) for v in origin))
    data.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
    return data


def mask_surface(mask: np.ndarray, ijk_to_ras: np.ndarray, spacing_ijk: Sequence[float], smoothing_mm: float = 1.5):
    """Closed, smoothed iso-surface (0.5 level) of a ``[k, j, i]`` mask as ``vtkPolyData`` in RAS mm, with normals.

    Thick slices are refined by linear interpolation so the surface has no staircase; the mask is padded
    so surfaces cut by the volume's edge are closed. Returns an empty polydata for an empty mask.
    """
    import vtk
    if not np.any(mask):
        return vtk.vtkPolyData()
    field, refine = smoothed_field(mask, spacing_ijk, smoothing_mm)
    level = iso_level(field)
    surface = vtk.vtkFlyingEdges3D()
    surface.SetInputData(image_data(field, 1.0 / refine, origin=(-1.0, -1.0, -1.0)))
    surface.SetValue(0, level)
    surface.ComputeNormalsOff()
    transform = vtk.vtkTransform()
    transform.SetMatrix(vtk_matrix(ijk_to_ras))
    to_ras = vtk.vtkTransformPolyDataFilter()
    to_ras.SetInputConnection(surface.GetOutputPort())
    to_ras.SetTransform(transform)
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(to_ras.GetOutputPort())
    normals.SplittingOff()
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.Update()
    return normals.GetOutput()


def surface_actor(polydata, color_rgb, opacity: float = 1.0, specular: float = 0.25, wireframe: bool = False):
    """A shaded surface (Slicer-like material: diffuse 0.8, specular ``specular``, power 25)."""
    import vtk
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*[float(c) for c in color_rgb])
    prop.SetOpacity(float(opacity))
    prop.SetAmbient(0.15)
    prop.SetDiffuse(0.8)
    prop.SetSpecular(specular)
    prop.SetSpecularPower(25)
    prop.SetInterpolationToPhong()
    if wireframe:
        prop.SetRepresentationToWireframe()
        prop.SetLineWidth(1.0)
        prop.LightingOff()
    return actor


def heat_transfer(threshold: float = 0.3, max_opacity: float = 0.5):
    """Colour and opacity transfer functions of saliency (0..1): heat colours, invisible below ``threshold``."""
    import vtk
    color = vtk.vtkColorTransferFunction()
    for value, rgb in HEAT_CONTROL_POINTS:
        color.AddRGBPoint(value, *rgb)
    opacity = vtk.vtkPiecewiseFunction()
    opacity.AddPoint(0.0, 0.0)
    opacity.AddPoint(threshold, 0.0)
    opacity.AddPoint(threshold + 1e-3, 0.08 * max_opacity)
    opacity.AddPoint(1.0, max_opacity)
    return color, opacity


def ramp_transfer(low: float, high: float, max_opacity: float = 0.6, dark=(0.55, 0.25, 0.15), light=(1.0, 0.94, 0.85)):
    """A ramp like Slicer's CT bone presets: invisible below ``low``, ``max_opacity`` from ``high``, dark to light."""
    import vtk
    opacity = vtk.vtkPiecewiseFunction()
    opacity.AddPoint(low - 1000.0, 0.0)
    opacity.AddPoint(low, 0.0)
    opacity.AddPoint(high, max_opacity)
    color = vtk.vtkColorTransferFunction()
    color.AddRGBPoint(low, *dark)
    color.AddRGBPoint(high, *light)
    return color, opacity


def volume_actor(array: np.ndarray, ijk_to_ras: np.ndarray, color, opacity, shade: bool = True):
    """Ray-cast ``vtkVolume`` of ``array[k, j, i]`` placed in RAS by ``ijk_to_ras`` (shaded like Slicer's presets)."""
    import vtk
    mapper = vtk.vtkSmartVolumeMapper()
    mapper.SetInputData(image_data(np.asarray(array, dtype=np.float32)))
    mapper.SetRequestedRenderModeToRayCast()
    prop = vtk.vtkVolumeProperty()
    prop.SetColor(color)
    prop.SetScalarOpacity(opacity)
    prop.SetInterpolationTypeToLinear()
    if shade:
        prop.ShadeOn()
        prop.SetAmbient(0.2)
        prop.SetDiffuse(0.9)
        prop.SetSpecular(0.2)
        prop.SetSpecularPower(10)
    volume = vtk.vtkVolume()
    volume.SetMapper(mapper)
    volume.SetProperty(prop)
    volume.SetUserMatrix(vtk_matrix(ijk_to_ras))
    return volume


def new_renderer(background: Sequence[float], background_top: Optional[Sequence[float]] = None):
    """A renderer with depth peeling, a light kit (key, fill, back lights) and an optional gradient background."""
    import vtk
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(*background)
    if background_top is not None:
        renderer.SetBackground2(*background_top)
        renderer.GradientBackgroundOn()
    renderer.SetUseDepthPeeling(True)
    renderer.SetMaximumNumberOfPeels(12)
    renderer.SetOcclusionRatio(0.0)
    kit = vtk.vtkLightKit()
    kit.SetKeyLightIntensity(0.85)
    kit.AddLightsToRenderer(renderer)
    return renderer


def frame_camera(renderer, camera: str, bounds_ras: Sequence[float], size: tuple[int, int], margin: float = 1.12,
                 elevation_deg: float = 0.0) -> float:
    """Look at the centre of ``bounds_ras`` (xmin, xmax, ymin, ymax, zmin, zmax; mm) from ``camera``'s side with
    a parallel projection that fits the box (times ``margin``); returns the picture's millimetres per pixel."""
    direction, view_up = (np.asarray(v, dtype=float) for v in CAMERAS[camera])
    bounds = np.asarray(bounds_ras, dtype=float).reshape(3, 2)
    centre = bounds.mean(axis=1)
    corners = np.array([[x, y, z] for x in bounds[0] for y in bounds[1] for z in bounds[2]]) - centre
    if elevation_deg:   # tilt the camera up (towards view-up) by elevation_deg
        angle = np.radians(elevation_deg)
        direction, view_up = (np.cos(angle) * direction + np.sin(angle) * view_up,
                              np.cos(angle) * view_up - np.sin(angle) * direction)
    right = np.cross(view_up, direction)
    half_height = np.abs(corners @ view_up).max()
    half_width = np.abs(corners @ right).max()
    width, height = size
    parallel_scale = max(half_height, half_width * height / width, 1.0) * margin
    active = renderer.GetActiveCamera()
    active.ParallelProjectionOn()
    active.SetFocalPoint(*centre)
    distance = 4.0 * float(np.linalg.norm(bounds[:, 1] - bounds[:, 0])) + 100.0
    active.SetPosition(*(centre + distance * direction))
    active.SetViewUp(*view_up)
    active.SetParallelScale(parallel_scale)
    renderer.ResetCameraClippingRange()
    return 2.0 * parallel_scale / height


def overlay_renderer(main_renderer, props: Sequence):
    """A transparent renderer on layer 1 sharing ``main_renderer``'s camera: ``props`` drawn over the whole scene."""
    import vtk
    renderer = vtk.vtkRenderer()
    renderer.SetLayer(1)
    renderer.InteractiveOff()
    renderer.SetActiveCamera(main_renderer.GetActiveCamera())
    renderer.SetLightFollowCamera(True)
    for prop in props:
        renderer.AddActor(prop)
    return renderer


def orientation_cube(main_renderer, viewport=(0.0, 0.0, 0.13, 0.18)):
    """A small renderer in ``viewport`` holding an R/L/A/P/S/I cube that turns with ``main_renderer``'s camera."""
    import vtk
    cube = vtk.vtkAnnotatedCubeActor()
    faces = (("XPlus", "R"), ("XMinus", "L"), ("YPlus", "A"), ("YMinus", "P"), ("ZPlus", "S"), ("ZMinus", "I"))
    for face, text in faces:
        getattr(cube, f"Set{face}FaceText")(text)
    cube.SetFaceTextScale(0.55)
    cube.GetCubeProperty().SetColor(0.82, 0.84, 0.88)
    cube.GetTextEdgesProperty().SetColor(0.3, 0.3, 0.3)
    for getter, rgb in (("GetXPlusFaceProperty", (0.85, 0.2, 0.2)), ("GetXMinusFaceProperty", (0.85, 0.2, 0.2)),
                        ("GetYPlusFaceProperty", (0.15, 0.6, 0.2)), ("GetYMinusFaceProperty", (0.15, 0.6, 0.2)),
                        ("GetZPlusFaceProperty", (0.2, 0.35, 0.85)), ("GetZMinusFaceProperty", (0.2, 0.35, 0.85))):
        getattr(cube, getter)().SetColor(*rgb)
    renderer = vtk.vtkRenderer()
    renderer.SetViewport(*viewport)
    renderer.SetLayer(1)
    renderer.InteractiveOff()
    renderer.AddActor(cube)
    main = main_renderer.GetActiveCamera()
    camera = renderer.GetActiveCamera()
    focal, position = np.asarray(main.GetFocalPoint()), np.asarray(main.GetPosition())
    direction = (position - focal) / np.linalg.norm(position - focal)
    camera.SetFocalPoint(0, 0, 0)
    camera.SetPosition(*(direction * 4.0))
    camera.SetViewUp(*main.GetViewUp())
    renderer.ResetCamera()
    camera.Zoom(1.1)
    return renderer


def render_to_array(renderers: Sequence, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render ``renderers`` (layer 0 first) once offscreen; returns RGB ``uint8`` pixels (row 0 at the top) and the
    first renderer's world (RAS) -> normalised-device-coordinates matrix."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(0)
    window.SetAlphaBitPlanes(True)
    window.SetNumberOfLayers(2 if len(renderers) > 1 else 1)
    window.SetSize(int(size[0]), int(size[1]))
    for renderer in renderers:
        window.AddRenderer(renderer)
    window.Render()
    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.ReadFrontBufferOff()
    grabber.SetInputBufferTypeToRGB()
    grabber.Update()
    output = grabber.GetOutput()
    width, height, _ = output.GetDimensions()
    pixels = vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3].copy()
    camera = renderers[0].GetActiveCamera()
    matrix = camera.GetCompositeProjectionTransformMatrix(size[0] / size[1], -1, 1)
    world_to_ndc = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    window.Finalize()
    return pixels, world_to_ndc

"""Offscreen 3D pictures to PNG, framed and lit like Slicer's 3D view, readable by a newcomer.

* :func:`render_images_3d` — from engine :class:`Image` objects (the demo, the CLI, the README pictures).
* :func:`render_scene_3d` — from MRML nodes (the scene RadAISegment's Logic builds): volume nodes,
  segmentation nodes, and volumes marked as saliency (``RadAI.Saliency`` attribute); converted to
  Images through :mod:`.mrml` and drawn by the same code.

What is drawn: anatomical *context* (a labelmap from :mod:`.anatomy`: lungs semi-transparent, airway,
bone; or the brain surface), the segmentation's surfaces (opaque, in their segment colours), the
saliency map as a heat-coloured cloud above a threshold, and optionally the image itself by volume
rendering (shaded ramp like Slicer's CT presets). The camera uses a parallel projection from a standard
anatomical side (``CAMERAS``) framed on a region of interest; each picture carries an R/L/A/P/S/I
orientation cube, edge letters, a scale bar and a legend (:mod:`.picture_annotations`).
Coordinates are RAS mm (Slicer's world). Needs EGL + Mesa (``libegl1``, ``libegl-mesa0``, ``libgl1-mesa-dri``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from . import render_parts as parts
from .atomic import atomic_path
from .errors import InputError
from .heatmap import SALIENCY_ATTRIBUTE, heat_rgb
from .image import Image, as_label_array
from .render_parts import CAMERAS

#: Opacity of context structures by segment name (anything else: 0.35).
CONTEXT_OPACITY = {"Lungs": 0.16, "Airway": 0.6, "Bone": 1.0, "Brain": 0.3}
#: Opacity of a segment's see-through copy drawn over occluding context (see ``build_scene``).
GHOST_OPACITY = 0.45
#: Legend colour of the saliency cloud (the heat colour at 0.75).
SALIENCY_LEGEND_RGB = tuple(float(c) for c in heat_rgb(0.75))


@dataclass(frozen=True)
class Render3D:
    """Where a 3D picture went and how to find things in it.

    ``world_to_ndc``: the camera's composite projection (RAS mm -> normalised device coordinates).
    ``mm_per_pixel``: the parallel projection's scale, the same everywhere in the picture.
    """

    path: str
    size: tuple[int, int]
    world_to_ndc: np.ndarray
    mm_per_pixel: float = float("nan")
    camera: str = "anterior"
    legend: tuple = field(default=())

    def project_ras(self, points_ras) -> np.ndarray:
        """PNG pixel positions ``(column, row)`` (row 0 at the top) of RAS points, shape ``(N, 2)``."""
        points = np.atleast_2d(np.asarray(points_ras, dtype=float))
        homogeneous = np.c_[points, np.ones(len(points))] @ self.world_to_ndc.T
        ndc = homogeneous[:, :3] / homogeneous[:, 3:4]
        width, height = self.size
        return np.c_[(ndc[:, 0] + 1) / 2 * width, height - (ndc[:, 1] + 1) / 2 * height]


@dataclass(frozen=True)
class Callout:
    """A name written beside the picture with a leader line to a segment (its most interior *visible* pixel,
    else its centre) or to a RAS point (mm)."""

    text: str
    rgb: tuple
    segment: Optional[str] = None
    point_ras: Optional[tuple] = None
    only_if_visible: bool = False      # skip it when the segment is hidden behind others


@dataclass
class _Scene:
    props: list = field(default_factory=list)
    segment_actors: dict = field(default_factory=dict)  # segment name -> its surface actor
    ghosts: list = field(default_factory=list)      # drawn again on top, faintly: visible through occluders
    legend: list = field(default_factory=list)
    bounds: list = field(default_factory=list)      # (6,) RAS boxes of what was drawn

    def add(self, prop, legend_entry=None) -> None:
        self.props.append(prop)
        self.bounds.append(np.asarray(prop.GetBounds(), dtype=float))
        if legend_entry and legend_entry not in self.legend:
            self.legend.append(legend_entry)


def _check_camera(camera: str) -> None:
    if camera not in CAMERAS:
        raise InputError(f"Unknown camera '{camera}'; use one of {', '.join(CAMERAS)}.")


def _image_transfer(image: Image, window: Optional[tuple[float, float]]):
    """Volume-rendering ramp: ``window`` (low, high) if given; CT: bone 150..700 HU; MRI: the 70th..99.5th
    percentiles."""
    from .anatomy import is_ct
    if window is None:
        window = (150.0, 700.0) if is_ct(image) else tuple(np.percentile(image.array, (70, 99.5)))
    return parts.ramp_transfer(float(window[0]), float(window[1]), max_opacity=0.5)


def _add_labelmap(scene: _Scene, labelmap: Image, opacity_of, smoothing_mm: float, ghost: bool = False) -> None:
    labels = as_label_array(labelmap)
    for value in labelmap.label_values():
        info = labelmap.segment_for(value)
        polydata = parts.mask_surface(labels == value, labelmap.ijk_to_ras, labelmap.spacing_mm, smoothing_mm)
        if polydata.GetNumberOfPoints():
            actor = parts.surface_actor(polydata, info.color_rgb, opacity_of(info.name))
            scene.add(actor, (info.name, tuple(info.color_rgb)))
            scene.segment_actors.setdefault(info.name, actor)
            if ghost:
                scene.ghosts.append(parts.surface_actor(polydata, info.color_rgb, GHOST_OPACITY, specular=0.0))


def build_scene(image: Optional[Image] = None, labelmaps: Sequence[Image] = (), saliency: Optional[Image] = None,
                context: Optional[Image] = None, surface_opacity: float = 1.0, saliency_threshold: float = 0.3,
                volume_window: Optional[tuple[float, float]] = None, ghost_segments: bool = True,
                saliency_label: str = "Saliency", segment_opacity: Optional[dict] = None) -> _Scene:
    """VTK props of everything to draw, with legend entries and their RAS bounds.

    ``ghost_segments``: the segments are drawn a second time, faintly, on top of everything, so a tumour
    hidden behind ribs still shows through them (opaque where it is in plain view).
    ``segment_opacity``: opacity by segment name, overriding ``surface_opacity``. Surfaces are smoothed
    by a Gaussian of 0.8 in-plane voxels (at least 0.8 mm) before the iso-surface is taken."""
    scene = _Scene()
    if context is not None:
        _add_labelmap(scene, context, lambda name: CONTEXT_OPACITY.get(name, 0.35), smoothing_mm=2.0)
    for labelmap in labelmaps:
        _add_labelmap(scene, labelmap, lambda name: (segment_opacity or {}).get(name, surface_opacity),
                      smoothing_mm=max(0.8, 0.8 * min(labelmap.spacing_mm[:2])),
                      ghost=ghost_segments and context is not None)
    if image is not None:
        color, opacity = _image_transfer(image, volume_window)
        scene.add(parts.volume_actor(image.array, image.ijk_to_ras, color, opacity, shade=True))
    if saliency is not None and float(np.max(saliency.array)) > saliency_threshold:
        color, opacity = parts.heat_transfer(saliency_threshold)
        scene.add(parts.volume_actor(saliency.array, saliency.ijk_to_ras, color, opacity, shade=False),
                  (f"{saliency_label} ≥ {saliency_threshold:g}", SALIENCY_LEGEND_RGB))
    return scene


def union_bounds(boxes: Sequence[np.ndarray]) -> np.ndarray:
    """The smallest RAS box (xmin, xmax, ymin, ymax, zmin, zmax) holding all ``boxes``."""
    stacked = np.asarray(boxes, dtype=float).reshape(-1, 3, 2)
    return np.c_[stacked[:, :, 0].min(axis=0), stacked[:, :, 1].max(axis=0)].ravel()


def draw_scene(scene: _Scene, path_png, camera: str = "anterior", size: tuple[int, int] = (800, 600),
               focus_bounds_ras: Optional[Sequence[float]] = None, margin: float = 1.12,
               background: Sequence[float] = (0.08, 0.09, 0.13),
               background_top: Optional[Sequence[float]] = (0.22, 0.25, 0.33),
               title: str = "", annotate: bool = True, elevation_deg: float = 0.0,
               callouts: Sequence[Callout] = (), legend: bool = True) -> Render3D:
    """Frame, render once, annotate and write ``path_png`` atomically.

    ``focus_bounds_ras``: the region the camera frames (default: everything drawn). ``callouts``: names
    with leader lines (:class:`Callout`). ``legend``: draw the legend box.
    """
    from matplotlib import image as mpl_image
    from .picture_annotations import annotate as annotate_pixels
    _check_camera(camera)
    if not scene.props:
        raise InputError("Nothing to render: give an image, a non-empty labelmap or a saliency map.")
    renderer = parts.new_renderer(background, background_top)
    for prop in scene.props:
        (renderer.AddVolume if prop.IsA("vtkVolume") else renderer.AddActor)(prop)
    bounds = focus_bounds_ras if focus_bounds_ras is not None else union_bounds(scene.bounds)
    mm_per_pixel = parts.frame_camera(renderer, camera, bounds, size, margin, elevation_deg)
    layers = [renderer]
    if scene.ghosts:
        layers.append(parts.overlay_renderer(renderer, scene.ghosts))
    if annotate:
        layers.append(parts.orientation_cube(renderer))
    pixels, world_to_ndc = parts.render_to_array(layers, size)
    result = Render3D(str(path_png), (int(size[0]), int(size[1])), world_to_ndc, mm_per_pixel, camera,
                      tuple(scene.legend))
    if annotate:
        dark = float(np.mean(background)) < 0.5
        points = _callout_pixels(callouts, scene, layers[0], result, size)
        pixels = annotate_pixels(pixels, camera, mm_per_pixel, scene.legend if legend else (), title, dark,
                                 points or None)
    with atomic_path(path_png) as tmp:
        mpl_image.imsave(str(tmp), pixels, format="png")
    return result


def _visible_segment_pixels(renderer, scene: _Scene, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Which pixels show which opaque segment: one extra render with each segment in a flat ID colour
    (translucent surfaces, volumes and ghosts hidden). Returns segment name -> boolean pixel mask."""
    from vtk import vtkRenderer
    names = [name for name, actor in scene.segment_actors.items() if actor.GetProperty().GetOpacity() >= 0.99]
    if not names:
        return {}
    ids = vtkRenderer()
    ids.SetBackground(0, 0, 0)
    ids.SetActiveCamera(renderer.GetActiveCamera())
    for number, name in enumerate(names, start=1):
        flat = parts.surface_actor(scene.segment_actors[name].GetMapper().GetInput(), (number / 255.0, 0.0, 0.0))
        flat.GetProperty().SetAmbient(1.0)      # unlit: the pixel is exactly the ID colour
        flat.GetProperty().SetDiffuse(0.0)
        flat.GetProperty().SetSpecular(0.0)
        flat.GetProperty().LightingOff()
        ids.AddActor(flat)
    pixels, _ = parts.render_to_array([ids], size)
    return {name: pixels[..., 0] == number for number, name in enumerate(names, start=1)}


def _callout_pixels(callouts: Sequence[Callout], scene: _Scene, renderer, result: Render3D, size) -> list:
    """``(text, (column, row), rgb)`` for the annotation layer; segments anchored on their most interior visible
    pixel."""
    from scipy import ndimage as ndi
    visible = _visible_segment_pixels(renderer, scene, size) if any(c.segment for c in callouts) else {}
    placed = []
    for callout in callouts:
        mask = visible.get(callout.segment) if callout.segment else None
        if mask is not None and mask.sum() >= 12:
            depth = ndi.distance_transform_edt(mask)
            row, column = np.unravel_index(int(np.argmax(depth)), depth.shape)
            placed.append((callout.text, (float(column), float(row)), callout.rgb))
        elif callout.only_if_visible:
            continue
        elif callout.point_ras is not None:
            placed.append((callout.text, tuple(result.project_ras(callout.point_ras)[0]), callout.rgb))
        elif callout.segment in scene.segment_actors:
            bounds = np.asarray(scene.segment_actors[callout.segment].GetBounds()).reshape(3, 2).mean(axis=1)
            placed.append((callout.text, tuple(result.project_ras(bounds)[0]), callout.rgb))
    return placed


def render_images_3d(path_png, image: Optional[Image] = None, labelmap: Optional[Image] = None,
                     saliency: Optional[Image] = None, size: tuple[int, int] = (800, 600), camera: str = "anterior",
                     surface_opacity: float = 1.0, saliency_threshold: float = 0.3,
                     ct_window: Optional[tuple[float, float]] = None, context: Optional[Image] = None,
                     focus_bounds_ras: Optional[Sequence[float]] = None, title: str = "", annotate: bool = True,
                     margin: float = 1.12, segment_opacity: Optional[dict] = None, saliency_label: str = "Saliency",
                     **style) -> Render3D:
    """Render engine Images to ``path_png`` (written atomically) and return a :class:`Render3D`.

    ``image``: volume-rendered with a shaded ramp over ``ct_window`` (low, high; default CT bone 150..700 HU).
    ``labelmap``: one smoothed surface per label in its segment colour at ``surface_opacity``.
    ``saliency`` (0..1): heat-coloured cloud above ``saliency_threshold``. ``context``: a labelmap of landmarks
    (:func:`.anatomy.context_structures`), drawn semi-transparent. Any grids: each is placed by its own geometry.
    ``segment_opacity``: opacity by segment name; ``saliency_label``: the map's name in the legend.
    ``style``: further :func:`draw_scene` arguments
    (background, background_top, elevation_deg, callouts, legend).
    """
    _check_camera(camera)
    scene = build_scene(image, [labelmap] if labelmap is not None else [], saliency, context, surface_opacity,
                        saliency_threshold, ct_window, saliency_label=saliency_label, segment_opacity=segment_opacity)
    return draw_scene(scene, path_png, camera, size, focus_bounds_ras, margin, title=title, annotate=annotate, **style)


def _images_from_nodes(nodes_or_scene) -> tuple[list[Image], list[Image], list[Image]]:
    """(volumes, labelmaps, saliency maps) as engine Images from MRML nodes or a scene (hidden nodes skipped)."""
    from .mrml import image_from_volume_node, labelmap_from_segmentation_node
    if hasattr(nodes_or_scene, "GetNodesByClass"):
        collection = nodes_or_scene.GetNodesByClass("vtkMRMLDisplayableNode")
        nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        nodes = [n for n in nodes if not n.GetHideFromEditors()]
    else:
        nodes = list(nodes_or_scene)
    volumes, labelmaps, saliencies = [], [], []
    for node in nodes:
        if node.IsA("vtkMRMLSegmentationNode"):
            if node.GetSegmentation().GetNumberOfSegments():
                labelmaps.append(labelmap_from_segmentation_node(node))
        elif node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetImageData():
            (saliencies if node.GetAttribute(SALIENCY_ATTRIBUTE) else volumes).append(image_from_volume_node(node))
    return volumes, labelmaps, saliencies


def render_scene_3d(nodes, path_png, size: tuple[int, int] = (800, 600), camera: str = "anterior",
                    surface_opacity: float = 1.0, saliency_threshold: float = 0.3, context: bool = False,
                    volume_rendering: bool = True, focus_on_segments: bool = False, title: str = "",
                    annotate: bool = True, focus_bounds_ras: Optional[Sequence[float]] = None, margin: float = 1.12,
                    **style) -> Render3D:
    """Render MRML nodes (or a scene) to ``path_png``.

    Volume nodes are volume-rendered (shaded ramp: CT bone, MRI bright tissue) unless ``volume_rendering`` is
    False; with ``context`` the first volume's landmarks (:mod:`.anatomy`) are drawn around the segments.
    Segmentation nodes: closed surfaces in segment colours. Saliency volumes: heat cloud above the threshold.
    ``focus_on_segments``: frame the segments (plus 40 mm) instead of everything drawn; ``focus_bounds_ras``:
    frame this RAS box (e.g. the same box for every timepoint, so sizes compare).
    """
    from .anatomy import context_structures
    _check_camera(camera)
    volumes, labelmaps, saliencies = _images_from_nodes(nodes)
    context_map = context_structures(volumes[0]) if context and volumes else None
    scene = build_scene(volumes[0] if volumes and volume_rendering else None, labelmaps,
                        saliencies[0] if saliencies else None, context_map, surface_opacity, saliency_threshold)
    for extra in volumes[1:] if volume_rendering else []:
        color, opacity = _image_transfer(extra, None)
        scene.add(parts.volume_actor(extra.array, extra.ijk_to_ras, color, opacity))
    focus = focus_bounds_ras
    if focus is None and focus_on_segments and labelmaps:
        focus = union_bounds([segment_bounds_ras(lm) for lm in labelmaps]) + np.array([-40, 40] * 3)
    return draw_scene(scene, path_png, camera, size, focus, margin, title=title, annotate=annotate, **style)


def segment_bounds_ras(labelmap: Image, label: Optional[int] = None) -> np.ndarray:
    """RAS box (xmin, xmax, ymin, ymax, zmin, zmax; mm) of a label's voxel centres (all labels if None)."""
    labels = as_label_array(labelmap)
    mask = labels != 0 if label is None else labels == label
    if not mask.any():
        raise InputError("The labelmap is empty: nothing to frame.")
    kji = np.argwhere(mask)
    low, high = kji.min(axis=0), kji.max(axis=0)
    corners = np.array([[i, j, k] for i in (low[2], high[2]) for j in (low[1], high[1]) for k in (low[0], high[0])],
                       dtype=float)
    ras = labelmap.index_to_ras(corners)
    return np.c_[ras.min(axis=0), ras.max(axis=0)].ravel()

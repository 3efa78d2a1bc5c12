"""MRML bridge for RadAI Segment's jobs: scene nodes in, worker jobs out, scene nodes back.

:func:`start_segmentation` captures a parameter node's inputs when Apply is pressed (volume, model,
seeds, box, options, output node) into a :class:`.jobs.JobInputs` and starts the job in the session's
worker process (:mod:`.worker_client`); :func:`finish_job` files the result under those captured
inputs, whatever the GUI shows by then. Imports ``slicer`` (MRML and ``slicer.util``) only; whether
the Slicer application runs decides which Python starts the worker (``PythonSlicer`` inside it).
"""
from __future__ import annotations

import os
from typing import Optional

import slicer
import vtk

from .errors import InputError, RadAIError
from .jobs import JobInputs, WorkerJob
from .worker import FORWARDED_ENV
from .worker_client import python_for_workers, shared_worker


def markups_points_ras(points) -> list[tuple[float, float, float]]:
    """World (RAS mm) positions of a markups node's control points (empty for None)."""
    seeds = []
    for index in range(points.GetNumberOfControlPoints() if points else 0):
        position = [0.0, 0.0, 0.0]
        points.GetNthControlPointPositionWorld(index, position)
        seeds.append(tuple(float(v) for v in position))
    return seeds


def volume_identity_key(volume_node) -> str:
    """Identifies a volume's voxels and geometry within this session: scene, node ID, the voxel array's
    modification time and the IJK-to-RAS matrix. Any change of voxels or geometry (Slicer marks
    the image data modified) gives a new key, so the worker re-reads the image; an unchanged volume is
    not written or read again."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    image_data = volume_node.GetImageData()
    stamp = image_data.GetMTime() if image_data is not None else 0
    values = ",".join(f"{matrix.GetElement(r, c):.9g}" for r in range(3) for c in range(4))
    scene = volume_node.GetScene()
    where = scene.GetAddressAsString("vtkObject") if scene is not None else "no scene"
    return f"{where}|{volume_node.GetID()}|{stamp}|{values}"


def _python() -> str:
    return python_for_workers(inside_slicer_app=getattr(slicer, "app", None) is not None)


def _worker():
    return shared_worker(_python())


def start_install(model_id: str, files: tuple = (), reinstall: bool = False):
    """Download, verify and install a catalogue model in the session's download worker (not the inference
    worker, so a download and a segmentation run at once); returns the :class:`.jobs.InstallJob` to poll."""
    from .jobs import InstallJob
    return InstallJob(shared_worker(_python(), role="install"), model_id, reinstall, tuple(files),
                      models_env={name: os.environ.get(name, "") for name in FORWARDED_ENV})


def start_worker_job(volume_node, inputs: JobInputs, previous: Optional[tuple] = None) -> WorkerJob:
    """Start ``inputs`` in the session's worker; the volume's voxels are copied only when the worker does not
    hold them. ``previous``: a lesion's outline for a correction (``(mask, offset_kji)``)."""
    from .mrml import image_from_volume_node
    worker = _worker()
    image = None if worker.running and worker.image_key == inputs.image_key else image_from_volume_node(volume_node)
    return WorkerJob(worker, inputs, image, models_env={name: os.environ.get(name, "") for name in FORWARDED_ENV},
                     previous=previous)


def _context(volume_node, output_node=None, opacity: float = 0.6, threshold: float = 0.3) -> dict:
    return {"scene": volume_node.GetScene(), "volume_id": volume_node.GetID(), "volume_name": volume_node.GetName(),
            "output_id": output_node.GetID() if output_node is not None else None, "opacity": opacity,
            "threshold": threshold}


def _is_lesion_model(model_id: str) -> bool:
    from .models.cache import find_model
    try:
        return find_model(model_id).task == "promptable-lesion"
    except RadAIError:          # a missing model is reported by the worker, with its remedy
        return False


def start_segmentation(parameters) -> WorkerJob:
    """Start segmentation (then Grad-CAM when ``parameters.explain``) of a RadAISegment parameter node's inputs:
    volume, model, seeds, the box ROI, include / exclude points, device, precision and options."""
    from .lesion_slicer import roi_corners_ras
    volume = parameters.inputVolume
    if not volume:
        raise InputError("No input volume selected: choose the CT or MR volume to segment.")
    seeds = tuple(markups_points_ras(parameters.seedPoints))
    box = roi_corners_ras(parameters.boxRoi)
    if _is_lesion_model(parameters.modelId) and not seeds and box is None:
        raise InputError(f"Model '{parameters.modelId}' segments the lesions you point at: place a seed on each "
                         "lesion (Lesion seeds) or draw a box around it (Lesion box), then Apply.")
    inputs = JobInputs(volume_identity_key(volume), parameters.modelId, seeds, parameters.boxSizeMm or None,
                       parameters.device, parameters.fastMode, parameters.cropToBody, parameters.saliencyLabel or None,
                       ("segment", "explain") if parameters.explain else ("segment",),
                       _context(volume, parameters.outputSegmentation, parameters.saliencyOpacity),
                       boxes_ras=(box,) if box is not None else (),
                       include_ras=tuple(markups_points_ras(parameters.includePoints)),
                       exclude_ras=tuple(markups_points_ras(parameters.excludePoints)), precision=parameters.precision,
                       runtime=parameters.runtime)
    return start_worker_job(volume, inputs)


def start_explanation(volume_node, model_id: str, seed_ras=None, label=None, box_mm: Optional[float] = None,
                      opacity: float = 0.6, threshold: float = 0.3) -> WorkerJob:
    """Start Grad-CAM only (the saliency map of ``model_id`` on ``volume_node``)."""
    seeds = (tuple(float(v) for v in seed_ras),) if seed_ras is not None else ()
    inputs = JobInputs(volume_identity_key(volume_node), model_id, seeds, box_mm or None,
                       saliency_label=str(label) if label else None, stages=("explain",),
                       context=_context(volume_node, opacity=opacity, threshold=threshold))
    return start_worker_job(volume_node, inputs)


def finish_job(job: WorkerJob) -> dict:
    """Main thread: scene nodes for a finished job, filed under the volume it started with.

    Returns ``{"segmentation": node or None, "saliency": node or None}``; a lesion model's segmentation carries
    the record corrections use (``lesion_slicer.record_lesions``); raises the job's error, or
    ``InputError`` when that volume was removed meanwhile. The job's files are removed.
    """
    from .mrml import (place_in_subject_hierarchy, saliency_volume_node, segmentation_node_from_labelmap,
                       setup_saliency_volume_rendering, show_closed_surfaces)
    try:
        result = job.result()
        context = job.inputs.context
        scene = context["scene"]
        volume = scene.GetNodeByID(context["volume_id"])
        if volume is None:
            raise InputError(f"The input volume '{context['volume_name']}' was removed while the job ran; "
                             "nothing was added to the scene.")
        nodes = {"segmentation": None, "saliency": None}
        model_id = job.inputs.model_id
        if result.labelmap is not None:
            output = scene.GetNodeByID(context["output_id"]) if context["output_id"] else None
            node = segmentation_node_from_labelmap(result.labelmap, f"{context['volume_name']} {model_id}",
                                                   reference_volume_node=volume, existing_node=output)
            place_in_subject_hierarchy(node, volume)     # under the input's study
            show_closed_surfaces(node)
            nodes["segmentation"] = node
            if result.lesions:                           # a lesion model: the record that corrections use
                from .lesion_slicer import record_lesions
                record_lesions(node, job.inputs, result.lesions, volume.GetID())
            elif node.GetAttribute("RadAI.LesionSession"):
                node.RemoveAttribute("RadAI.LesionSession")
        if result.saliency is not None:
            node = saliency_volume_node(result.saliency, f"{context['volume_name']} {model_id} saliency", scene=scene,
                                        threshold=context["threshold"], opacity=context["opacity"])
            setup_saliency_volume_rendering(node, threshold=context["threshold"], max_opacity=context["opacity"])
            place_in_subject_hierarchy(node, volume)
            nodes["saliency"] = node
        return nodes
    finally:
        job.cleanup()


def result_text(job: WorkerJob, node) -> str:
    """The status after Apply: ``Done: added 'X'.``, one line per lesion with its volume and range (lesion
    models), and the network precision that ran."""
    from .lesion_slicer import volume_lines
    lines = [f"Done: added '{node.GetName()}'." if node is not None else "Done."]
    if node is not None:
        lines += volume_lines(node)
    precision = job.result().inference_precision
    if precision:
        lines.append(f"Network precision: {precision}.")
    return "\n".join(lines)

"""MRML bridge for the Cardiac tab's one-button cine EF: a Sequences node of cine volumes -> the ventricular model
on every phase in RadAI Volumetrics' worker process -> a segmentation sequence beside the cine, the volume curve
and the numbers.

:func:`start_cine_ef` captures the cine (its phases as engine Images, the index values as trigger times when
their unit is ms or s), the model, heart rate, device and precision, writes the cine as one 4D file in a
private folder and starts the job in the worker (``python -m RadAIVolumetricsLib.worker``; the GUI only polls).
:func:`finish_cine_ef` (main thread) turns the result into scene nodes, filed under the cine sequence the job
started with: a ``vtkMRMLSequenceNode`` of segmentations with the cine's index values, synchronised in the
cine's sequence browser (so image and segmentation play together), and a plot chart of the LV (and RV)
blood-pool volume. Imports ``slicer`` MRML only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import slicer

from RadAISegmentLib.errors import InputError
from RadAISegmentLib.jobs import PolledJob
from RadAISegmentLib.worker import FORWARDED_ENV
from RadAISegmentLib.worker_client import python_for_workers, shared_worker

_UNIT_TO_MS = {"ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0}


def cine_from_sequence(sequence_node):
    """A ``CineSeries`` of a sequence of scalar volumes (phases in the sequence's order; trigger times in ms from
    the index values when the index unit is ms or s). Raises ``CineError`` / ``InputError`` naming the problem."""
    from RadAISegmentLib.cine import CineSeries
    from RadAISegmentLib.mrml import image_from_volume_node
    if sequence_node is None or sequence_node.GetNumberOfDataNodes() < 2:
        raise InputError("Select a cine: a sequence of at least two volumes (one per cardiac phase).")
    phases = []
    for index in range(sequence_node.GetNumberOfDataNodes()):
        node = sequence_node.GetNthDataNode(index)
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
            raise InputError(f"Phase {index} of '{sequence_node.GetName()}' is not a scalar volume; the cine must be a "
                             "sequence of image volumes (load a 4D file or a multi-phase DICOM series).")
        phases.append(image_from_volume_node(node))
    scale = _UNIT_TO_MS.get((sequence_node.GetIndexUnit() or "").strip().lower())
    times = None
    if scale is not None:
        try:
            times = tuple(float(sequence_node.GetNthIndexValue(i)) * scale for i in range(len(phases)))
        except ValueError:
            times = None
    return CineSeries(tuple(phases), times)


class CineEfJob(PolledJob):
    """The cine EF of one cine in the Volumetrics worker; :meth:`result` returns ``(result dict, labelmaps)``."""

    label = "cine EF"

    def __init__(self, worker, cine, model_id: str, heart_rate_bpm: Optional[float], device: str, precision: str,
                 context: dict, models_env: Optional[dict] = None) -> None:
        super().__init__(worker)
        from RadAISegmentLib.cine import write_cine
        self.inputs = {"model_id": model_id, "heart_rate_bpm": heart_rate_bpm, "device": device,
                       "precision": precision, "phases": len(cine.phases), "times_ms": cine.times_ms,
                       "context": context}
        self._reply: Optional[dict] = None
        self._request_id = f"cine-{id(self)}"
        env = dict(models_env or {})
        try:
            worker.start()
            path = write_cine(cine.phases, self.folder / "cine.nii.gz", cine.times_ms)
            worker.send({"id": self._request_id, "op": "cine-ef", "cine": str(path), "model": model_id,
                         "heart_rate": heart_rate_bpm, "device": device, "precision": precision,
                         "output": str(self.folder / "labels.nii.gz"),
                         "env": {name: env.get(name, "") for name in FORWARDED_ENV}})
        except BaseException:
            self._finish_with(None)
            self.cleanup()
            raise

    def _take(self, event: dict) -> bool:
        self._reply = event
        return True

    def result(self) -> tuple[dict, list]:
        """``(result, labelmaps)``: the ``radai ef`` keys, one labelmap per phase with the model's segments."""
        if not self.done:
            self.wait()
        if self._error is not None:
            raise self._error
        from RadAISegmentLib.cine import read_cine
        from RadAISegmentLib.image import SegmentInfo
        segments = [SegmentInfo.from_dict(s) for s in self._reply.get("segments") or []]
        labelmaps = [phase.with_array(phase.array.astype("uint8") if phase.array.max() < 256 else phase.array,
                                      segments=segments) for phase in read_cine(self._reply["output"]).phases]
        return dict(self._reply["result"]), labelmaps


def start_cine_ef(sequence_node, model_id: str, heart_rate_bpm: Optional[float] = None, device: str = "auto",
                  precision: str = "auto") -> CineEfJob:
    """Capture the cine and options and start the job in the session's Volumetrics worker."""
    if not model_id:
        raise InputError("Choose a ventricular model (e.g. ventricular_short_axis_3label: Models section of RadAI "
                         "Segment, or `radai models install ventricular_short_axis_3label`).")
    cine = cine_from_sequence(sequence_node)
    python = python_for_workers(inside_slicer_app=getattr(slicer, "app", None) is not None)
    worker = shared_worker(python, role="cine", module="RadAIVolumetricsLib.worker",
                           paths=(str(Path(__file__).resolve().parents[1]),))
    context = {"scene": sequence_node.GetScene(), "sequence_id": sequence_node.GetID(),
               "sequence_name": sequence_node.GetName()}
    return CineEfJob(worker, cine, model_id, heart_rate_bpm or None, device, precision, context,
                     {name: os.environ.get(name, "") for name in FORWARDED_ENV})


def _browser_of(scene, sequence_node):
    """The sequence browser that plays ``sequence_node`` (created when there is none)."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.IsSynchronizedSequenceNodeID(sequence_node.GetID(), True):
            return browser
    browser = new_browser(scene, f"{sequence_node.GetName()} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence_node.GetID())
    return browser


def new_browser(scene, name: str):
    """A new sequence browser node (its class registered first where no Sequences module did, e.g. headless)."""
    if not scene.IsNodeClassRegistered("vtkMRMLSequenceBrowserNode"):
        scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    return scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", name)


def segmentation_sequence(scene, labelmaps: list, cine_node, name: str):
    """A sequence of segmentation nodes (one per phase, the cine's index name, unit and values), synchronised in
    the cine's browser."""
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(cine_node.GetIndexName())
    sequence.SetIndexUnit(cine_node.GetIndexUnit())
    sequence.SetIndexType(cine_node.GetIndexType())
    for index, labelmap in enumerate(labelmaps):
        node = segmentation_node_from_labelmap(labelmap, f"{name} {index}", scene=scene)
        sequence.SetDataNodeAtValue(node, cine_node.GetNthIndexValue(index))
        scene.RemoveNode(node)
    _browser_of(scene, cine_node).AddSynchronizedSequenceNode(sequence.GetID())
    return sequence


def finish_cine_ef(job: CineEfJob) -> dict:
    """Main thread: the job's result plus ``segmentations`` (the segmentation sequence) and ``chart`` (LV and RV
    blood-pool volume over the cycle), filed beside the cine the job started with. Raises the job's error
    (``CancelledError`` when cancelled), or ``InputError`` when that cine was removed meanwhile."""
    from .mrml import plot_chart
    try:
        result, labelmaps = job.result()
        context = job.inputs["context"]
        scene = context["scene"]
        cine = scene.GetNodeByID(context["sequence_id"])
        if cine is None:
            raise InputError(f"The cine '{context['sequence_name']}' was removed while the job ran; nothing was added.")
        result["segmentations"] = segmentation_sequence(scene, labelmaps, cine,
                                                        f"{cine.GetName()} {job.inputs['model_id']}")
        x = result.get("times_ms") or list(range(len(labelmaps)))
        series = {"LV blood pool": result["volumes_ml"]}
        if result.get("rv_volumes_ml"):
            series["RV blood pool"] = result["rv_volumes_ml"]
        result["chart"] = plot_chart(x, series, f"{cine.GetName()} volume curve",
                                     "Time in cycle (ms)" if result.get("times_ms") else "Phase", "Volume (mL)",
                                     scene=scene)
        return result
    finally:
        job.cleanup()

"""RadAISegment: AI segmentation of CT/MRI volumes with Grad-CAM saliency (3D Slicer scripted module).

Wizard layout: Module, parameter node (``parameterNodeWrapper``), Widget, Logic, Test.
The Widget only binds the GUI; the Logic delegates to ``RadAISegmentLib`` (engine, no
Slicer imports) and ``RadAISegmentLib.mrml`` (MRML bridge), so it runs headless.
"""
from __future__ import annotations

import os
import tempfile
from typing import Annotated

import slicer
import vtk
from slicer import (vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode,
                    vtkMRMLSegmentationNode)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from RadAISegmentLib.module_logic import LesionCorrections, VolumesAndModels


class RadAISegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "RadAI Segment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["RadAI developers"]
        self.parent.helpText = (
            "Segment organs and lesions in CT/MRI with U-Net models (GPU when present, CPU otherwise) "
            "and show Grad-CAM saliency beside the segmentation. Models are installed per user; "
            "see the RadAI README.")
        self.parent.acknowledgementText = (
            "Built on 3D Slicer, MONAI, SimpleITK and PyTorch. Brain extraction uses deepbet's networks (MIT).")
        app = getattr(slicer, "app", None)  # absent in the headless core and in pytest
        if app is not None:
            app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the bundled cases with Slicer's Sample Data module (local ``file://`` URLs, no download)."""
    import SampleData
    from RadAISegmentLib.sample_data import list_sample_cases, sample_case

    thumbnail = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "Icons", "RadAISegment.png")
    for name in list_sample_cases():
        image = sample_case(name)["image"].resolve()
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="RadAI", sampleName=f"RadAI {name}", thumbnailFileName=thumbnail, uris=[image.as_uri()],
            fileNames=[image.name], nodeNames=[f"RadAI_{name}"], loadFileType="VolumeFile")


#: devices the Device combo box offers (Choice: Slicer's connector fills the combo box with these)
DEVICES = ("auto", "cpu", "cuda")
#: network precisions (auto: bf16 on CPUs with bf16 instructions, else fp32)
PRECISIONS = ("auto", "fp32", "bf16")
#: what runs an organ model's network on the CPU (auto: OpenVINO for nnU-Net models, PyTorch otherwise)
RUNTIMES = ("auto", "torch", "openvino")


@parameterNodeWrapper
class RadAISegmentParameterNode:
    """Module state kept in the scene (saved with it): inputVolume (CT or MR to segment), modelId (an
    installed or shipped model card; the Model combo box is filled from the model cache and kept in step
    by the Widget, not bound), device (one of DEVICES), precision (one of PRECISIONS), runtime (one of RUNTIMES), fastMode (coarser
    spacing for quick CPU runs), cropToBody (organ models: windows only over the body; off = MONAI's windows),
    seedPoints (markups, RAS, for the promptable lesion model), boxSizeMm (box edge around each seed, 0 =
    model default), boxRoi (a Markups ROI drawn around a lesion), includePoints / excludePoints (correction
    clicks), lesionSegmentation (the lesion segmentation clicks correct), explain (Grad-CAM after
    segmentation), saliencyLabel (label name or id to explain), saliencyOpacity (overlay opacity 0..1),
    outputSegmentation (optional node to overwrite, never the input).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = "lesion-roi"
    device: Annotated[str, Choice(DEVICES)] = "auto"
    precision: Annotated[str, Choice(PRECISIONS)] = "auto"
    runtime: Annotated[str, Choice(RUNTIMES)] = "auto"
    fastMode: bool = False
    cropToBody: bool = True
    seedPoints: vtkMRMLMarkupsFiducialNode
    boxSizeMm: Annotated[float, WithinRange(0.0, 300.0)] = 0.0
    boxRoi: vtkMRMLMarkupsROINode
    includePoints: vtkMRMLMarkupsFiducialNode
    excludePoints: vtkMRMLMarkupsFiducialNode
    lesionSegmentation: vtkMRMLSegmentationNode
    explain: bool = False
    saliencyLabel: str = ""
    saliencyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    outputSegmentation: vtkMRMLSegmentationNode


class RadAISegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds RadAISegment.ui to the parameter node and to the Logic; no computation here.

    Apply starts a job in RadAI's worker process and a timer polls it (never blocking); the result is
    filed under the inputs the job started with. After Apply with a lesion model, each point placed on the
    include / exclude list starts a correction of the lesion it lies in (queued while a job runs); Undo
    restores the outline before the last one. Cancel, closing the scene and unloading the module stop the
    worker; a failed job is reported and Apply is enabled again. The Models section is a ``ModelsSection``.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = None
        self._clickLists: list = []
        self._pendingClicks: list = []

    def setup(self) -> None:
        import qt
        from RadAISegmentLib.models_section import ModelsSection
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadAISegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RadAISegmentLogic()
        self.models = ModelsSection(self.ui, self.logic, lambda: self._parameterNode, self._tryAndShow)
        for button, slot in ((self.ui.applyButton, self.onApplyButton), (self.ui.cancelButton, self.onCancelButton),
                             (self.ui.placeIncludeButton, lambda: self.onPlace(True)),
                             (self.ui.placeExcludeButton, lambda: self.onPlace(False)),
                             (self.ui.undoCorrectionButton, self.onUndo)):
            button.connect("clicked(bool)", slot)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self.onPollJob)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module unloaded: stop the timers, the jobs and the worker processes."""
        if self._timer is not None:
            self._timer.stop()
        self.models.stop()
        self._stopJob("The module was unloaded; the job was cancelled.")
        self.logic.shutdownWorker()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self._stopJob("Cancelled: the scene was closed.")
        self.logic.forgetCorrections()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        self.ui.deviceLabel.text = self.logic.deviceSummary()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
        self._updateState()

    def _updateState(self, caller=None, event=None) -> None:
        node = self._parameterNode
        volume = node.inputVolume if node else None
        if node:
            self.models.showModel(node.modelId)                  # the model kept in the scene
        self.ui.geometryLabel.text = self.logic.geometrySummary(volume) if volume else "Select a volume."
        self.ui.applyButton.enabled = bool(volume) and self._job is None
        self.ui.cancelButton.enabled = self._job is not None
        lesions = node.lesionSegmentation if node else None
        self.ui.undoCorrectionButton.enabled = self._job is None and self.logic.canUndoCorrection(lesions)
        self.ui.lesionVolumesLabel.text = "\n".join(self.logic.lesionVolumeLines(lesions))
        self._observeClickLists([n for n in (node.includePoints, node.excludePoints) if n] if node else [])

    # -- clicks: every point placed on the include / exclude list corrects its lesion -------------------
    def _observeClickLists(self, lists: list) -> None:
        if lists == self._clickLists:
            return
        for markups in self._clickLists:
            self.removeObserver(markups, markups.PointPositionDefinedEvent, self.onClickPlaced)
        for markups in lists:
            self.addObserver(markups, markups.PointPositionDefinedEvent, self.onClickPlaced)
        self._clickLists = list(lists)

    @vtk.calldata_type(vtk.VTK_INT)
    def onClickPlaced(self, caller, event, index) -> None:
        """A point was placed: correct the lesion it lies in (once lesions exist; before Apply the points
        are simply prompts for Apply)."""
        node = self._parameterNode
        if node is None or not self.logic.canCorrect(node.lesionSegmentation):
            return
        self._pendingClicks.append((caller, caller.GetNthControlPointID(index), caller is node.includePoints))
        self._startNextClick()

    def _startNextClick(self) -> None:
        while self._pendingClicks and self._job is None:
            markups, pointId, include = self._pendingClicks.pop(0)
            index = markups.GetNthControlPointIndexByID(pointId)
            if index < 0:
                continue

            def start():
                self._job = self.logic.startCorrection(self._parameterNode.lesionSegmentation, markups, index, include)
                self.ui.statusLabel.text = self._job.statusText()
                self._timer.start()
            self._tryAndShow("The click could not be used; it was removed.", start)
        self._updateState()

    def onPlace(self, include: bool) -> None:
        name = "includePoints" if include else "excludePoints"
        node = self._parameterNode
        if getattr(node, name) is None:
            setattr(node, name, self.logic.newClickList(include, node.inputVolume))
        self.logic.placePoints(getattr(node, name))

    def onUndo(self) -> None:
        if self.logic.undoCorrection(self._parameterNode.lesionSegmentation):
            self.ui.statusLabel.text = "Undone: the outline before the last correction is back."
        self._updateState()

    def _tryAndShow(self, message: str, action) -> bool:
        """Run ``action``; an error is shown (Slicer's error display) and in the status line, never raised."""
        try:
            with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
                action()
        except Exception as error:  # shown to the user by tryWithErrorDisplay
            self.ui.statusLabel.text = f"{message} {error}"
            return False
        return True

    # -- jobs -------------------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        def start():
            self.logic.ensureDependencies()
            self._job = self.logic.startSegmentation(self._parameterNode)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = self._job.statusText()
            self._timer.start()
        self._tryAndShow("RadAI segmentation failed to start.", start)
        self._updateState()

    def onCancelButton(self) -> None:
        if self._job:
            self._job.cancel()
            self.onPollJob()

    def _stopJob(self, status: str) -> None:
        self._pendingClicks = []
        if self._job is not None:
            self._job.cancel()
            self._job = None
            if self._timer is not None:
                self._timer.stop()
            self.ui.statusLabel.text = status

    def onPollJob(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        done = job.poll()
        self.ui.progressBar.value = int(100 * job.fraction)
        self.ui.statusLabel.text = job.statusText()
        if not done:
            return
        self._timer.stop()
        self._job = None
        from RadAISegmentLib.errors import CancelledError

        def finish():
            try:
                if job.inputs.stages == ("correct",):
                    self.ui.statusLabel.text = self.logic.finishCorrection(job)
                    return
                node = self.logic.finishSegmentation(job)
            except CancelledError:
                self.ui.statusLabel.text = "Cancelled; nothing was added to the scene."
            else:
                if self.logic.canCorrect(node):
                    self._parameterNode.lesionSegmentation = node
                self.ui.statusLabel.text = self.logic.resultText(job, node)
        try:
            self._tryAndShow("RadAI segmentation failed." if job.inputs.stages != ("correct",)
                             else "The correction failed; its click was removed.", finish)
        finally:
            job.cleanup()
            self._updateState()
            self._startNextClick()


class RadAISegmentLogic(ScriptedLoadableModuleLogic, VolumesAndModels, LesionCorrections):
    """Segmentation, corrections and saliency on MRML nodes; every method also runs headless.

    Engine work runs in RadAI's worker process (``RadAISegmentLib.worker``), started with Slicer's
    Python: :meth:`startSegmentation` / ``startCorrection`` capture the inputs and return a
    ``RadAISegmentLib.jobs.WorkerJob`` to poll; :meth:`finishSegmentation` / ``finishCorrection`` (main
    thread) turn its result into scene nodes, filed under the inputs the job started with. Volumes, models,
    downloads and lesion corrections: the method groups in ``RadAISegmentLib.module_logic``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        from RadAISegmentLib.lesion_slicer import CorrectionHistory
        self._corrections = CorrectionHistory()

    def getParameterNode(self):
        return RadAISegmentParameterNode(super().getParameterNode())

    # -- jobs in the worker process -----------------------------------------------------------------
    def startSegmentation(self, parameterNode):
        """Start segmentation (and Grad-CAM when ``explain`` is ticked) of the parameter node's inputs (volume,
        model, seeds, box ROI, include / exclude points, options) in the worker process; returns the
        ``WorkerJob`` to poll. Raises ``InputError`` without an input volume, or a lesion model without prompts."""
        from RadAISegmentLib.slicer_jobs import start_segmentation
        return start_segmentation(parameterNode)

    def finishSegmentation(self, job):
        """Main thread: the finished job's labelmap as a segmentation node (new unless the job was started
        with an output node), and its saliency map as a heat volume when it explained; both filed under the
        volume the job started with. Raises the job's error (``CancelledError`` when cancelled)."""
        from RadAISegmentLib.slicer_jobs import finish_job
        node = finish_job(job)["segmentation"]
        self._corrections.forget(node)
        return node

    @staticmethod
    def resultText(job, node) -> str:
        """``Done: added 'X'.``, each lesion's volume with its range, the network precision that ran."""
        from RadAISegmentLib.slicer_jobs import result_text
        return result_text(job, node)

    def explainSegmentation(self, volumeNode, modelId: str, seedRAS=None, opacity: float = 0.6, label=None,
                            threshold: float = 0.3, boxMm=None):
        """Grad-CAM saliency of ``modelId`` on ``volumeNode`` (computed in the worker process; waits) as a new
        heat-coloured volume node: slice foreground at ``opacity``, volume-rendered above ``threshold``.
        seedRAS: (R, A, S) mm crop centre (promptable lesion models); boxMm: edge of the region around it."""
        from RadAISegmentLib.slicer_jobs import finish_job, start_explanation
        job = start_explanation(volumeNode, modelId, seedRAS, label, boxMm, opacity, threshold)
        job.wait()
        return finish_job(job)["saliency"]

    @staticmethod
    def shutdownWorker() -> None:
        """Stop the worker processes (module cleanup); the next job starts a new one."""
        from RadAISegmentLib.worker_client import stop_shared_workers
        stop_shared_workers()


class RadAISegmentTest(ScriptedLoadableModuleTest):
    """Runs inside a real Slicer (no GPU, no network) on the bundled sample data."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        for test in (self.test_load_and_describe, self.test_segment_measure_explain_render):
            self.setUp()
            test()

    def test_load_and_describe(self):
        from RadAISegmentLib.sample_data import sample_case
        logic = RadAISegmentLogic()
        node = logic.loadVolume(sample_case("abdomen-ct")["image"])
        self.assertIn("voxels", logic.geometrySummary(node))
        self.delayDisplay("RadAISegment load test passed")

    def test_segment_measure_explain_render(self):
        """Bundled lung tumour: a seed at the tumour -> lesion-roi (CPU) -> volume -> Grad-CAM -> PNG."""
        import numpy as np
        from RadAISegmentLib.lesion.evaluate import case_prompt
        from RadAISegmentLib.mrml import labelmap_from_segmentation_node
        from RadAISegmentLib.render import render_scene_3d
        from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case
        from RadAIVolumetricsLib.measurements import measure_segments
        reference = load_sample_labelmap("lung-tumour")
        seed, box_mm, _ = case_prompt(reference)
        logic = RadAISegmentLogic()
        volume = logic.loadVolume(sample_case("lung-tumour")["image"], "lung")
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
        seeds.AddControlPointWorld(*[float(v) for v in seed])
        parameters = logic.getParameterNode()
        parameters.inputVolume, parameters.seedPoints, parameters.modelId = volume, seeds, "lesion-roi"
        parameters.device, parameters.boxSizeMm = "cpu", box_mm
        job = logic.startSegmentation(parameters)
        self.assertTrue(job.wait(300), "segmentation did not finish within 5 minutes")
        segmentation = logic.finishSegmentation(job)
        rows = measure_segments(labelmap_from_segmentation_node(segmentation, reference))
        reference_ml = np.count_nonzero(reference.array) * reference.voxel_volume_mm3 / 1000.0
        self.assertEqual(len(rows), 1)
        self.assertTrue(0.3 * reference_ml < rows[0]["volume_ml"] < 3.0 * reference_ml, (rows, reference_ml))
        saliency = logic.explainSegmentation(volume, "lesion-roi", seedRAS=seed, boxMm=box_mm)
        self.assertGreater(slicer.util.arrayFromVolume(saliency).max(), 0.3)
        with tempfile.TemporaryDirectory() as folder:
            render = render_scene_3d([volume, segmentation, saliency], os.path.join(folder, "view.png"), size=(320, 240))
            self.assertTrue(os.path.getsize(render.path) > 1000)
        self.delayDisplay("RadAISegment segment-measure-explain-render test passed")

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
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


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


@parameterNodeWrapper
class RadAISegmentParameterNode:
    """Module state kept in the scene (saved with it): inputVolume (CT or MR to segment), modelId (an
    installed or shipped model card; the Model combo box is filled from the model cache and kept in step
    by the Widget, not bound), device (one of DEVICES), fastMode (coarser spacing for quick CPU runs),
    cropToBody (organ models: windows only over the body; off = MONAI's windows), seedPoints (markups,
    RAS, for the promptable lesion model), boxSizeMm (box edge around each seed, 0 = model default),
    explain (Grad-CAM after segmentation), saliencyLabel (label name or id to explain), saliencyOpacity
    (overlay opacity 0..1), outputSegmentation (optional node to overwrite, never the input).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = "lesion-roi"
    device: Annotated[str, Choice(DEVICES)] = "auto"
    fastMode: bool = False
    cropToBody: bool = True
    seedPoints: vtkMRMLMarkupsFiducialNode
    boxSizeMm: Annotated[float, WithinRange(0.0, 300.0)] = 0.0
    explain: bool = False
    saliencyLabel: str = ""
    saliencyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    outputSegmentation: vtkMRMLSegmentationNode


class RadAISegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds RadAISegment.ui to the parameter node and to the Logic; no computation here.

    Apply starts a job in RadAI's worker process and a timer polls it (never blocking); the result is
    filed under the inputs the job started with. Cancel, closing the scene and unloading the module
    stop the worker; a failed job is reported and Apply is enabled again.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = None

    def setup(self) -> None:
        import qt
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadAISegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RadAISegmentLogic()
        self._refreshModels()
        self.ui.installModelButton.connect("clicked(bool)", self.onInstallModel)
        self.ui.removeModelButton.connect("clicked(bool)", self.onRemoveModel)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChanged)
        self.ui.modelCacheLabel.text = self.logic.modelCacheFolder()
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self.onPollJob)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module unloaded: stop the timer, the job and the worker process."""
        if self._timer is not None:
            self._timer.stop()
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
        if node and self.ui.modelComboBox.currentText != node.modelId:
            self.ui.modelComboBox.currentText = node.modelId      # the model kept in the scene
        self.ui.geometryLabel.text = self.logic.geometrySummary(volume) if volume else "Select a volume."
        self.ui.applyButton.enabled = bool(volume) and self._job is None
        self.ui.cancelButton.enabled = self._job is not None

    def onModelChanged(self, modelId: str) -> None:
        if self._parameterNode and modelId and self._parameterNode.modelId != modelId:
            self._parameterNode.modelId = modelId
        try:
            self.ui.modelCardLabel.text = self.logic.modelCardSummary(modelId) if modelId else ""
        except Exception as error:  # a missing or broken card is shown, not raised, so the module stays usable
            self.ui.modelCardLabel.text = f"Cannot read the model card: {error}"

    def _refreshModels(self, select: str = "") -> None:
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItems(self.logic.availableModelIds())
        if select:
            self.ui.modelComboBox.currentText = select
        self.onModelChanged(self.ui.modelComboBox.currentText)

    def onInstallModel(self) -> None:
        import qt
        path = qt.QFileDialog.getOpenFileName(None, "Install a model (zip)", "", "Model archive (*.zip)")
        if not path:
            path = qt.QFileDialog.getExistingDirectory(None, "Or install a model folder")
        if path:
            self._tryAndShow("Model installation failed; nothing was installed.",
                             lambda: self._refreshModels(select=self.logic.installModel(path)))

    def onRemoveModel(self) -> None:
        modelId = self.ui.modelComboBox.currentText
        if modelId and slicer.util.confirmYesNoDisplay(f"Remove model '{modelId}' from {self.logic.modelCacheFolder()}?"):
            self._tryAndShow("Model removal failed.", lambda: (self.logic.removeModel(modelId), self._refreshModels()))

    def _tryAndShow(self, message: str, action) -> bool:
        """Run ``action``; an error is shown (Slicer's error display) and in the status line, never raised."""
        try:
            with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
                action()
        except Exception as error:  # shown to the user by tryWithErrorDisplay
            self.ui.statusLabel.text = f"{message} {error}"
            return False
        return True

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
                node = self.logic.finishSegmentation(job)
            except CancelledError:
                self.ui.statusLabel.text = "Cancelled; nothing was added to the scene."
            else:
                self.ui.statusLabel.text = f"Done: added '{node.GetName()}'."
        try:
            self._tryAndShow("RadAI segmentation failed.", finish)
        finally:
            job.cleanup()
            self._updateState()


class RadAISegmentLogic(ScriptedLoadableModuleLogic):
    """Segmentation and saliency on MRML nodes; every method also runs headless.

    Engine work runs in RadAI's worker process (``RadAISegmentLib.worker``), started with Slicer's
    Python: :meth:`startSegmentation` captures the inputs and returns a ``RadAISegmentLib.jobs.WorkerJob``
    to poll; :meth:`finishSegmentation` (main thread) turns its result into scene nodes, filed under
    the inputs the job started with.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return RadAISegmentParameterNode(super().getParameterNode())

    # -- geometry and I/O -------------------------------------------------------------------------
    def loadVolume(self, path: str, name: str | None = None):
        """Read a file or DICOM folder with the engine and add it to the scene as a volume node."""
        from RadAISegmentLib.io import read_image
        from RadAISegmentLib.mrml import volume_node_from_image
        image = read_image(path)
        return volume_node_from_image(image, name or os.path.basename(str(path)).split(".")[0])

    def geometrySummary(self, volumeNode) -> str:
        """Shape, spacing and origin of a volume node, in RAS as Slicer shows them."""
        from RadAISegmentLib.image import geometry_summary
        from RadAISegmentLib.mrml import image_from_volume_node
        if volumeNode.GetImageData() is None:    # selected while still loading
            return "No voxels loaded yet."
        return geometry_summary(image_from_volume_node(volumeNode))

    # -- models, devices and dependencies ------------------------------------------------------------
    def availableModelIds(self) -> list[str]:
        """Ids of the shipped and installed models (the Model combo box), ``lesion-roi`` first when present."""
        try:
            from RadAISegmentLib.models.cache import list_models
        except ImportError:  # engine dependencies not installed yet
            return ["lesion-roi"]
        ids = sorted({card.id for card in list_models()})
        return sorted(ids, key=lambda model_id: model_id != "lesion-roi")

    @staticmethod
    def modelCacheFolder() -> str:
        """Where installed models live (``$RADAI_MODELS_DIR`` or the per-user cache)."""
        from RadAISegmentLib.models.cache import models_dir
        return str(models_dir())

    @staticmethod
    def installModel(path: str) -> str:
        """Install a model zip or folder offline (SHA-256 verified; nothing installed on error); returns its id."""
        from RadAISegmentLib.models.cache import install_model
        return install_model(path).id

    @staticmethod
    def removeModel(modelId: str) -> None:
        """Remove an installed model from the cache; ``ModelError`` for shipped models and ids that are not names."""
        from RadAISegmentLib.models.cache import remove_model
        remove_model(modelId)

    @staticmethod
    def modelCardSummary(modelId: str) -> str:
        """Title, modality, labels, licence and measured metrics of a model, for the card label."""
        from RadAISegmentLib.models.cache import find_model
        return find_model(modelId).summary_text()

    def deviceSummary(self, device: str = "auto") -> str:
        """One line for the GUI: the device inference will use, torch version and free memory."""
        try:
            from RadAISegmentLib.device import describe_device
            info = describe_device(device)
        except ImportError as error:
            return f"PyTorch not installed yet ({error}); it is installed on first Apply."
        where = f"GPU {info['gpu']}" if info.get("gpu") else f"CPU ({info['cpu_threads']} threads)"
        memory = f", {info['free_memory_mb']} MB free" if info.get("free_memory_mb") is not None else ""
        warning = f"\nWarning: {info['warning']}" if info.get("warning") else ""
        return f"{where}, torch {info['torch']}{memory}{warning}"

    def ensureDependencies(self) -> None:
        """Install this module's requirements (and PyTorch through SlicerPyTorch if missing) on first use."""
        from RadAISegmentLib.dependencies import ensure_requirements
        requirements = os.path.join(os.path.dirname(__file__), "Resources", "RadAISegment-requirements.txt")
        ensure_requirements(requirements, "RadAI Segment", needs_torch=True)

    # -- jobs in the worker process -----------------------------------------------------------------
    @staticmethod
    def seedPointsRAS(parameterNode) -> list[tuple[float, float, float]]:
        """World (RAS mm) positions of the seed markups' control points (empty without a markups node)."""
        from RadAISegmentLib.slicer_jobs import markups_points_ras
        return markups_points_ras(parameterNode.seedPoints)

    def startSegmentation(self, parameterNode):
        """Start segmentation (and Grad-CAM when ``explain`` is ticked) of the parameter node's inputs in the
        worker process; returns the ``WorkerJob`` to poll. Raises ``InputError`` without an input volume."""
        from RadAISegmentLib.slicer_jobs import start_segmentation
        return start_segmentation(parameterNode)

    def finishSegmentation(self, job):
        """Main thread: the finished job's labelmap as a segmentation node (new unless the job was started
        with an output node), and its saliency map as a heat volume when it explained; both filed under the
        volume the job started with. Raises the job's error (``CancelledError`` when cancelled)."""
        from RadAISegmentLib.slicer_jobs import finish_job
        return finish_job(job)["segmentation"]

    def explainSegmentation(self, volumeNode, modelId: str, seedRAS=None, opacity: float = 0.6, label=None,
                            threshold: float = 0.3, boxMm=None):
        """Grad-CAM saliency of ``modelId`` on ``volumeNode`` (computed in the worker process; waits) as a new
        heat-coloured volume node: slice foreground at ``opacity``, volume-rendered above ``threshold``.

        seedRAS: (R, A, S) mm point the crop is centred on (required by promptable lesion models).
        boxMm: edge of the region around the seed (mm), the one segmentation used (default: the card's).
        The input volume is not modified.
        """
        from RadAISegmentLib.slicer_jobs import finish_job, start_explanation
        job = start_explanation(volumeNode, modelId, seedRAS, label, boxMm, opacity, threshold)
        job.wait()
        return finish_job(job)["saliency"]

    @staticmethod
    def shutdownWorker() -> None:
        """Stop the worker process (module cleanup); the next job starts a new one."""
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

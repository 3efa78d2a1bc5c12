"""RadAIVolumetrics: measurements, cardiac function, longitudinal response and local validation (3D Slicer module).

Wizard layout: Module, parameter node (``parameterNodeWrapper``), Widget, Logic, Test.
The Widget binds RadAIVolumetrics.ui; the Logic converts nodes with the MRML bridges and
calls ``RadAIVolumetricsLib`` (engine, no Slicer imports), so it runs headless.
"""
from __future__ import annotations

import json
import os
from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from RadAIVolumetricsLib.module_logic import CardiacMethods, LongitudinalMethods


class RadAIVolumetrics(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "RadAI Volumetrics"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["RadAI developers"]
        self.parent.helpText = (
            "Volumes, IBSI shape features (PyRadiomics conventions), RECIST axes and intensity statistics per "
            "segment; ejection fraction from ED/ES or a sequence; lesion tracking with RECIST 1.1 and volumetric "
            "response; validation of a model against reference segmentations.")
        self.parent.acknowledgementText = "Built on 3D Slicer, SimpleITK, scikit-image and MONAI."


@parameterNodeWrapper
class RadAIVolumetricsParameterNode:
    """Module state.

    segmentation / intensityVolume: what the Measurements tab measures.
    outputTable: table node receiving the measures (created when empty).
    drawRecistAxes: add RECIST long/short axes as line markups.
    edSegmentation / esSegmentation: the Cardiac tab's ED/ES pair.
    cardiacSequence: or a Sequences node of segmentations over the cycle (EF + volume curve).
    bloodPoolLabel / myocardiumLabel: segment names (or ids) for EF and mass.
    heartRateBpm: for cardiac output (0 = not given; a cine's DICOM heart rate is used then).
    cineSequence / cineModelId / precision: the cine MRI -> EF in one step (a Sequences node of volumes, an
        installed ventricular model, network precision auto|fp32|bf16).
    referenceSegmentation: the Validation tab's reference (segmentation = prediction).
    secondSegmentation: optional second model's or reader's segmentation, compared with both.
    toleranceMm: surface Dice tolerance.
    timepointsJson: the Longitudinal tab's timepoints, ``[{"volume": node id, "segmentation": node id,
        "date": "YYYY-MM-DD"}, ...]`` (kept in the scene so the list survives leaving the module).
    """

    segmentation: vtkMRMLSegmentationNode
    intensityVolume: vtkMRMLScalarVolumeNode
    outputTable: vtkMRMLTableNode
    drawRecistAxes: bool = False
    edSegmentation: vtkMRMLSegmentationNode
    esSegmentation: vtkMRMLSegmentationNode
    cardiacSequence: vtkMRMLSequenceNode
    bloodPoolLabel: str = "LV blood pool"
    myocardiumLabel: str = ""
    heartRateBpm: Annotated[float, WithinRange(0.0, 300.0)] = 0.0
    cineSequence: vtkMRMLSequenceNode
    cineModelId: str = "ventricular_short_axis_3label"
    precision: Annotated[str, Choice(("auto", "fp32", "bf16"))] = "auto"
    referenceSegmentation: vtkMRMLSegmentationNode
    secondSegmentation: vtkMRMLSegmentationNode
    toleranceMm: Annotated[float, WithinRange(0.0, 20.0)] = 1.0
    timepointsJson: str = "[]"


class RadAIVolumetricsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds RadAIVolumetrics.ui to the parameter node and the Logic; no computation here. The cine EF runs in
    RadAI's worker process, polled by a timer (the GUI never waits); Cancel and unloading stop it."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cineJob = None
        self._cineTimer = None

    def setup(self) -> None:
        import qt
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadAIVolumetrics.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RadAIVolumetricsLogic()
        for button, slot in ((self.ui.measureButton, self.onMeasure), (self.ui.exportCsvButton, self.onExportCsv),
                             (self.ui.copyButton, self.onCopy), (self.ui.efButton, self.onEjectionFraction),
                             (self.ui.validateButton, self.onValidate),
                             (self.ui.efSequenceButton, self.onEjectionFractionSequence),
                             (self.ui.addTimepointButton, self.onAddTimepoint),
                             (self.ui.removeTimepointButton, self.onRemoveTimepoint),
                             (self.ui.compareButton, self.onCompare), (self.ui.efCineButton, self.onEjectionFractionCine),
                             (self.ui.cineCancelButton, self.onCancelCine)):
            button.connect("clicked(bool)", slot)
        self._cineTimer = qt.QTimer()
        self._cineTimer.setInterval(100)
        self._cineTimer.connect("timeout()", self.onPollCine)
        self.ui.cineModelComboBox.addItems(self.logic.cineModelIds())
        self.ui.cineModelComboBox.connect("currentTextChanged(QString)", self.onCineModelChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent,
                         lambda caller, event: self.setParameterNode(self.logic.getParameterNode()))
        self.setParameterNode(self.logic.getParameterNode())
        self._updateCineButtons()

    def onSceneStartClose(self, caller=None, event=None) -> None:
        """Scene closing or module unloaded: a running cine job is cancelled (its worker stopped); the (reset)
        parameter node is bound again when the scene has closed."""
        self._cineTimer.stop()
        if self._cineJob is not None:
            self._cineJob.cancel()
            self._cineJob = None
            self._updateCineButtons()
            self.ui.efResultLabel.text = "Cancelled: the scene was closed."
        self.setParameterNode(None)

    def cleanup(self) -> None:
        self.onSceneStartClose()
        self.removeObservers()

    def _run(self, message: str, action, label=None) -> None:
        """Install the module's requirements on first use, then ``action``; an error is shown (and written in
        ``label`` when given), never raised."""
        try:
            with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
                self.logic.ensureDependencies()
                action()
        except Exception as error:  # shown to the user by tryWithErrorDisplay
            if label is not None:
                label.text = f"{message} {error}"

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._showTimepoints()
            if self._parameterNode.cineModelId:            # the model kept in the scene (the combo box is not bound)
                self.ui.cineModelComboBox.currentText = self._parameterNode.cineModelId
            self.onCineModelChanged(self.ui.cineModelComboBox.currentText)      # what the combo box can show

    def onMeasure(self) -> None:
        p = self._parameterNode
        self._run("Measurement failed.", lambda: setattr(p, "outputTable", self.logic.measure(
            p.segmentation, p.intensityVolume, p.outputTable, p.drawRecistAxes)))

    def onExportCsv(self) -> None:
        import qt
        path = qt.QFileDialog.getSaveFileName(None, "Export measurements", "", "CSV (*.csv)")
        if path:
            with slicer.util.tryWithErrorDisplay("Export failed."):
                self.logic.exportTableCsv(self._parameterNode.outputTable, path)

    def onCopy(self) -> None:
        import qt
        qt.QApplication.clipboard().setText(self.logic.tableAsText(self._parameterNode.outputTable))

    def onEjectionFraction(self) -> None:
        def run():
            p = self._parameterNode
            result = self.logic.ejectionFraction(p.edSegmentation, p.esSegmentation, p.bloodPoolLabel,
                                                 p.myocardiumLabel or None, p.heartRateBpm or None)
            self.ui.efResultLabel.text = self.logic.ejectionFractionText(result)
        self._run("Ejection fraction failed.", run)

    def onEjectionFractionSequence(self) -> None:
        self._run("Ejection fraction failed.", self._efSequence)

    def _efSequence(self) -> None:
        p = self._parameterNode
        result = self.logic.ejectionFractionFromSequence(p.cardiacSequence, p.bloodPoolLabel,
                                                         p.myocardiumLabel or None, p.heartRateBpm or None)
        self.ui.efResultLabel.text = self.logic.ejectionFractionText(result)
        slicer.modules.plots.logic().ShowChartInLayout(result["chart"])

    # -- Cardiac tab, cine: the model on every phase in the worker process ----------------------------
    def onCineModelChanged(self, modelId: str) -> None:
        if self._parameterNode and modelId and self._parameterNode.cineModelId != modelId:
            self._parameterNode.cineModelId = modelId

    def _updateCineButtons(self) -> None:
        self.ui.efCineButton.enabled = self._cineJob is None
        self.ui.cineCancelButton.enabled = self._cineJob is not None

    def onEjectionFractionCine(self) -> None:
        def start():
            p = self._parameterNode
            self.logic.ensureSegmentationDependencies()
            self._cineJob = self.logic.startCineEjectionFraction(p.cineSequence, self.ui.cineModelComboBox.currentText,
                                                                 p.heartRateBpm or None, "auto", p.precision)
            self.ui.cineProgressBar.value = 0
            self.ui.efResultLabel.text = self._cineJob.statusText()
            self._cineTimer.start()
        self._run("The cine EF could not start.", start, self.ui.efResultLabel)
        self._updateCineButtons()

    def onCancelCine(self) -> None:
        if self._cineJob is not None:
            self._cineJob.cancel()
            self.onPollCine()

    def onPollCine(self) -> None:
        job = self._cineJob
        if job is None:
            self._cineTimer.stop()
            return
        done = job.poll()
        self.ui.cineProgressBar.value = int(100 * job.fraction)
        self.ui.efResultLabel.text = job.statusText()
        if not done:
            return
        self._cineTimer.stop()
        self._cineJob = None
        self._updateCineButtons()
        self._run("The cine EF failed; nothing was added to the scene.", lambda: self._finishCine(job),
                  self.ui.efResultLabel)

    def _finishCine(self, job) -> None:
        from RadAISegmentLib.errors import CancelledError
        try:
            result = self.logic.finishCineEjectionFraction(job)
        except CancelledError:
            self.ui.efResultLabel.text = "Cancelled; nothing was added to the scene."
            return
        self.ui.efResultLabel.text = self.logic.ejectionFractionText(result)
        if hasattr(slicer.modules, "plots"):
            slicer.modules.plots.logic().ShowChartInLayout(result["chart"])

    # -- Longitudinal tab: the timepoint list lives in the parameter node as JSON ------------------
    def _timepointEntries(self) -> list:
        return json.loads(self._parameterNode.timepointsJson or "[]")

    def _showTimepoints(self) -> None:
        import qt
        entries = self._timepointEntries()
        table = self.ui.timepointsTableWidget
        table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            for column, key in enumerate(("volume", "segmentation")):
                node = slicer.mrmlScene.GetNodeByID(entry[key])
                table.setItem(row, column, qt.QTableWidgetItem(node.GetName() if node else "(deleted)"))
            table.setItem(row, 2, qt.QTableWidgetItem(entry["date"]))

    def onAddTimepoint(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not add the timepoint."):
            volume = self.ui.timepointVolumeSelector.currentNode()
            segmentation = self.ui.timepointSegmentationSelector.currentNode()
            if not volume or not segmentation:
                raise ValueError("Select the timepoint's volume and its lesion segmentation first.")
            entries = self._timepointEntries() + [{"volume": volume.GetID(), "segmentation": segmentation.GetID(),
                                                   "date": self.ui.timepointDateEdit.date.toString("yyyy-MM-dd")}]
            self._parameterNode.timepointsJson = json.dumps(entries)
            self._showTimepoints()

    def onRemoveTimepoint(self) -> None:
        row = self.ui.timepointsTableWidget.currentRow()
        entries = self._timepointEntries()
        if 0 <= row < len(entries):
            del entries[row]
            self._parameterNode.timepointsJson = json.dumps(entries)
            self._showTimepoints()

    def onCompare(self) -> None:
        self._run("Longitudinal comparison failed.", self._compare)

    def _compare(self) -> None:
        entries = self._timepointEntries()
        nodes = [(slicer.mrmlScene.GetNodeByID(e["volume"]), slicer.mrmlScene.GetNodeByID(e["segmentation"]))
                 for e in entries]
        outputs = self.logic.trackLesions([v for v, _ in nodes], [s for _, s in nodes],
                                          [e["date"] for e in entries])
        self.ui.longitudinalResultLabel.text = self.logic.comparisonText(outputs["result"])
        slicer.modules.plots.logic().ShowChartInLayout(outputs["chart"])
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetActiveTableID(outputs["table"].GetID())
        slicer.app.applicationLogic().PropagateTableSelection()

    def onValidate(self) -> None:
        self._run("Validation failed.", self._validate)

    def _validate(self) -> None:
        p = self._parameterNode
        rows = self.logic.validate(p.segmentation, p.referenceSegmentation, p.toleranceMm,
                                   p.secondSegmentation)
        from RadAIVolumetricsLib.validation.outputs import case_rows_text
        self.ui.validationResultLabel.text = case_rows_text(rows)


class RadAIVolumetricsLogic(ScriptedLoadableModuleLogic, CardiacMethods, LongitudinalMethods):
    """Measurements on MRML nodes; every method runs headless (tested with the headless Slicer core). The Cardiac
    and Longitudinal tabs' methods are the groups in ``RadAIVolumetricsLib.module_logic``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return RadAIVolumetricsParameterNode(super().getParameterNode())

    def ensureDependencies(self) -> None:
        """Install this module's requirements into Slicer's Python on first use (never at import time)."""
        from RadAISegmentLib.dependencies import ensure_requirements
        ensure_requirements(os.path.join(os.path.dirname(__file__), "Resources", "RadAIVolumetrics-requirements.txt"),
                            "RadAI Volumetrics")

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _labelmap(segmentationNode, referenceVolumeNode=None):
        """Engine labelmap of a segmentation node, on the reference volume's grid when given."""
        from RadAISegmentLib.mrml import image_from_volume_node, labelmap_from_segmentation_node
        reference = image_from_volume_node(referenceVolumeNode) if referenceVolumeNode else None
        return labelmap_from_segmentation_node(segmentationNode, reference)

    # -- Measurements tab --------------------------------------------------------------------
    def measure(self, segmentationNode, intensityVolumeNode=None, tableNode=None, drawRecistAxes=False):
        """Measure every segment into a table node (columns carry name and unit; intensity statistics in HU for
        CT when an intensity volume is given), RECIST axes as line markups on request; returns the table node."""
        from RadAISegmentLib.mrml import image_from_volume_node
        from RadAIVolumetricsLib.scene_results import measurement_table
        labelmap = self._labelmap(segmentationNode, intensityVolumeNode)
        image = image_from_volume_node(intensityVolumeNode) if intensityVolumeNode else None
        return measurement_table(labelmap, image, f"{segmentationNode.GetName()} measurements", tableNode,
                                 drawRecistAxes)

    def exportTableCsv(self, tableNode, path: str) -> str:
        """Write the table as CSV (header = column names, units in their suffix), atomically; returns ``path``."""
        from RadAISegmentLib.atomic import write_text_atomic
        write_text_atomic(path, self.tableAsText(tableNode, separator=","))
        return path

    @staticmethod
    def tableAsText(tableNode, separator: str = "\t") -> str:
        """The table as delimited text (quoted where a value holds the separator, e.g. "kidney, left")."""
        from RadAIVolumetricsLib.mrml import table_as_text
        return table_as_text(tableNode, separator)

    # -- Validation tab -------------------------------------------------------------------------
    def validate(self, predictedSegmentationNode, referenceSegmentationNode, toleranceMm: float = 1.0,
                 secondSegmentationNode=None) -> list[dict]:
        """One row per reference segment, as in ``radai evaluate``'s per-study CSV (Dice, IoU, HD95, ASSD, NSD,
        volumes, lesion detection; with a second model's or reader's segmentation also ``dice_b``,
        ``volume_b_ml`` and ``dice_a_vs_b``), all on the reference grid."""
        from RadAISegmentLib.errors import InputError
        from RadAIVolumetricsLib.validation.evaluate import StudyResult, evaluate_labelmaps
        from RadAIVolumetricsLib.validation.outputs import per_study_rows
        if predictedSegmentationNode is None or referenceSegmentationNode is None:
            raise InputError("Select the segmentation to validate and its reference segmentation.")
        reference = self._labelmap(referenceSegmentationNode)
        compared = []
        for node, what in ((predictedSegmentationNode, "prediction"), (secondSegmentationNode, "second segmentation")):
            labelmap = self._labelmap(node) if node is not None else None
            if labelmap is not None:
                reference.require_same_grid(labelmap, what=what)
            compared.append(labelmap)
        result = StudyResult(referenceSegmentationNode.GetName(), "", None)
        return per_study_rows([evaluate_labelmaps(result, reference, *compared, tolerance_mm=toleranceMm)])


class RadAIVolumetricsTest(ScriptedLoadableModuleTest):
    """Runs inside a real Slicer on the bundled sample data (no GPU, no network)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        for test in (self.test_measure_sample, self.test_track_phantom_lesions):
            self.setUp()
            test()

    def test_measure_sample(self):
        from RadAISegmentLib.io import read_image
        from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
        from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case
        case = sample_case("abdomen-ct")
        volume = volume_node_from_image(read_image(case["image"]), "abdomen")
        segmentation = segmentation_node_from_labelmap(load_sample_labelmap("abdomen-ct"), "organs", volume)
        table = RadAIVolumetricsLogic().measure(segmentation, volume)
        self.assertGreater(table.GetNumberOfRows(), 0)
        self.delayDisplay("RadAIVolumetrics measurement test passed")

    def test_track_phantom_lesions(self):
        """Baseline and follow-up phantom (known motion, growth and a new lesion): PD, colours shared."""
        from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
        from RadAISegmentLib.phantoms import followup_pair_phantom
        base_ct, base_labels, follow_ct, follow_labels, _ = followup_pair_phantom()
        volumes, segmentations = [], []
        for ct, labels, name in ((base_ct, base_labels, "baseline"), (follow_ct, follow_labels, "follow-up")):
            lesions = labels.with_array((labels.array == max(labels.label_values())).astype("uint8"))
            volumes.append(volume_node_from_image(ct, name))
            segmentations.append(segmentation_node_from_labelmap(lesions, f"{name} lesions", volumes[-1]))
        outputs = RadAIVolumetricsLogic().trackLesions(volumes, segmentations, ["2025-01-01", "2025-04-01"])
        self.assertEqual(outputs["result"].to_json()["recist_response"], "PD")
        colours = [{s.GetName(): s.GetColor() for s in map(node.GetSegmentation().GetNthSegment,
                                                           range(node.GetSegmentation().GetNumberOfSegments()))}
                   for node in outputs["segmentations"]]
        for name, colour in colours[0].items():
            self.assertEqual(colours[1][name], colour)
        self.delayDisplay("RadAIVolumetrics longitudinal test passed")

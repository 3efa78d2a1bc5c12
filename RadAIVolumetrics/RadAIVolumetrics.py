"""RadAIVolumetrics: measurements, cardiac function, longitudinal response and local validation (3D Slicer module).

Wizard layout: Module, parameter node (``parameterNodeWrapper``), Widget, Logic, Test.
The Widget binds RadAIVolumetrics.ui; the Logic converts nodes with the MRML bridges and
calls ``RadAIVolumetricsLib`` (engine, no Slicer imports), so it runs headless.
"""
from __future__ import annotations

import datetime as dt
import os

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:
    from typing import Annotated
except ImportError:
    from typing_extensions import Annotated


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
    bloodPoolLabel / myocardiumLabel: segment names (or ids) for EF and mass.
    heartRateBpm: for cardiac output (0 = not given).
    referenceSegmentation: the Validation tab's reference (segmentation = prediction).
    toleranceMm: surface Dice tolerance.
    """

    segmentation: vtkMRMLSegmentationNode
    intensityVolume: vtkMRMLScalarVolumeNode
    outputTable: vtkMRMLTableNode
    drawRecistAxes: bool = False
    edSegmentation: vtkMRMLSegmentationNode
    esSegmentation: vtkMRMLSegmentationNode
    bloodPoolLabel: str = "LV blood pool"
    myocardiumLabel: str = ""
    heartRateBpm: Annotated[float, WithinRange(0.0, 300.0)] = 0.0
    referenceSegmentation: vtkMRMLSegmentationNode
    toleranceMm: Annotated[float, WithinRange(0.0, 20.0)] = 1.0


class RadAIVolumetricsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds RadAIVolumetrics.ui to the parameter node and the Logic; no computation here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadAIVolumetrics.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RadAIVolumetricsLogic()
        self.ui.measureButton.connect("clicked(bool)", self.onMeasure)
        self.ui.exportCsvButton.connect("clicked(bool)", self.onExportCsv)
        self.ui.copyButton.connect("clicked(bool)", self.onCopy)
        self.ui.efButton.connect("clicked(bool)", self.onEjectionFraction)
        self.ui.validateButton.connect("clicked(bool)", self.onValidate)
        self.setParameterNode(self.logic.getParameterNode())

    def cleanup(self) -> None:
        self.removeObservers()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onMeasure(self) -> None:
        with slicer.util.tryWithErrorDisplay("Measurement failed.", waitCursor=True):
            p = self._parameterNode
            p.outputTable = self.logic.measure(p.segmentation, p.intensityVolume, p.outputTable, p.drawRecistAxes)

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
        with slicer.util.tryWithErrorDisplay("Ejection fraction failed.", waitCursor=True):
            p = self._parameterNode
            result = self.logic.ejectionFraction(p.edSegmentation, p.esSegmentation, p.bloodPoolLabel,
                                                 p.myocardiumLabel or None, p.heartRateBpm or None)
            self.ui.efResultLabel.text = self.logic.ejectionFractionText(result)

    def onValidate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Validation failed.", waitCursor=True):
            p = self._parameterNode
            rows = self.logic.validate(p.segmentation, p.referenceSegmentation, p.toleranceMm)
            self.ui.validationResultLabel.text = "\n".join(
                f"{row['label']}: Dice {row['dice']:.3f}, HD95 {row['hd95_mm'] if row['hd95_mm'] is not None else '—'} mm"
                for row in rows)


class RadAIVolumetricsLogic(ScriptedLoadableModuleLogic):
    """Measurements on MRML nodes; every method runs headless (tested with the headless Slicer core)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return RadAIVolumetricsParameterNode(super().getParameterNode())

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _labelmap(segmentationNode, referenceVolumeNode=None):
        """Engine labelmap of a segmentation node, on the reference volume's grid when given."""
        from RadAISegmentLib.mrml import image_from_volume_node, labelmap_from_segmentation_node
        reference = image_from_volume_node(referenceVolumeNode) if referenceVolumeNode else None
        return labelmap_from_segmentation_node(segmentationNode, reference)

    # -- Measurements tab --------------------------------------------------------------------
    def measure(self, segmentationNode, intensityVolumeNode=None, tableNode=None, drawRecistAxes=False):
        """Measure every segment into a table node (columns carry name and unit); returns the table node."""
        from RadAISegmentLib.mrml import image_from_volume_node
        from RadAIVolumetricsLib.measurements import MEASURES, measure_segments
        from RadAIVolumetricsLib.mrml import line_markup, table_node_from_rows
        labelmap = self._labelmap(segmentationNode, intensityVolumeNode)
        image = image_from_volume_node(intensityVolumeNode) if intensityVolumeNode else None
        rows = measure_segments(labelmap, image)
        columns = [("name", "")] + [(info.key, info.unit) for info in MEASURES if info.key != "name"]
        flat = [{key: row.get(key) for key, _ in columns} for row in rows]
        table = table_node_from_rows(flat, columns, f"{segmentationNode.GetName()} measurements", existing_node=tableNode)
        if drawRecistAxes:
            for row in rows:
                axes = row.get("recist_long_axis_endpoints_ras")
                if axes:
                    line_markup(axes[0], axes[1], f"{row['name']} RECIST long axis")
                short = row.get("recist_short_axis_endpoints_ras")
                if short:
                    line_markup(short[0], short[1], f"{row['name']} RECIST short axis")
        return table

    def exportTableCsv(self, tableNode, path: str) -> str:
        """Write the table as CSV (header = column names, units in their suffix), atomically; returns ``path``."""
        from RadAISegmentLib.atomic import write_text_atomic
        write_text_atomic(path, self.tableAsText(tableNode, separator=","))
        return path

    @staticmethod
    def tableAsText(tableNode, separator: str = "\t") -> str:
        """The table as delimited text (quoted where a value holds the separator, e.g. "kidney, left")."""
        import csv
        import io
        table = tableNode.GetTable()
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=separator, lineterminator="\n")
        writer.writerow([table.GetColumnName(c) for c in range(table.GetNumberOfColumns())])
        for r in range(table.GetNumberOfRows()):
            writer.writerow([table.GetValue(r, c).ToString() for c in range(table.GetNumberOfColumns())])
        return buffer.getvalue()

    # -- Cardiac tab ----------------------------------------------------------------------------
    def ejectionFraction(self, edSegmentationNode, esSegmentationNode, bloodPoolLabel="LV blood pool",
                         myocardiumLabel=None, heartRateBpm=None) -> dict:
        """EDV, ESV, SV, EF (and mass, cardiac output) from an ED/ES pair of segmentation nodes."""
        from RadAIVolumetricsLib.cardiac import ejection_fraction_from_pair
        return ejection_fraction_from_pair(self._labelmap(edSegmentationNode), self._labelmap(esSegmentationNode),
                                           label=bloodPoolLabel, myocardium=myocardiumLabel,
                                           heart_rate_bpm=heartRateBpm)

    @staticmethod
    def ejectionFractionText(result: dict) -> str:
        text = (f"EDV {result['edv_ml']:.1f} mL, ESV {result['esv_ml']:.1f} mL, SV {result['stroke_volume_ml']:.1f} mL, "
                f"EF {result['ejection_fraction_percent']:.1f} %")
        if result.get("myocardial_mass_g") is not None:
            text += f", LV mass {result['myocardial_mass_g']:.0f} g"
        if result.get("cardiac_output_l_min") is not None:
            text += f", CO {result['cardiac_output_l_min']:.2f} L/min"
        return text

    # -- Longitudinal tab -----------------------------------------------------------------------
    def compareTimepoints(self, volumeNodes, segmentationNodes, dates):
        """Register, match and classify response over timepoints (first = baseline); returns the result."""
        from RadAISegmentLib.mrml import image_from_volume_node
        from RadAIVolumetricsLib.longitudinal.compare import compare_timepoints
        from RadAIVolumetricsLib.longitudinal.timepoint import Timepoint
        timepoints = []
        for index, (volume, segmentation, date) in enumerate(zip(volumeNodes, segmentationNodes, dates)):
            when = dt.date.fromisoformat(date) if isinstance(date, str) else date
            timepoints.append(Timepoint(image_from_volume_node(volume), self._labelmap(segmentation, volume),
                                        when, volume.GetName()))
        return compare_timepoints(timepoints)

    # -- Validation tab -------------------------------------------------------------------------
    def validate(self, predictedSegmentationNode, referenceSegmentationNode, toleranceMm: float = 1.0) -> list[dict]:
        """Dice, HD95, NSD and volume error per reference segment, on the reference grid."""
        from RadAIVolumetricsLib.validation.metrics import overlap_metrics
        reference = self._labelmap(referenceSegmentationNode)
        predicted = self._labelmap(predictedSegmentationNode)
        reference.require_same_grid(predicted, what="prediction")
        names = {info.name: info.label for info in predicted.segments}
        rows = []
        for label in reference.label_values():
            name = reference.segment_for(label).name
            predicted_label = names.get(name, label)
            metrics = overlap_metrics(predicted.array == predicted_label, reference.array == label,
                                      reference.spacing_mm, toleranceMm)
            rows.append({"label": name, **metrics.as_dict()})
        return rows


class RadAIVolumetricsTest(ScriptedLoadableModuleTest):
    """Runs inside a real Slicer on the bundled sample data (no GPU, no network)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_measure_sample()

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

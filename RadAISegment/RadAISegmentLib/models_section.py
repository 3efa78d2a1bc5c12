"""The Models section of the RadAI Segment panel (module layer: ``qt`` and ``slicer.util``, like the Widget).

Shows RadAI's model catalogue (installed or not, size, licence, speed), downloads the selected model in a
worker process of its own with progress and Cancel (the GUI never waits: a timer polls the job), installs a
zip or folder fetched by hand (a published archive is verified against its catalogue entry), and removes
installed models. The Widget owns it; the Logic does the work (``startModelInstall``, ``installModel`` ...).
"""
from __future__ import annotations

from typing import Callable

import slicer

COLUMNS = ("Model", "Installed", "Size", "Licence")


def size_text(size_mb: float) -> str:
    """``~36 MB`` / ``~1.2 GB`` (download size)."""
    return f"~{size_mb / 1000:.1f} GB" if size_mb >= 1000 else f"~{size_mb:.0f} MB"


def installed_text(row: dict) -> str:
    """``yes`` / ``no`` / ``update to 2.0`` / ``resume (12 MB)`` for a catalogue row (``AvailableModel.as_dict``)."""
    if row["update_available"]:
        return f"update to {row['version']}"
    if row["installed"]:
        return "yes"
    if row.get("partial_mb", 0) > 0:
        return f"resume ({row['partial_mb']:.0f} MB)"
    return "no"


def row_texts(row: dict) -> list[str]:
    """The table's cells for one catalogue row, in :data:`COLUMNS` order."""
    return [row["title"], installed_text(row), size_text(row["size_mb"]), row["licence"]]


def row_tooltip(row: dict) -> str:
    """What a row's tooltip says: id, version, modality and the speed hint."""
    return f"{row['id']} {row['version']} ({', '.join(row['modality'])}): {row['speed_hint']}"


class ModelsSection:
    """Binds the Model combo box (filled from the model cache, kept out of the parameter node's bindings: the
    code fills it) and the Models section's widgets to the Logic. ``parameter_node()`` returns the module's
    parameter node (or None); ``try_and_show(message, action)`` runs ``action`` showing any error."""

    def __init__(self, ui, logic, parameter_node: Callable, try_and_show: Callable[[str, Callable], bool]) -> None:
        import qt
        self.ui, self.logic, self.parameter_node, self.try_and_show = ui, logic, parameter_node, try_and_show
        self.rows: list[dict] = []
        self.job = None
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChanged)
        self.select_model()
        self.ui.modelCacheLabel.text = self.logic.modelCacheFolder()
        self.ui.installModelButton.connect("clicked(bool)", self.onInstallFile)
        self.ui.removeModelButton.connect("clicked(bool)", self.onRemove)
        self.ui.installSelectedButton.connect("clicked(bool)", self.onInstallSelected)
        self.ui.cancelInstallButton.connect("clicked(bool)", self.onCancel)
        self.ui.catalogueTable.connect("itemSelectionChanged()", self.updateButtons)
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)
        self.fillTable()

    def select_model(self, select: str = "") -> None:
        """Refill the Model combo box with the shipped and installed models; select ``select`` in it."""
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItems(self.logic.availableModelIds())
        if select:
            self.ui.modelComboBox.currentText = select
        self.onModelChanged(self.ui.modelComboBox.currentText)

    def showModel(self, modelId: str) -> None:
        """The parameter node's model shown in the combo box."""
        if self.ui.modelComboBox.currentText != modelId:
            self.ui.modelComboBox.currentText = modelId

    def onModelChanged(self, modelId: str) -> None:
        node = self.parameter_node()
        if node and modelId and node.modelId != modelId:
            node.modelId = modelId
        try:
            self.ui.modelCardLabel.text = self.logic.modelCardSummary(modelId) if modelId else ""
        except Exception as error:  # noqa: BLE001 - a missing or broken card is shown, the module stays usable
            self.ui.modelCardLabel.text = f"Cannot read the model card: {error}"

    def fillTable(self) -> None:
        """One row per catalogue entry (an unreadable catalogue is shown, not raised)."""
        import qt
        table = self.ui.catalogueTable
        try:
            self.rows = self.logic.catalogueRows()
        except Exception as error:  # noqa: BLE001 - shown in the panel, the module stays usable
            self.rows = []
            self.ui.installStatusLabel.text = f"The model catalogue could not be read: {error}"
        table.setRowCount(len(self.rows))
        for number, row in enumerate(self.rows):
            for column, text in enumerate(row_texts(row)):
                item = qt.QTableWidgetItem(text)
                item.setToolTip(row_tooltip(row))
                table.setItem(number, column, item)
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, qt.QHeaderView.Stretch)          # the title takes what is left
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, qt.QHeaderView.ResizeToContents)
        self.updateButtons()

    def selectedRow(self):
        number = self.ui.catalogueTable.currentRow()
        return self.rows[number] if 0 <= number < len(self.rows) else None

    def updateButtons(self) -> None:
        """Download offered for the selected row (Reinstall when it is installed and current); an installed
        model's row also selects it in the Model combo box."""
        row, running = self.selectedRow(), self.job is not None
        self.ui.installSelectedButton.enabled = row is not None and not running
        self.ui.installSelectedButton.text = ("Reinstall" if row and row["installed"] and not row["update_available"]
                                              else "Download and install")
        self.ui.cancelInstallButton.enabled = running
        self.ui.installProgressBar.visible = running or self.ui.installProgressBar.value > 0
        if row is not None and row["installed"] and not running:
            self.select_model(row["id"])

    def onInstallSelected(self) -> None:
        row = self.selectedRow()
        if row is not None:
            self._start(row["id"], reinstall=row["installed"] and not row["update_available"])

    def _start(self, model_id: str, reinstall: bool = False, files: tuple = ()) -> None:
        def start():
            self.job = self.logic.startModelInstall(model_id, files=files, reinstall=reinstall)
            self.ui.installProgressBar.value = 0
            self.ui.installStatusLabel.text = self.job.statusText()
            self.timer.start()
        self.try_and_show(f"The download of {model_id} could not start.", start)
        self.updateButtons()

    def onCancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.ui.installStatusLabel.text = self.job.statusText()

    def onPoll(self) -> None:
        job = self.job
        if job is None:
            self.timer.stop()
            return
        done = job.poll()
        self.ui.installProgressBar.value = int(100 * job.fraction)
        self.ui.installStatusLabel.text = job.statusText()
        if not done:
            return
        self.timer.stop()
        self.job = None
        from .errors import CancelledError

        def finish():
            try:
                report = job.result()
            except CancelledError:
                self.ui.installStatusLabel.text = f"Download of {job.model_id} cancelled; nothing was installed."
                return
            except Exception as error:
                self.ui.installStatusLabel.text = f"Nothing was installed: {error}"
                raise
            notes = " ".join(report.get("notes") or [])
            self.ui.installStatusLabel.text = f"Installed {report['model_id']} {report.get('version', '')}. {notes}"
            self.select_model(report["model_id"])
        self.try_and_show(f"The download of {job.model_id} failed; nothing was installed.", finish)
        self.fillTable()

    def onInstallFile(self) -> None:
        """A zip or folder fetched by hand: a published archive installs as its catalogue model (verified,
        coded labels) in the download worker; anything else offline through the model cache."""
        import qt
        path = qt.QFileDialog.getOpenFileName(None, "Install a model (zip)", "", "Model archive (*.zip)")
        if not path:
            path = qt.QFileDialog.getExistingDirectory(None, "Or install a model folder")
        if not path:
            return
        ids = self.logic.catalogueIdsForFile(path)
        if ids:
            self._start(ids[0], files=(path,))
            return
        self.try_and_show("Model installation failed; nothing was installed.",
                          lambda: self.select_model(self.logic.installModel(path)))
        self.fillTable()

    def onRemove(self) -> None:
        modelId = self.ui.modelComboBox.currentText
        if modelId and slicer.util.confirmYesNoDisplay(f"Remove model '{modelId}' from {self.logic.modelCacheFolder()}?"):
            self.try_and_show("Model removal failed.", lambda: (self.logic.removeModel(modelId), self.select_model("")))
            self.fillTable()

    def stop(self) -> None:
        """Module unloaded: stop the timer and cancel a running download."""
        self.timer.stop()
        if self.job is not None:
            self.job.cancel()           # cooperative; the worker then exits with the others (shutdownWorker)
            self.job = None

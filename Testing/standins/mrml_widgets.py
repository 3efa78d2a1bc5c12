"""Stand-ins for Slicer's MRML widgets (``slicer.qMRMLWidget``, ``slicer.qMRMLNodeComboBox``) on
PySide6, bound to the headless MRML scene. Test-only; never shipped.

``qMRMLNodeComboBox`` behaves as Slicer's for what RadAI relies on: it lists the scene's nodes of its
``nodeTypes`` (not hidden from editors), follows nodes being added and removed, offers "None" when
``noneEnabled``, otherwise selects the first node by itself, and emits
``currentNodeChanged(vtkMRMLNode*)`` whenever the current node changes (by the user, by code, or
because the node was removed).
"""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

import pythonqt
import qt


class qMRMLWidget(pythonqt.PythonQtObject, QtWidgets.QWidget):  # noqa: N801 - Slicer's name
    mrmlSceneChanged = QtCore.Signal(object)
    _pythonqt_signals = {"mrmlSceneChanged(vtkMRMLScene*)": "mrmlSceneChanged(PyObject)"}
    _pythonqt_slots = {"setMRMLScene(vtkMRMLScene*)"}

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def mrmlScene(self):  # noqa: N802 - Slicer's name
        return self._scene

    def setMRMLScene(self, scene) -> None:  # noqa: N802 - Slicer's name
        if scene is self._scene:
            return
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)


class qMRMLNodeComboBox(pythonqt.PythonQtObject, QtWidgets.QWidget):  # noqa: N801 - Slicer's name
    currentNodeChanged = QtCore.Signal(object)
    currentNodeIDChanged = QtCore.Signal(str)
    _pythonqt_signals = {"currentNodeChanged(vtkMRMLNode*)": "currentNodeChanged(PyObject)",
                         "currentNodeIDChanged(QString)": "currentNodeIDChanged(QString)"}
    _pythonqt_slots = {"setMRMLScene(vtkMRMLScene*)", "setCurrentNode(vtkMRMLNode*)", "setCurrentNodeID(QString)"}

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene, self._observations, self._types = None, [], []
        self._none, self._add, self._remove, self._hidden = False, True, True, False
        self._current = None
        self._nodes: list = []
        self._combo = QtWidgets.QComboBox(self)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._combo)
        self._combo.activated.connect(self._on_user_choice)

    # -- properties the .ui files and Slicer's connectors set ------------------------------------
    def _set_types(self, types) -> None:
        self._types = [str(t) for t in types]
        self._refresh()

    def _set_none(self, enabled: bool) -> None:
        self._none = bool(enabled)
        self._refresh()

    def _set_hidden(self, shown: bool) -> None:
        self._hidden = bool(shown)
        self._refresh()

    nodeTypes = QtCore.Property("QStringList", lambda self: list(self._types), _set_types)
    noneEnabled = QtCore.Property(bool, lambda self: self._none, _set_none)
    addEnabled = QtCore.Property(bool, lambda self: self._add, lambda self, v: setattr(self, "_add", bool(v)))
    removeEnabled = QtCore.Property(bool, lambda self: self._remove, lambda self, v: setattr(self, "_remove", bool(v)))
    showHidden = QtCore.Property(bool, lambda self: self._hidden, _set_hidden)
    currentNodeID = QtCore.Property(str, lambda self: self._current.GetID() if self._current else "",
                                    lambda self, node_id: self.setCurrentNodeID(node_id))

    # -- scene ---------------------------------------------------------------------------------
    def mrmlScene(self):  # noqa: N802 - Slicer's name
        return self._scene

    def setMRMLScene(self, scene) -> None:  # noqa: N802 - Slicer's name
        """Like Slicer's: the node requested before the scene was set (or none) is current afterwards;
        nodes already in the scene are listed but not selected by themselves."""
        if scene is self._scene:
            return
        for observed, tag in self._observations:
            observed.RemoveObserver(tag)
        self._observations = []
        self._scene = scene
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent, scene.EndImportEvent):
                self._observations.append((scene, scene.AddObserver(event, lambda caller, event: self._refresh())))
        self._refresh(populating=True)

    def _listed(self) -> list:
        scene = self._scene
        if scene is None:
            return []
        nodes = []
        for index in range(scene.GetNumberOfNodes()):
            node = scene.GetNthNode(index)
            if any(node.IsA(t) for t in self._types) and (self._hidden or not node.GetHideFromEditors()):
                nodes.append(node)
        return nodes

    def _refresh(self, populating: bool = False) -> None:
        """Rebuild the list. As Qt's combo box under Slicer's: a removed current node gives its row to the
        next item (the previous one when it was last; "None" counts as a row); the first node added to an
        empty list becomes current when there is no "None"."""
        before = self._nodes
        self._nodes = self._listed()
        rows_before = ([None] if self._none else []) + before
        rows_now = ([None] if self._none else []) + self._nodes
        current = self._current
        if current is not None and current not in self._nodes:
            row = rows_before.index(current) if current in rows_before else 0
            current = rows_now[min(row, len(rows_now) - 1)] if rows_now else None
        elif current is None and not populating and not self._none and not before and self._nodes:
            current = self._nodes[0]
        self._combo.blockSignals(True)
        self._combo.clear()
        for node in rows_now:
            self._combo.addItem("None" if node is None else node.GetName())
        self._combo.blockSignals(False)
        self._select(current)

    def _select(self, node) -> None:
        offset = 1 if self._none else 0
        self._combo.setCurrentIndex(self._nodes.index(node) + offset if node is not None else (0 if self._none else -1))
        if node is not self._current:
            self._current = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(node.GetID() if node is not None else "")

    def _on_user_choice(self, index: int) -> None:
        offset = 1 if self._none else 0
        self._select(self._nodes[index - offset] if index >= offset else None)

    # -- Slicer's API --------------------------------------------------------------------------
    def currentNode(self):  # noqa: N802 - Slicer's name
        return self._current

    def setCurrentNode(self, node) -> None:  # noqa: N802 - Slicer's name
        if node is not None and node not in self._listed():
            node = None  # Slicer finds no row for it: "None", or no selection
        self._select(node)

    def setCurrentNodeID(self, node_id: str) -> None:  # noqa: N802 - Slicer's name
        self.setCurrentNode(self._scene.GetNodeByID(node_id) if self._scene is not None and node_id else None)

    def nodeCount(self) -> int:  # noqa: N802 - Slicer's name
        return len(self._nodes)

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt override
        return QtCore.QSize(200, self._combo.sizeHint().height())


for _cls in (qMRMLWidget, qMRMLNodeComboBox):
    qt.CUSTOM_WIDGETS[_cls.__name__] = _cls

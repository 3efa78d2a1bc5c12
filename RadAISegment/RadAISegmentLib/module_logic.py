"""Method groups of RadAI Segment's Logic, mixed into ``RadAISegmentLogic`` (module file) so that it stays
small: each method is a thin call into the engine (``io``, ``models``, ``device``) or the MRML bridge
(``lesion_slicer``). Camel-case names, as Slicer Logic methods are called.

* :class:`VolumesAndModels`: load and describe volumes; installed models, the catalogue and downloads;
  the device; the module's Python requirements.
* :class:`LesionCorrections`: corrections of a lesion segmentation by clicks (one lesion re-run per click,
  in place), their undo, the lesions' volume lines, click lists and place mode. Needs ``self._corrections``
  (a ``lesion_slicer.CorrectionHistory``), set by the Logic's ``__init__``.
"""
from __future__ import annotations

import os


class VolumesAndModels:
    # -- geometry and I/O -------------------------------------------------------------------------
    def loadVolume(self, path: str, name: str | None = None):
        """Read a file or DICOM folder with the engine and add it to the scene as a volume node."""
        from .io import read_image
        from .mrml import volume_node_from_image
        image = read_image(path)
        return volume_node_from_image(image, name or os.path.basename(str(path)).split(".")[0])

    def geometrySummary(self, volumeNode) -> str:
        """Shape, spacing and origin of a volume node, in RAS as Slicer shows them."""
        from .image import geometry_summary
        from .mrml import image_from_volume_node
        if volumeNode.GetImageData() is None:    # selected while still loading
            return "No voxels loaded yet."
        return geometry_summary(image_from_volume_node(volumeNode))

    # -- models, devices and dependencies ------------------------------------------------------------
    def availableModelIds(self) -> list[str]:
        """Ids of the shipped and installed models (the Model combo box), ``lesion-roi`` first when present."""
        try:
            from .models.cache import list_models
        except ImportError:  # engine dependencies not installed yet
            return ["lesion-roi"]
        ids = sorted({card.id for card in list_models()})
        return sorted(ids, key=lambda model_id: model_id != "lesion-roi")

    @staticmethod
    def modelCacheFolder() -> str:
        """Where installed models live (``$RADAI_MODELS_DIR`` or the per-user cache), as a reader would type
        it: inside the home folder as ``~/...``."""
        import os
        from pathlib import Path
        from .models.cache import models_dir
        folder = models_dir()
        try:
            return os.path.join("~", str(folder.relative_to(Path.home())))
        except ValueError:
            return str(folder)

    @staticmethod
    def installModel(path: str) -> str:
        """Install a model zip or folder offline (SHA-256 verified; nothing installed on error); returns its id."""
        from .models.cache import install_model
        return install_model(path).id

    @staticmethod
    def removeModel(modelId: str) -> None:
        """Remove an installed model from the cache; ``ModelError`` for shipped models and ids that are not names."""
        from .models.cache import remove_model
        remove_model(modelId)

    @staticmethod
    def modelCardSummary(modelId: str) -> str:
        """Title, modality, labels, licence and measured metrics of a model, for the card label."""
        from .models.cache import find_model
        return find_model(modelId).summary_text()

    @staticmethod
    def catalogueRows() -> list[dict]:
        """The catalogue's models (``AvailableModel.as_dict``: id, title, installed, size, licence, speed ...)."""
        from .models.catalogue_status import available_models
        return [row.as_dict() for row in available_models()]

    @staticmethod
    def startModelInstall(modelId: str, files: tuple = (), reinstall: bool = False):
        """Download, verify and install a catalogue model in the download worker; returns the job to poll."""
        from .slicer_jobs import start_install
        return start_install(modelId, tuple(files), reinstall)

    @staticmethod
    def catalogueIdsForFile(path: str) -> list[str]:
        """Catalogue ids a published archive fetched by hand belongs to ([] = not a published file)."""
        from .models.catalogue_install import entries_for_file
        return [entry.id for entry in entries_for_file(path)]

    def deviceSummary(self, device: str = "auto") -> str:
        """One line for the GUI: the device inference will use, torch version and free memory."""
        try:
            from .device import describe_device
            info = describe_device(device)
        except ImportError as error:
            return f"PyTorch not installed yet ({error}); it is installed on first Apply."
        where = f"GPU {info['gpu']}" if info.get("gpu") else f"CPU ({info['cpu_threads']} threads)"
        memory = f", {info['free_memory_mb']} MB free" if info.get("free_memory_mb") is not None else ""
        bf16 = ", bf16 instructions" if info.get("cpu_bf16_instructions") else ""
        warning = f"\nWarning: {info['warning']}" if info.get("warning") else ""
        return f"{where}{bf16}, torch {info['torch']}{memory}{warning}"

    def ensureDependencies(self) -> None:
        """Install this module's requirements (and PyTorch through SlicerPyTorch if missing) on first use."""
        from .dependencies import ensure_requirements
        requirements = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources",
                                    "RadAISegment-requirements.txt")
        ensure_requirements(requirements, "RadAI Segment", needs_torch=True)


class LesionCorrections:
    # -- corrections: one lesion re-run per click, in place, with undo ----------------------------------
    @staticmethod
    def canCorrect(segmentationNode) -> bool:
        """True for a segmentation made by a lesion model (it carries the lesions' prompts)."""
        from .lesion_slicer import read_session
        return segmentationNode is not None and read_session(segmentationNode) is not None

    @staticmethod
    def startCorrection(segmentationNode, markupsNode, pointIndex: int, include: bool):
        """Start re-running the lesion the click (control point ``pointIndex`` of ``markupsNode``) lies in;
        returns the job. A click outside every lesion's box is removed and raises ``InputError``."""
        from .lesion_slicer import start_correction
        return start_correction(segmentationNode, markupsNode, pointIndex, include)

    def finishCorrection(self, job) -> str:
        """Main thread: the lesion's segment updated in place (undoable); returns the status text."""
        from .lesion_slicer import finish_correction, volume_lines
        node = finish_correction(job, self._corrections)
        return (f"Lesion {job.inputs.lesion_label} corrected in {job.seconds():.1f} s.\n"
                + "\n".join(volume_lines(node)))

    def undoCorrection(self, segmentationNode) -> bool:
        """Restore the outline (and record, and click lists) before the last correction; False if none."""
        return segmentationNode is not None and self._corrections.undo(segmentationNode)

    def canUndoCorrection(self, segmentationNode) -> bool:
        return self._corrections.can_undo(segmentationNode)

    def forgetCorrections(self) -> None:
        self._corrections.clear()

    @staticmethod
    def lesionVolumeLines(segmentationNode) -> list[str]:
        """``Lesion 1: 1.23 mL (range 1.05–1.41 mL)`` per lesion of a RadAI lesion segmentation."""
        from .lesion_slicer import volume_lines
        return volume_lines(segmentationNode) if segmentationNode is not None else []

    @staticmethod
    def newClickList(include: bool, volumeNode=None):
        """An empty include (green) or exclude (red) point list."""
        from .lesion_slicer import new_point_list
        name = f"{volumeNode.GetName() + ' ' if volumeNode else ''}{'include' if include else 'exclude'} clicks"
        import slicer
        return new_point_list(slicer.mrmlScene, name, (0.2, 0.8, 0.3) if include else (0.9, 0.2, 0.2))

    @staticmethod
    def placePoints(markupsNode) -> None:
        """Place points on ``markupsNode`` in the views (persistent place mode)."""
        from .lesion_slicer import place_points
        place_points(markupsNode)

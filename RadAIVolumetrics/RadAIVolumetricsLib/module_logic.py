"""Method groups of RadAI Volumetrics' Logic, mixed into ``RadAIVolumetricsLogic`` (module file) so that it stays
small: each method converts nodes with the MRML bridges and calls the engine. Camel-case names, as Slicer Logic
methods are called. Both need ``self._labelmap(segmentationNode, referenceVolumeNode=None)`` (the Logic's).

* :class:`CardiacMethods`: EF from an ED/ES pair or a sequence of segmentations, and cine MRI -> EF in one step
  in the worker process (``cine_slicer``).
* :class:`LongitudinalMethods`: timepoints, lesion tracking with RECIST 1.1 and volumetric response.
"""
from __future__ import annotations

import datetime as dt


class CardiacMethods:
    def ejectionFraction(self, edSegmentationNode, esSegmentationNode, bloodPoolLabel="LV blood pool",
                         myocardiumLabel=None, heartRateBpm=None) -> dict:
        """EDV, ESV, SV, EF (and mass, cardiac output) from an ED/ES pair of segmentation nodes."""
        from .cardiac import ejection_fraction_from_pair
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
        if result.get("rv_ejection_fraction_percent") is not None:
            text += (f"\nRV: EDV {result['rv_edv_ml']:.1f} mL, ESV {result['rv_esv_ml']:.1f} mL, "
                     f"EF {result['rv_ejection_fraction_percent']:.1f} %")
        if result.get("model"):
            text += (f"\n{result['model']} on {result.get('phases', len(result['volumes_ml']))} phases: ED phase "
                     f"{result['ed_phase']}, ES phase {result['es_phase']}")
            text += f"; network precision {result['precision']}" if result.get("precision") else ""
        for warning in result.get("warnings") or []:
            text += f"\nWarning: {warning}"
        return text

    def ejectionFractionFromSequence(self, sequenceNode, bloodPoolLabel="LV blood pool", myocardiumLabel=None,
                                     heartRateBpm=None) -> dict:
        """EF over a cardiac cycle from a Sequences node of segmentations (one per phase, in order).

        ED/ES are the phases of largest/smallest blood-pool volume. Adds a plot chart node of the
        volume–time curve (``result["chart"]``; time in ms when the heart rate is given, else phase).
        """
        from RadAISegmentLib.errors import InputError
        from .cardiac import ejection_fraction_from_sequence
        from .mrml import plot_chart
        if sequenceNode is None or sequenceNode.GetNumberOfDataNodes() < 2:
            raise InputError("Select a sequence with at least two segmentation phases (Sequences module).")
        phases = []
        for index in range(sequenceNode.GetNumberOfDataNodes()):
            node = sequenceNode.GetNthDataNode(index)
            if not node or not node.IsA("vtkMRMLSegmentationNode"):
                raise InputError(f"Phase {index} of '{sequenceNode.GetName()}' is not a segmentation; the Cardiac "
                                 "tab needs a sequence of segmentations (one per phase).")
            phases.append(self._labelmap(node))
        result = ejection_fraction_from_sequence(phases, label=bloodPoolLabel, myocardium=myocardiumLabel,
                                                 heart_rate_bpm=heartRateBpm)
        x = result.get("times_ms") or list(range(len(phases)))
        result["chart"] = plot_chart(x, {"blood pool volume": result["volumes_ml"]},
                                     f"{sequenceNode.GetName()} volume curve",
                                     "Time in cycle (ms)" if result.get("times_ms") else "Phase", "Volume (mL)",
                                     scene=sequenceNode.GetScene())
        return result

    @staticmethod
    def cineModelIds() -> list[str]:
        """Installed and shipped models for the cine, those whose card labels an LV blood pool first."""
        from RadAISegmentLib.errors import ModelError
        from RadAISegmentLib.models.cache import list_models
        from .cardiac_cine import ventricle_labels

        def ventricular(card) -> bool:
            try:
                ventricle_labels(card.labels, card.id)
            except ModelError:
                return False
            return True
        cards = sorted(list_models(), key=lambda card: card.id)
        return [card.id for card in sorted(cards, key=lambda card: not ventricular(card))
                if card.task == "segmentation"]

    @staticmethod
    def ensureSegmentationDependencies() -> None:
        """The cine runs a network: RadAI Segment's requirements (monai ...) and PyTorch (SlicerPyTorch), installed on
        first use. Their file sits beside this module's in a built extension, in RadAISegment/ in a checkout."""
        from pathlib import Path
        from RadAISegmentLib.dependencies import ensure_requirements
        module = Path(__file__).resolve().parents[1]
        name = "RadAISegment-requirements.txt"
        path = next((p for p in (module / "Resources" / name, module.parent / "RadAISegment" / "Resources" / name)
                     if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{name} is missing beside RadAI Volumetrics; reinstall the RadAI extension.")
        ensure_requirements(path, "RadAI Volumetrics (cine EF)", needs_torch=True)

    @staticmethod
    def startCineEjectionFraction(sequenceNode, modelId: str, heartRateBpm=None, device: str = "auto",
                                  precision: str = "auto"):
        """Start the ventricular model on every phase of a cine volume sequence in the worker process; returns
        the job to poll. Raises ``InputError`` / ``CineError`` for a missing model or an unusable sequence."""
        from .cine_slicer import start_cine_ef
        return start_cine_ef(sequenceNode, modelId, heartRateBpm, device, precision)

    @staticmethod
    def finishCineEjectionFraction(job) -> dict:
        """Main thread: the ``radai ef`` numbers, ``segmentations`` (a segmentation sequence in the cine's browser)
        and ``chart`` (LV and RV volume curve); raises the job's error."""
        from .cine_slicer import finish_cine_ef
        return finish_cine_ef(job)


class LongitudinalMethods:
    def _timepoints(self, volumeNodes, segmentationNodes, dates):
        """Engine timepoints sorted by date (baseline first), with their volume nodes in the same order."""
        from RadAISegmentLib.errors import InputError
        from RadAISegmentLib.mrml import image_from_volume_node
        from .longitudinal.timepoint import Timepoint
        if not (len(volumeNodes) == len(segmentationNodes) == len(dates)):
            raise InputError("Give each timepoint a volume, a lesion segmentation and a date.")
        entries = []
        for volume, segmentation, date in zip(volumeNodes, segmentationNodes, dates):
            if volume is None or segmentation is None:
                raise InputError("A timepoint lacks its volume or its lesion segmentation; select both.")
            when = dt.date.fromisoformat(date) if isinstance(date, str) and date else (date or None)
            entries.append((when, volume, segmentation))
        if all(when is not None for when, _, _ in entries):
            entries.sort(key=lambda entry: entry[0])
        timepoints = [Timepoint(image_from_volume_node(volume), self._labelmap(segmentation, volume), when,
                                volume.GetName()) for when, volume, segmentation in entries]
        return timepoints, [volume for _, volume, _ in entries]

    def compareTimepoints(self, volumeNodes, segmentationNodes, dates):
        """Register, match and classify response over timepoints (earliest date = baseline); returns the result."""
        from .longitudinal.compare import compare_timepoints
        timepoints, _ = self._timepoints(volumeNodes, segmentationNodes, dates)
        return compare_timepoints(timepoints)

    def trackLesions(self, volumeNodes, segmentationNodes, dates) -> dict:
        """The Longitudinal tab's Compare: result plus scene nodes, inputs untouched.

        Returns ``result`` (ComparisonResult), ``table`` (one row per lesion track: status, volume per
        timepoint, change, RECIST long axis, doubling time), ``chart`` (volume over time, one series
        per lesion in its track colour) and ``segmentations`` (per timepoint, a new node whose segment
        ``Lesion <id>`` has the same colour at every timepoint).
        """
        from .scene_results import tracked_lesion_nodes
        timepoints, volumes = self._timepoints(volumeNodes, segmentationNodes, dates)
        return tracked_lesion_nodes(timepoints, volumes)

    @staticmethod
    def comparisonText(result) -> str:
        """Response categories and per-lesion change in a few lines for the GUI."""
        return result.summary_text()

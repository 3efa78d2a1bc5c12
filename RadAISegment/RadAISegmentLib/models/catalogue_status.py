"""What the catalogue offers and what of it is installed: rows for ``radai models available`` and
Slicer's Models section, and the organ model ``radai demo`` runs (or the one command that gets one)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Optional

from ..errors import ModelError
from .cache import downloads_dir, models_dir
from .card import FORMATS as LOADABLE_FORMATS, load_card
from .catalogue import Catalogue, CatalogueEntry, load_catalogue
from .download import partial_bytes


@dataclass(frozen=True)
class AvailableModel:
    """One catalogue entry with its install state. ``installed_version`` is "" when not installed;
    ``update_available`` when an older version is installed; ``partial_mb`` MB of an interrupted download
    waiting in the downloads folder (the next install resumes it)."""

    id: str
    title: str
    task: str
    modality: tuple[str, ...]
    licence: str
    size_mb: float
    source: str
    version: str
    installed_version: str
    update_available: bool
    folder: str
    spacing_mm: Optional[tuple[float, float, float]]
    speed_hint: str
    publisher_hash: bool
    partial_mb: float

    @property
    def installed(self) -> bool:
        return bool(self.installed_version)

    def as_dict(self) -> dict:
        return {**asdict(self), "installed": self.installed}


def _status(entry: CatalogueEntry) -> AvailableModel:
    folder = models_dir() / entry.id
    version = ""
    if (folder / "card.json").is_file():
        try:
            version = load_card(folder).version
        except ModelError:
            version = ""
    partial = sum(partial_bytes(downloads_dir() / archive.file_name) for archive in entry.archives)
    return AvailableModel(id=entry.id, title=entry.title, task=entry.task, modality=entry.modality,
                          licence=entry.licence, size_mb=entry.size_mb, source=entry.source, version=entry.version,
                          installed_version=version, update_available=bool(version) and version != entry.version,
                          folder=str(folder) if version else "", spacing_mm=entry.spacing_mm,
                          speed_hint=entry.speed_hint,
                          publisher_hash=all(a.sha1 or a.sha256 for a in entry.archives), partial_mb=partial / 1e6)


def available_models(catalogue: Optional[Catalogue] = None) -> list[AvailableModel]:
    """Every catalogue entry, in catalogue order, with whether (and which version) is installed."""
    return [_status(entry) for entry in (catalogue or load_catalogue()).entries]


#: Organ models for the demo's CT case, best first: a 3 mm model suits its 3 mm CT and a CPU.
DEMO_ORGAN_MODELS = ("totalsegmentator_total_fast", "wholeBody_ct_segmentation_fast", "totalsegmentator_total",
                     "wholeBody_ct_segmentation", "swin_unetr_btcv_segmentation", "spleen_ct_segmentation")


@dataclass(frozen=True)
class DemoOrganModel:
    """The organ model the demo runs (``model_id``, None when none is usable) and a sentence saying so
    (with the one command that installs one when none is)."""

    model_id: Optional[str]
    message: str


def demo_organ_model(catalogue: Optional[Catalogue] = None,
                     preference: tuple[str, ...] = DEMO_ORGAN_MODELS) -> DemoOrganModel:
    """Pick the first installed organ model of ``preference`` whose format this RadAI can load."""
    skipped = []
    for model_id in preference:
        folder = models_dir() / model_id
        if not (folder / "card.json").is_file():
            continue
        try:
            card = load_card(folder)
        except ModelError as error:
            skipped.append(f"{model_id} ({error})")
            continue
        if card.format in LOADABLE_FORMATS:
            return DemoOrganModel(model_id, f"Organs segmented by the installed model {card.title} ({model_id} "
                                            f"{card.version}); the measurements and pictures are of its output.")
        skipped.append(f"{model_id} (format {card.format} cannot be loaded by this RadAI)")
    entries = {entry.id: entry for entry in (catalogue or load_catalogue()).entries}
    usable = [entries[i] for i in preference if i in entries and entries[i].format in LOADABLE_FORMATS]
    suggestion = usable[0].id if usable else preference[0]
    size = f" (about {usable[0].size_mb:.0f} MB download, {usable[0].licence})" if usable else ""
    skipped_text = f" Installed but not usable: {'; '.join(skipped)}." if skipped else ""
    return DemoOrganModel(None, "No organ segmentation model is installed, so this section measures the case's "
                                f"reference labels instead of a model's output.{skipped_text} To see a real model "
                                f"here, run `radai models install {suggestion}`{size}, then the demo again.")


@dataclass(frozen=True)
class DemoOrganRun:
    """The demo's organ segmentation: the model's labelmap (None when no model is installed or it failed),
    the sentence for the report, and the run time in seconds."""

    model_id: Optional[str]
    labelmap: Any
    message: str
    seconds: float = 0.0


def run_demo_organ_model(image: Any, catalogue: Optional[Catalogue] = None) -> DemoOrganRun:
    """Segment ``image`` with :func:`demo_organ_model`'s choice on the CPU; a model that fails to run is
    reported in the message (the demo then measures the reference labels)."""
    from ..errors import RadAIError
    from ..inference import run_model
    choice = demo_organ_model(catalogue)
    if choice.model_id is None:
        return DemoOrganRun(None, None, choice.message)
    started = time.perf_counter()
    try:
        labelmap = run_model(image, choice.model_id, device="cpu")
    except RadAIError as error:
        return DemoOrganRun(None, None, f"The installed organ model {choice.model_id} could not run ({error}); "
                                        "this section measures the case's reference labels instead.")
    return DemoOrganRun(choice.model_id, labelmap, choice.message, time.perf_counter() - started)

"""nnU-Net v2 result folders read safely: plans, dataset.json, networks and checkpoints.

A result folder holds ``dataset.json``, ``plans.json`` and ``fold_N/checkpoint_final.pth``. The network is
built from the plans with nnU-Net's ``dynamic_network_architectures`` (only allow-listed classes and layer
types; nothing named by a file is imported otherwise). Checkpoints are pickles: they are read with
``torch.load(weights_only=True)``, allowing besides tensors and plain containers only numpy scalar/dtype
reconstruction (nnU-Net's training log stores numpy floats); anything else needs the model to be trusted.

Axis conventions are nnU-Net's: arrays ``(c, d0, d1, d2)`` in the order SimpleITK gives them (``[k, j, i]``),
then permuted by ``transpose_forward``; spacings in mm in that same order.
"""
from __future__ import annotations

import hashlib
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..errors import ModelError, UntrustedCodeError
from .nnunet_plans import NETWORK_CLASSES, Configuration, DatasetInfo, _read_json, read_configuration, read_dataset

__all__ = ["Configuration", "DatasetInfo", "Part", "build_network", "is_result_folder", "load_nnunet", "load_part",
           "nnunet_card", "read_checkpoint", "read_configuration", "read_dataset"]

CHECKPOINT = "checkpoint_final.pth"
LAYER_TYPES = {name: getattr(nn, name) for name in (
    "Conv1d", "Conv2d", "Conv3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "BatchNorm1d", "BatchNorm2d",
    "BatchNorm3d", "GroupNorm", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "LeakyReLU", "ReLU", "PReLU",
    "ELU", "GELU")}


def is_result_folder(path: Path) -> bool:
    """True when ``path`` holds dataset.json, plans.json and at least one ``fold_*`` folder."""
    path = Path(path)
    return (path / "dataset.json").is_file() and (path / "plans.json").is_file() and any(path.glob("fold_*"))


def find_result_folders(root: Path) -> list[Path]:
    """Every nnU-Net result folder at or below ``root`` (sorted)."""
    root = Path(root)
    return sorted({p.parent for p in root.rglob("plans.json") if is_result_folder(p.parent)})


#: Globals a checkpoint may need besides tensors and plain containers: numpy scalars and dtypes (numbers in
#: nnU-Net's training log). They reconstruct data, never call code named by the file.
def _data_only_globals() -> list:
    core = getattr(np, "_core", None) or np.core
    allowed = [(core.multiarray.scalar, "numpy.core.multiarray.scalar"),
               (core.multiarray.scalar, "numpy._core.multiarray.scalar"), (np.dtype, "numpy.dtype")]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(getattr(np, "dtypes", None), name):
            allowed.append((getattr(np.dtypes, name), f"numpy.dtypes.{name}"))
    return allowed


def read_checkpoint(path: Path, trusted: bool = False) -> dict:
    """An nnU-Net checkpoint dict, read without running code unless ``trusted``.

    Raises :class:`UntrustedCodeError` naming the globals when the pickle needs more than tensors, plain
    containers and numpy numbers, and :class:`ModelError` when the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"nnU-Net checkpoint {path} is missing: the model folder lacks fold "
                         f"'{path.parent.name}'; reinstall the model or choose the folds it has.")
    allowed = _data_only_globals()
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as error:  # noqa: BLE001 - not a zip checkpoint or corrupt
        raise ModelError(f"{path} is not a readable PyTorch checkpoint ({str(error).splitlines()[0][:160]}).") from error
    beyond = sorted(needed - {name for _, name in allowed})
    try:
        if beyond:
            if not trusted:
                raise UntrustedCodeError(
                    f"{path} needs {', '.join(beyond[:4])}{' …' if len(beyond) > 4 else ''} to be unpickled, which can "
                    "run code; RadAI only loads tensors, plain containers and numpy numbers from checkpoints. If you "
                    "trust its source, install the model with `radai models install PATH --trusted`.")
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(allowed):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except UntrustedCodeError:
        raise
    except Exception as error:  # noqa: BLE001
        raise ModelError(f"Cannot read nnU-Net checkpoint {path}: {str(error).splitlines()[0][:200]}") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise ModelError(f"{path} holds no 'network_weights'; it is not an nnU-Net v2 checkpoint.")
    return checkpoint


def build_network(config: Configuration, in_channels: int, out_channels: int) -> nn.Module:
    """The configuration's network (allow-listed ``dynamic_network_architectures`` class), deep supervision off."""
    import importlib
    try:
        module = importlib.import_module(NETWORK_CLASSES[config.network_class])
    except ImportError as error:
        raise ModelError("nnU-Net models need the 'dynamic-network-architectures' package "
                         "(pip install dynamic-network-architectures==0.3.1).") from error
    kwargs = dict(config.network_kwargs)
    for key in ("conv_op", "norm_op", "dropout_op", "nonlin"):
        if kwargs.get(key) is not None:
            if kwargs[key] not in LAYER_TYPES:
                raise ModelError(f"Plans ask for layer type '{kwargs[key]}' ({key}), which RadAI does not allow.")
            kwargs[key] = LAYER_TYPES[kwargs[key]]
    kwargs.pop("deep_supervision", None)
    try:
        return getattr(module, config.network_class)(input_channels=in_channels, num_classes=out_channels,
                                                     deep_supervision=False, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise ModelError(f"Cannot build {config.network_class} from plans configuration '{config.name}': {error}.") from error


@dataclass
class Part:
    """One nnU-Net result folder of a model: its configuration, one network per fold, label mapping."""

    folder: Path
    config: Configuration
    dataset: DatasetInfo
    networks: list[nn.Module]
    mirror_axes: Optional[tuple[int, ...]]
    to_model_label: dict[int, int] = field(default_factory=dict)

    @property
    def out_channels(self) -> int:
        return len(self.dataset.head_labels)


def load_part(folder: Path, folds: Optional[list] = None, checkpoint: str = CHECKPOINT,
              configuration: Optional[str] = None, trusted: bool = False) -> Part:
    """Read one result folder; every fold's checkpoint must exist and fit the plans and dataset.json."""
    folder = Path(folder)
    plans = _read_json(folder / "plans.json")
    dataset = read_dataset(folder)
    folds = list(folds) if folds else [0]
    weights, first = [], None
    for fold in folds:
        loaded = read_checkpoint(folder / f"fold_{fold}" / checkpoint, trusted)
        first = first or loaded
        weights.append(loaded["network_weights"])
    init_args = first.get("init_args") if isinstance(first.get("init_args"), dict) else {}
    name = configuration or str(init_args.get("configuration") or "3d_fullres")
    config = read_configuration(plans, name, str(folder))
    if not (len(config.normalisation) == len(config.use_mask_for_norm) == len(dataset.channel_names)):
        raise ModelError(f"{folder}: plans.json normalises {len(config.normalisation)} channel(s) but dataset.json "
                         f"names {len(dataset.channel_names)}; the plans do not belong to this dataset.")
    if len(config.patch_size) != 3:
        raise ModelError(f"{folder}: configuration '{name}' is {len(config.patch_size)}D; RadAI runs 3D nnU-Net "
                         "configurations (3d_fullres, 3d_lowres).")
    networks = []
    for fold, state in zip(folds, weights):
        network = build_network(config, len(dataset.channel_names), len(dataset.head_labels))
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise ModelError(f"{folder}/fold_{fold}: checkpoint does not fit the network that plans.json and "
                             f"dataset.json describe ({str(error).splitlines()[0][:200]}); plans, dataset and "
                             "weights come from different models.") from error
        networks.append(network.eval())
    axes = first.get("inference_allowed_mirroring_axes")
    return Part(folder=folder, config=config, dataset=dataset, networks=networks,
                mirror_axes=tuple(int(a) for a in axes) if axes else None)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _modality(channel_names: tuple[str, ...]) -> list[str]:
    return ["CT"] if all(c.strip().upper() == "CT" for c in channel_names) else ["MR"]


def nnunet_card(model_root: Path, result_folders: list[Path], model_id: Optional[str] = None,
                trusted: bool = False) -> dict:
    """A card dict (docs/architecture.md, ``network.format`` ``"nnunet_v2"``) for result folders below
    ``model_root``: labels and modality from the first folder's dataset.json, checksums of every file."""
    model_root = Path(model_root).resolve()
    if not result_folders:
        raise ModelError(f"{model_root} holds no nnU-Net result folder (dataset.json + plans.json + fold_N/).")
    parts, files, names = [], [], {}
    for folder in result_folders:
        folder = Path(folder).resolve()
        dataset = read_dataset(folder)
        names.update({k: v for k, v in dataset.label_names.items() if k > 0})
        folds = sorted(int(p.name[5:]) for p in folder.glob("fold_*") if p.name[5:].isdigit()
                       and (p / CHECKPOINT).is_file())
        relative = folder.relative_to(model_root).as_posix()
        parts.append({"folder": relative, "folds": folds or [0], "checkpoint": CHECKPOINT})
        for path in [folder / "dataset.json", folder / "plans.json"] + [folder / f"fold_{f}" / CHECKPOINT for f in folds]:
            files.append({"file": path.relative_to(model_root).as_posix(), "sha256": sha256_file(path)})
    first = read_dataset(Path(result_folders[0]))
    checkpoints = [f for f in files if f["file"].endswith(CHECKPOINT)]
    if not checkpoints:
        raise ModelError(f"{result_folders[0]} has no fold_N/{CHECKPOINT}.")
    return {"id": model_id or first.name, "title": f"{first.name} (nnU-Net v2)", "version": "0",
            "task": "segmentation", "modality": _modality(first.channel_names),
            "labels": [{"label": k, "name": v} for k, v in sorted(names.items())],
            "input": {"channels": len(first.channel_names)},
            "network": {"format": "nnunet_v2", "parts": parts},
            "weights": {"file": checkpoints[0]["file"], "sha256": checkpoints[0]["sha256"], "files": files},
            "trusted": bool(trusted), "provenance": f"nnU-Net v2 result folder(s) {', '.join(p['folder'] for p in parts)}"}


def label_mapping(part: Part, card_labels: dict[str, int], explicit: Optional[dict] = None) -> dict[int, int]:
    """Part label → model label: ``explicit`` (``{"part label": model label}``) or by class name."""
    if explicit:
        return {int(k): int(v) for k, v in explicit.items()}
    mapping = {}
    for label, name in part.dataset.label_names.items():
        if label == 0:
            continue
        if name not in card_labels:
            raise ModelError(f"nnU-Net part {part.folder.name}: class '{name}' (label {label}) is not among the "
                             "card's labels; add it to card.json or give the part a label_map.")
        mapping[label] = card_labels[name]
    return mapping


def is_nnunet_path(path: Path) -> bool:
    """True for a folder holding nnU-Net result folder(s) or a zip whose entries include one."""
    path = Path(path)
    if path.is_dir():
        return bool(find_result_folders(path))
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as zipped:
        names = {n.replace("\\", "/") for n in zipped.namelist()}
    folders = {n.rsplit("/", 1)[0] if "/" in n else "" for n in names if n.endswith("plans.json")}
    return any((f"{f}/dataset.json" if f else "dataset.json") in names for f in folders)


def load_path(path: Path, trusted: bool = False):
    """Load result folder(s) given as a folder or a zip (extracted, path-traversal guarded, to a temporary
    folder that is removed once the networks are in memory), with a card made from dataset.json."""
    import shutil
    from .cache import safe_extract
    from .card import parse_card
    from .loaders import load_from_card
    path = Path(path)
    workdir = Path(tempfile.mkdtemp(prefix="radai-nnunet-")) if path.is_file() else None
    try:
        if workdir is not None:
            safe_extract(path, workdir)
        root = workdir or path
        card = parse_card(nnunet_card(root, find_result_folders(root), trusted=trusted), root)
        return load_from_card(card, trusted)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def options(card_network: dict) -> dict[str, Any]:
    """The card's nnU-Net inference options with nnU-Net's defaults."""
    step = float(card_network.get("tile_step_size", 0.5))
    if not 0 < step <= 1:
        raise ModelError(f"network.tile_step_size must be in (0, 1], got {step}.")
    return {"tile_step_size": step, "use_mirroring": bool(card_network.get("use_mirroring", True)),
            "orientation": card_network.get("orientation")}


def load_nnunet(card, trusted: Optional[bool] = None):
    """A :class:`~RadAISegmentLib.models.loaders.LoadedModel` for a card with ``network.format`` ``nnunet_v2``.

    Every file listed in the card is checksummed first (``cache.verify_weights``); ``extras["nnunet_parts"]``
    holds the parts (in card order) and ``extras["nnunet"]`` the inference options.
    """
    from .cache import verify_weights
    from .loaders import LoadedModel
    trusted = card.trusted if trusted is None else bool(trusted)
    verify_weights(card)
    specs = card.network.get("parts") or []
    if not specs or card.folder is None:
        raise ModelError(f"Model '{card.id}': network.parts lists no nnU-Net result folder; see docs/architecture.md.")
    card_labels = {info.name: info.label for info in card.labels}
    parts = []
    for spec in specs:
        relative = str(spec.get("folder", "")).replace("\\", "/")
        if relative.startswith("/") or ".." in relative.split("/"):
            raise ModelError(f"Model '{card.id}': part folder {relative!r} is not a path inside the model folder.")
        folder = card.folder / relative
        if not ((folder / "plans.json").is_file() and (folder / "dataset.json").is_file()):
            raise ModelError(f"Model '{card.id}': part folder {folder} lacks plans.json or dataset.json; "
                             "reinstall the model.")
        part = load_part(folder, spec.get("folds"), str(spec.get("checkpoint") or CHECKPOINT),
                         spec.get("configuration"), trusted)
        part.to_model_label = label_mapping(part, card_labels, spec.get("label_map"))
        parts.append(part)
    channels = {len(p.dataset.channel_names) for p in parts}
    if len(channels) != 1 or card.channels not in channels:
        raise ModelError(f"Model '{card.id}': card.json says {card.channels} input channel(s) but the parts' "
                         f"dataset.json files say {sorted(channels)}; fix input.channels.")
    settings = options(card.network)
    first = parts[0]
    return LoadedModel(card=card, network=first.networks[0], spatial_dims=3, in_channels=card.channels,
                       out_channels=first.out_channels, orientation=settings["orientation"],
                       roi_size=first.config.patch_size, overlap=1.0 - settings["tile_step_size"],
                       segments=card.labels, extras={"nnunet_parts": parts, "nnunet": settings})

"""Safe model loading: TorchScript, state dicts of allow-listed MONAI networks, MONAI bundles.

Nothing here imports a class named by a file except from the allow-list, and weights are read with
``torch.load(weights_only=True)`` or ``torch.jit.load``. SHA-256 is checked on every load.
"""
from __future__ import annotations

import importlib
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..errors import ModelError
from ..image import SegmentInfo, default_color
from .bundle import ALLOWED_NETWORKS, BundleConfig, short_target
from .cache import safe_extract, verify_weights, weights_path
from .card import ModelCard, load_card


@dataclass
class LoadedModel:
    """A network ready for inference plus everything needed around it.

    ``spacing_mm`` is the model's voxel size along the tensor axes (i, j, k), ``orientation`` ``"RAS"`` when
    the input must be reoriented to RAS first (MONAI Orientationd), else None (native axes).
    ``normalisation`` is a list of steps (see card.py). ``activation`` is ``"softmax"`` (argmax over channels,
    channel c → label c) or ``"sigmoid"`` (channel c > 0.5 → ``channel_labels[c]``, later channels win).
    ``overlap``, ``window_weighting`` (``"gaussian"`` | ``"constant"``) and ``padding_mode`` (how an image
    smaller than one window is padded: ``"constant"`` zeros, ``"replicate"``, ``"reflect"``) are the
    sliding-window settings the model was validated with: a bundle's ``inferer`` (MONAI's defaults
    ``constant`` / ``constant`` when it names none), a card's ``network.overlap`` /
    ``network.window_weighting`` (default ``gaussian``, as nnU-Net) / ``network.padding_mode``.
    """

    card: ModelCard
    network: nn.Module
    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 2
    spacing_mm: Optional[tuple[float, float, float]] = None
    orientation: Optional[str] = None
    normalisation: list = field(default_factory=list)
    roi_size: tuple[int, ...] = (96, 96, 96)
    sw_batch_size: int = 1
    overlap: float = 0.25
    window_weighting: str = "gaussian"
    padding_mode: str = "constant"
    activation: str = "softmax"
    channel_labels: dict = field(default_factory=dict)
    segments: tuple[SegmentInfo, ...] = ()
    extras: dict = field(default_factory=dict)

    def to(self, device: str | torch.device) -> "LoadedModel":
        return replace(self, network=self.network.to(device))


def build_monai_network(name: str, parameters: dict) -> nn.Module:
    """Instantiate an allow-listed ``monai.networks.nets`` class from literal keyword arguments."""
    short = short_target(name)
    if short not in ALLOWED_NETWORKS or (("." in name) and not name.startswith("monai.networks.nets.")):
        raise ModelError(f"Network '{name}' is not an allow-listed MONAI network "
                         f"({', '.join(sorted(ALLOWED_NETWORKS))}); use TorchScript for other architectures.")
    nets = importlib.import_module("monai.networks.nets")
    try:
        return getattr(nets, short)(**parameters)
    except TypeError as error:
        raise ModelError(f"Cannot build {short} from the card's parameters: {error}.") from error


def _read_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle payloads with code are refused by weights_only
        raise ModelError(f"{path.name} is not a plain state dict loadable with weights_only=True ({error}); "
                         "re-save it with torch.save(model.state_dict()).") from error
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _load_weights(network: nn.Module, path: Path) -> nn.Module:
    try:
        network.load_state_dict(_read_state_dict(path))
    except RuntimeError as error:
        raise ModelError(f"Weights {path.name} do not match the network: {str(error).splitlines()[0]}") from error
    return network.eval()


def _segments(card: ModelCard, names: dict[int, str]) -> tuple[SegmentInfo, ...]:
    if card.labels:
        return card.labels
    return tuple(SegmentInfo(label=k, name=v, color_rgb=default_color(k)) for k, v in sorted(names.items()) if k > 0)


#: Sliding-window settings RadAI implements: card key → (allowed values, the bundle inferer's key).
INFERER_CHOICES = {"window_weighting": (("gaussian", "constant"), "mode"),
                   "padding_mode": (("constant", "replicate", "reflect"), "padding_mode")}


def inferer_setting(name: str, value: Any, model_id: str) -> str:
    """``value`` of the sliding-window setting ``name`` (see :data:`INFERER_CHOICES`), checked."""
    allowed, bundle_key = INFERER_CHOICES[name]
    value = str(value).lower()
    if value not in allowed:
        raise ModelError(f"Model '{model_id}' asks for {name} '{value}'; RadAI supports {', '.join(allowed)}. "
                         f"Fix the card's network.{name} or the bundle's inferer {bundle_key}.")
    return value


def _from_card(card: ModelCard, network: nn.Module, **kwargs: Any) -> LoadedModel:
    patch = card.patch_size or (96, 96, 96)
    values = dict(spatial_dims=len(patch), in_channels=card.channels, spacing_mm=card.spacing_mm,
                  normalisation=list(card.normalisation), roi_size=tuple(patch),
                  orientation=card.network.get("orientation"), activation=card.network.get("activation", "softmax"),
                  out_channels=int(card.network.get("out_channels", max([s.label for s in card.labels] + [1]) + 1)),
                  segments=card.labels, extras=dict(card.raw.get("pipeline", {})),
                  overlap=float(card.network.get("overlap", 0.25)),
                  window_weighting=inferer_setting("window_weighting", card.network.get("window_weighting", "gaussian"),
                                                   card.id),
                  padding_mode=inferer_setting("padding_mode", card.network.get("padding_mode", "constant"), card.id))
    values.update(kwargs)
    return LoadedModel(card=card, network=network.eval(), **values)


def _bundle_root(path: Path, workdir: Path) -> Path:
    if path.is_file() and zipfile.is_zipfile(path):
        safe_extract(path, workdir)
        candidates = [p.parent.parent for p in workdir.rglob("configs/inference.json")]
        if not candidates:
            raise ModelError(f"{path.name} holds no configs/inference.json; not a MONAI bundle.")
        return candidates[0]
    return path


def load_bundle(card: ModelCard, trusted: Optional[bool] = None) -> LoadedModel:
    """Load a MONAI bundle folder (or zip) described by ``card`` (``card.folder`` is the bundle root)."""
    root = Path(card.raw["bundle"]) if card.raw.get("bundle") else card.folder
    if root.is_file():                                   # a zip: extract (guarded) to a private folder
        root = _bundle_root(root, Path(tempfile.mkdtemp(prefix="radai-bundle-")))
    config = BundleConfig(root)
    trusted = card.trusted if trusted is None else trusted
    weights = root / card.weights["file"]
    verify_weights(card, weights)
    if weights.suffix == ".ts":
        network = torch.jit.load(str(weights), map_location="cpu").eval()
        name, args = config.network_def() if "network_def" in config.config else ("torchscript", {})
    elif trusted:
        from monai.bundle import ConfigParser
        parser = ConfigParser(config.config)
        parser["device"] = "cpu"
        network = parser.get_parsed_content("network_def")
        name, args = short_target(config.config["network_def"]["_target_"]), dict(
            (k, v) for k, v in config.config["network_def"].items() if k != "_target_")
        _load_weights(network, weights)
    else:
        name, args = config.network_def()
        network = _load_weights(build_monai_network(name, args), weights)
    spatial_dims = int(args.get("spatial_dims", 3)) if isinstance(args.get("spatial_dims", 3), int) else 3
    in_channels = int(args.get("in_channels", 1))
    out_channels = int(args.get("out_channels", 1))
    spacing, orientation, normalisation = None, None, []
    for item in config.transforms("preprocessing"):
        key = f"preprocessing#transforms#{item['_index']}"
        kind = item["_name"]
        if kind == "Orientationd":
            orientation = str(config.resolve(item.get("axcodes", "RAS"), key + "#axcodes"))
        elif kind == "Spacingd":
            spacing = tuple(float(s) for s in config.resolve(item["pixdim"], key + "#pixdim"))
        elif kind == "ScaleIntensityRanged":
            values = {k: config.resolve(item.get(k), f"{key}#{k}") for k in ("a_min", "a_max", "b_min", "b_max")}
            normalisation.append(dict(kind="scale_range", clip=bool(config.resolve(item.get("clip", False), key)),
                                      **{k: float(v) for k, v in values.items() if v is not None}))
        elif kind == "NormalizeIntensityd":
            normalisation.append(dict(kind="zscore", nonzero=bool(config.resolve(item.get("nonzero", False), key)),
                                      channel_wise=bool(config.resolve(item.get("channel_wise", False), key))))
        elif kind == "ScaleIntensityd":
            normalisation.append(dict(kind="scale_minmax", minv=float(config.resolve(item.get("minv", 0.0), key)),
                                      maxv=float(config.resolve(item.get("maxv", 1.0), key))))
    inferer = config.config.get("inferer", {})
    inferer_name = short_target(inferer.get("_target_", "SlidingWindowInferer"))
    roi = tuple(int(r) for r in config.resolve(inferer.get("roi_size", [96] * spatial_dims), "inferer#roi_size"))
    sw_batch = int(config.resolve(inferer.get("sw_batch_size", 1), "inferer#sw_batch_size"))
    overlap = float(config.resolve(inferer.get("overlap", 0.25), "inferer#overlap"))
    weighting = inferer_setting("window_weighting", config.resolve(inferer.get("mode", "constant"), "inferer#mode"),
                                card.id)
    padding = inferer_setting("padding_mode", config.resolve(inferer.get("padding_mode", "constant"),
                                                             "inferer#padding_mode"), card.id)
    activation = "softmax"
    for item in config.transforms("postprocessing"):
        if item["_name"] == "Activationsd" and config.resolve(item.get("sigmoid", False), "postprocessing"):
            activation = "sigmoid"
    names = config.label_names()
    if activation == "sigmoid":
        channel_labels = {c: c + 1 for c in range(out_channels)}
        names = {c + 1: n for c, n in names.items()}
    else:
        channel_labels = {c: c for c in range(out_channels)}
    if spacing is not None and len(spacing) == 2:
        spacing = (*spacing, 1.0)
    return LoadedModel(card=card, network=network, spatial_dims=spatial_dims, in_channels=in_channels,
                       out_channels=out_channels, spacing_mm=spacing, orientation=orientation,
                       normalisation=normalisation, roi_size=roi, sw_batch_size=max(1, sw_batch),
                       overlap=overlap, window_weighting=weighting, padding_mode=padding, activation=activation,
                       channel_labels=channel_labels,
                       segments=_segments(card, names),
                       extras={"inferer": inferer_name, "network_name": name, "bundle_root": str(root)})


def load_from_card(card: ModelCard, trusted: Optional[bool] = None) -> LoadedModel:
    """Load the network a validated card describes (weights checksummed first)."""
    if card.format == "monai_bundle":
        return load_bundle(card, trusted)
    if card.format == "nnunet_v2":
        from .nnunet import load_nnunet
        return load_nnunet(card, trusted)
    path = verify_weights(card, weights_path(card))
    if card.format == "torchscript":
        try:
            network = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise ModelError(f"{path.name} is not a TorchScript file ({error}).") from error
        return _from_card(card, network)
    network = _load_weights(build_monai_network(card.network["name"], dict(card.network.get("parameters", {}))),
                            path)
    params = card.network.get("parameters", {})
    return _from_card(card, network, out_channels=int(params.get("out_channels", 2)),
                      spatial_dims=int(params.get("spatial_dims", len(card.patch_size or (0, 0, 0)))),
                      in_channels=int(params.get("in_channels", card.channels)))


def load_model_folder(folder: str | Path, trusted: Optional[bool] = None) -> LoadedModel:
    """Load a model folder (card.json + weights) or a bare MONAI bundle folder/zip."""
    folder = Path(folder)
    if (folder / "card.json").is_file():
        return load_from_card(load_card(folder), trusted)
    from .nnunet import is_nnunet_path, load_path
    if is_nnunet_path(folder):                                  # nnU-Net result folder(s) or a zip of them
        return load_path(folder, bool(trusted))
    from .cache import _bundle_card
    from .card import parse_card
    with tempfile.TemporaryDirectory() as tmp:
        root = _bundle_root(folder, Path(tmp))
        card = parse_card(_bundle_card(root, bool(trusted)), root)
        model = load_bundle(card, trusted)
    return model

"""nnU-Net v2 ``plans.json`` and ``dataset.json``, read and checked (no code named by a file is imported).

A configuration is resolved (``inherits_from``), its network described either in the current format
(``architecture``) or in pre-2.4 plans (``UNet_class_name`` ..., as TotalSegmentator's), and its resampling
must be nnU-Net's default (the one :mod:`RadAISegmentLib.nnunet_resample` reproduces). Spacings and patch
sizes are in nnU-Net's transposed axis order, mm.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError

NETWORK_CLASSES = {"PlainConvUNet": "dynamic_network_architectures.architectures.unet",
                   "ResidualEncoderUNet": "dynamic_network_architectures.architectures.unet"}
RESAMPLING_FUNCTIONS = ("resample_data_or_seg_to_shape", "resample_data_or_seg_to_spacing")
NORMALISATIONS = ("CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization",
                  "RGBTo01Normalization")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"nnU-Net model folder {path.parent} has no {path.name}; it must hold dataset.json, "
                         "plans.json and fold_N/checkpoint_final.pth as nnU-Net writes them.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(f"{path} is not valid JSON ({error}).") from error


@dataclass(frozen=True)
class Configuration:
    """One configuration of a plans file, inheritance resolved; spacings/patch in transposed axis order."""

    name: str
    spacing_mm: tuple[float, ...]
    patch_size: tuple[int, ...]
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    normalisation: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    intensity_properties: dict
    resampling_data: dict
    resampling_logits: dict
    network_class: str
    network_kwargs: dict


def _legacy_architecture(config: dict, where: str) -> tuple[str, dict]:
    """Architecture of pre-2.4 plans (``UNet_class_name`` etc.), as nnU-Net's own plans handler reads them."""
    name = config.get("UNet_class_name")
    if name not in NETWORK_CLASSES:
        raise ModelError(f"{where}: network '{name}' is not one RadAI builds ({', '.join(NETWORK_CLASSES)}).")
    stages = len(config["n_conv_per_stage_encoder"])
    dims = len(config["patch_size"])
    kwargs = {"n_stages": stages,
              "features_per_stage": [min(config["UNet_base_num_features"] * 2 ** i, config["unet_max_num_features"])
                                     for i in range(stages)],
              "conv_op": f"Conv{dims}d", "kernel_sizes": config["conv_kernel_sizes"],
              "strides": config["pool_op_kernel_sizes"],
              ("n_conv_per_stage" if name == "PlainConvUNet" else "n_blocks_per_stage"): config["n_conv_per_stage_encoder"],
              "n_conv_per_stage_decoder": config["n_conv_per_stage_decoder"], "conv_bias": True,
              "norm_op": f"InstanceNorm{dims}d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
              "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    return name, kwargs


def _resampling(config: dict, key: str, where: str) -> dict:
    name = str(config.get(key, "resample_data_or_seg_to_shape")).rsplit(".", 1)[-1]
    if name not in RESAMPLING_FUNCTIONS:
        raise ModelError(f"{where}: {key} '{name}' is not nnU-Net's default resampling, the only one RadAI "
                         "reproduces; re-plan the dataset with nnU-Net's default planner.")
    kwargs = dict(config.get(key + "_kwargs") or {})
    return {"order": int(kwargs.get("order", 3)), "order_z": int(kwargs.get("order_z", 0)),
            "force_separate_z": kwargs.get("force_separate_z"),
            "anisotropy_threshold": float(kwargs.get("separate_z_anisotropy_threshold", 3.0))}


def read_configuration(plans: dict, name: str, where: str) -> Configuration:
    """The named configuration of ``plans`` (``inherits_from`` resolved); :class:`ModelError` if unusable."""
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise ModelError(f"{where}: plans.json has no configuration '{name}' (it has "
                         f"{', '.join(configurations) or 'none'}).")
    config, seen = dict(configurations[name]), {name}
    while "inherits_from" in config:
        parent = config.pop("inherits_from")
        if parent in seen or parent not in configurations:
            raise ModelError(f"{where}: configuration '{name}' inherits from missing or circular '{parent}'.")
        seen.add(parent)
        config = {**configurations[parent], **config}
    if config.get("previous_stage") or "cascade" in name:
        raise ModelError(f"{where}: '{name}' is a cascade stage; RadAI runs single-stage nnU-Net configurations.")
    if "architecture" in config:
        network_class = str(config["architecture"]["network_class_name"]).rsplit(".", 1)[-1]
        kwargs = dict(config["architecture"]["arch_kwargs"])
        for key in config["architecture"].get("_kw_requires_import", []):
            if kwargs.get(key) is not None:
                kwargs[key] = str(kwargs[key]).rsplit(".", 1)[-1]
    else:
        network_class, kwargs = _legacy_architecture(config, where)
    if network_class not in NETWORK_CLASSES:
        raise ModelError(f"{where}: network '{network_class}' is not one RadAI builds ({', '.join(NETWORK_CLASSES)}).")
    unknown = [s for s in config["normalization_schemes"] if s not in NORMALISATIONS]
    if unknown:
        raise ModelError(f"{where}: normalisation {', '.join(unknown)} is not one of nnU-Net's that RadAI reproduces "
                         f"({', '.join(NORMALISATIONS)}).")
    properties = plans.get("foreground_intensity_properties_per_channel",
                           plans.get("foreground_intensity_properties_by_modality", {}))
    forward = tuple(int(a) for a in plans.get("transpose_forward", (0, 1, 2)))
    return Configuration(name=name, spacing_mm=tuple(float(s) for s in config["spacing"]),
                         patch_size=tuple(int(p) for p in config["patch_size"]), transpose_forward=forward,
                         transpose_backward=tuple(int(a) for a in plans.get("transpose_backward", np.argsort(forward))),
                         normalisation=tuple(str(s) for s in config["normalization_schemes"]),
                         use_mask_for_norm=tuple(bool(m) for m in config["use_mask_for_norm"]),
                         intensity_properties={int(k): dict(v) for k, v in properties.items()},
                         resampling_data=_resampling(config, "resampling_fn_data", where),
                         resampling_logits=_resampling(config, "resampling_fn_probabilities", where),
                         network_class=network_class, network_kwargs=kwargs)


@dataclass(frozen=True)
class DatasetInfo:
    """``dataset.json``: class name per network output (index = head), channel names."""

    name: str
    head_labels: tuple[int, ...]
    label_names: dict[int, str]
    channel_names: tuple[str, ...]


def read_dataset(folder: Path) -> DatasetInfo:
    data = _read_json(folder / "dataset.json")
    labels = data.get("labels")
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise ModelError(f"{folder}/dataset.json: 'labels' must map names to ids with background 0.")
    if any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values()) or data.get("regions_class_order"):
        raise ModelError(f"{folder}/dataset.json describes a region-based model (overlapping label regions); "
                         "RadAI runs label-based nnU-Net models only.")
    names = {int(v[0] if isinstance(v, (list, tuple)) else v): str(k) for k, v in labels.items() if k != "ignore"}
    channels = data.get("channel_names", data.get("modality", {}))
    channel_names = tuple(str(channels[k]) for k in sorted(channels, key=int))
    if not channel_names:
        raise ModelError(f"{folder}/dataset.json names no input channels ('channel_names').")
    return DatasetInfo(name=folder.parent.name if folder.name.count("__") == 2 else folder.name,
                       head_labels=tuple(sorted(names)), label_names=names, channel_names=channel_names)

"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

* :func:`randomization_check`: a map that survives randomising the model's weights explains the
  image, not the model. Compare the Spearman rank correlation between the trained model's map and
  a randomised model's map with that between two runs of the trained model (1.0 for
  deterministic Grad-CAM; different noise seeds for SmoothGrad).
* :func:`saliency_mass_near`: the fraction of saliency mass within ``margin_mm`` (physical
  distance, anisotropic spacing honoured) of a lesion mask.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from scipy import ndimage, stats
from torch import nn

from ..image import Image


def spearman(a: np.ndarray, b: np.ndarray, support: Optional[np.ndarray] = None) -> float:
    """Spearman rank correlation of two maps over ``support`` voxels (default all); 0 when either
    map is constant there (no ranking to agree with)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if support is not None:
        x, y = x[support], y[support]
    x, y = x.ravel(), y.ravel()
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    value = stats.spearmanr(x, y).statistic
    return float(value) if np.isfinite(value) else 0.0


def randomise_weights(model: nn.Module, seed: int = 0, cascading_layers: Optional[int] = None) -> nn.Module:
    """A deep copy of ``model`` with re-initialised weights (seeded). ``cascading_layers=None``
    re-initialises every layer; ``n`` re-initialises the last ``n`` parameterised layers (from the
    output towards the input, Adebayo's cascading randomisation)."""
    randomised = copy.deepcopy(model)
    layers = [m for m in randomised.modules() if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))]
    chosen = layers if cascading_layers is None else layers[len(layers) - int(cascading_layers):]
    torch.manual_seed(int(seed))
    for module in chosen:
        module.reset_parameters()
    return randomised


def randomization_check(explain_fn: Callable[..., Any], model: nn.Module, seed: int = 0,
                        cascading_layers: Optional[int] = None, **explain_kwargs: Any) -> dict:
    """Model-parameter randomisation test.

    ``explain_fn(model=..., **explain_kwargs)`` must return a :class:`SaliencyResult` (e.g.
    ``functools.partial(explain, image, card=card)``). Runs it twice on the trained model (with
    ``noise_seed`` 0 and 1, which only SmoothGrad uses) and once on a randomised copy; returns
    ``{"trained_vs_trained", "trained_vs_random", "randomised_layers", "ratio"}`` where the
    correlations are Spearman's rho over voxels where any of the maps is non-zero."""
    kwargs = dict(explain_kwargs)
    kwargs.pop("noise_seed", None)
    first = explain_fn(model=model, noise_seed=0, **kwargs).map.array
    second = explain_fn(model=model, noise_seed=1, **kwargs).map.array
    randomised = randomise_weights(model, seed=seed, cascading_layers=cascading_layers)
    random_map = explain_fn(model=randomised, noise_seed=0, **kwargs).map.array
    support = (first > 0) | (second > 0) | (random_map > 0)
    trained = spearman(first, second, support)
    random = spearman(first, random_map, support)
    return {"trained_vs_trained": trained, "trained_vs_random": random,
            "randomised_layers": "all" if cascading_layers is None else int(cascading_layers),
            "ratio": random / trained if trained else float("nan")}


def saliency_mass_near(saliency: Image, mask: Image | np.ndarray, margin_mm: float) -> float:
    """Fraction (0..1) of the map's total mass lying within ``margin_mm`` (Euclidean, physical
    spacing) of the non-zero voxels of ``mask`` (same grid as ``saliency``). 0 for an empty map."""
    mask_array = np.asarray(mask.array if isinstance(mask, Image) else mask) != 0
    if isinstance(mask, Image):
        saliency.require_same_grid(mask, "lesion mask")
    values = np.clip(np.asarray(saliency.array, float), 0.0, None)
    total = float(values.sum())
    if total <= 0.0 or not mask_array.any():
        return 0.0
    distance_mm = ndimage.distance_transform_edt(~mask_array, sampling=tuple(reversed(saliency.spacing_mm)))
    return float(values[distance_mm <= float(margin_mm)].sum() / total)


def lesion_mask_from_card(labelmap: Image, label: int) -> np.ndarray:
    """Boolean ``(k, j, i)`` mask of one label value of a labelmap."""
    return np.asarray(labelmap.array) == int(label)


def describe_check(result: Mapping[str, Any]) -> str:
    return (f"rank correlation trained-vs-trained {result['trained_vs_trained']:.3f}, "
            f"trained-vs-randomised {result['trained_vs_random']:.3f}")

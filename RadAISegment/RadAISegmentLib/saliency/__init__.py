"""Saliency for 3D segmentation: Seg-Grad-CAM, Grad-CAM++, SmoothGrad, sanity checks.

Public API::

    explain(image, model, card, label=None, seed_ras=None, box_mm=None, method="gradcam", ...) -> SaliencyResult
    explain_image(image, model_id, label=None, seed_ras=None, method=None (the card's), ...) -> SaliencyResult
    randomization_check(explain_fn, model, seed=0, cascading_layers=None, **kwargs) -> dict
    saliency_mass_near(map, mask, margin_mm) -> float
    find_target_layer(model, example_input) -> str
"""
from .cam import find_target_layer, gradcam_weights, normalise_map, record_spatial_sizes
from .checks import randomise_weights, randomization_check, saliency_mass_near, spearman
from .explain import METHOD_NAMES, METHODS, SMOOTHGRAD_NOTE, CardFacts, SaliencyResult, explain
from .load import explain_image, load_for_saliency

__all__ = ["explain", "explain_image", "SaliencyResult", "CardFacts", "METHODS", "METHOD_NAMES", "SMOOTHGRAD_NOTE",
           "find_target_layer", "record_spatial_sizes", "gradcam_weights", "normalise_map",
           "randomization_check", "randomise_weights", "saliency_mass_near", "spearman", "load_for_saliency"]

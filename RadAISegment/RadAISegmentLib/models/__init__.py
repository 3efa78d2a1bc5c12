"""Model cards, per-user model cache and safe loaders (TorchScript, MONAI state dicts, MONAI bundles)."""
from .card import ModelCard, load_card, parse_card
from .cache import find_model, install_model, list_models, models_dir, remove_model, verify_model

__all__ = ["ModelCard", "load_card", "parse_card", "find_model", "install_model", "list_models",
           "models_dir", "remove_model", "verify_model"]

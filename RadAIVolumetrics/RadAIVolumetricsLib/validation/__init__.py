"""Local validation of segmentation models: overlap, surface and lesion-wise metrics, agreement statistics."""

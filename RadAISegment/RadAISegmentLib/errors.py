"""Typed errors. Each message names the problem and what the user can do.

The CLI prints ``str(error)`` as one line and exits non-zero; Slicer modules
show it in a message box. Nothing here imports heavy libraries.
"""
from __future__ import annotations


class RadAIError(Exception):
    """Base class for every error RadAI raises on purpose."""


class InputError(RadAIError, ValueError):
    """An input file or argument is unusable (missing, corrupt, wrong kind)."""


class DicomError(InputError):
    """A DICOM folder or file cannot be turned into one consistent volume."""


class GeometryError(InputError):
    """Spacing, origin or direction is invalid (zero/negative spacing, shear...)."""


class GeometryMismatchError(GeometryError):
    """Two images that must share a voxel grid do not."""


class NonFiniteError(InputError):
    """An image holds NaN or infinite voxels."""


class DimensionError(InputError):
    """An image has the wrong number of dimensions (e.g. 2D where 3D is needed)."""


class LabelError(InputError):
    """A labelmap is unusable: non-integer values, unknown label name or id, empty label."""


class ModelError(RadAIError):
    """A model card, bundle or weights file is invalid or does not fit the input."""


class ChecksumError(ModelError):
    """A weights file's SHA-256 differs from the one its card records."""


class UntrustedCodeError(ModelError):
    """A bundle config holds expressions that would run code, and the bundle is not trusted."""


class UnsafeArchiveError(ModelError):
    """A zip archive holds paths that would escape the extraction folder."""


class DownloadError(RadAIError):
    """A model download failed (no network, timeout, HTTP error); the message names the URL and how to
    install the file by hand."""


class CancelledError(RadAIError):
    """The user cancelled a long-running operation; nothing was written."""

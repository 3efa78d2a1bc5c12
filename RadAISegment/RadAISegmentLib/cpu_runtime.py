"""Which runtime executes an organ model's network on the CPU: PyTorch, or OpenVINO (``--runtime``).

``torch`` runs the network as loaded (float32, or bfloat16 autocast); its labels equal MONAI's and nnU-Net's.
``openvino`` runs a conversion of it, in the same arithmetic (``INFERENCE_PRECISION_HINT`` f32 or bf16, never
OpenVINO's own default, which is bf16 on some CPUs), compiled once per window shape: on this project's 2-core
AVX512 CPU nnU-Net's PlainConvUNet runs its 128³ windows ~1.5× faster than PyTorch float32
(``benchmarks/nnunet.py``); logits differ from PyTorch's by float rounding (~1e-7 relative, instance norms
rewritten: :class:`_PreciseInstanceNorm`), so labels differ at exact near-ties only.
``auto`` (the default) takes OpenVINO on the CPU for nnU-Net v2 models when the package is installed, PyTorch
elsewhere: on CUDA, without OpenVINO, for a network OpenVINO gets wrong (then with a warning), and for MONAI
bundles, where PyTorch's bfloat16 is already fast and OpenVINO's buffers cost memory (real chest CT, wholeBody
SegResNet: OpenVINO 2.8× faster than MONAI at 0.57× its peak memory, PyTorch 2.2× at 0.45×; ask for it with
``--runtime openvino``). The interactive lesion model always runs in PyTorch (one small window per click: a
conversion would cost more than it saves).

Conversion: a TorchScript trace on zeros (at half the window where the network takes it; instance norms
written as :class:`_PreciseInstanceNorm`: OpenVINO's own loses digits), converted by OpenVINO, then a
probe: a random input through both, relative L2 difference within :data:`PROBE_TOLERANCE`
(tracing freezes Python branches on the input's values; the probe catches it), and a compilation at the
window's shape. That costs seconds, so the verified conversion is kept in the models cache
(``<models>/.openvino/<key>``, OpenVINO IR, written atomically), keyed by the network's class and weights,
the window's channels, the precision and the OpenVINO and torch versions; later runs read it (< 1 s).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
import warnings
import weakref
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .atomic import atomic_directory
from .device import DeviceChoice, cpu_threads
from .errors import InputError

LOG = logging.getLogger(__name__)
RUNTIMES = ("auto", "torch", "openvino")

#: Converted OpenVINO models per network (and precision): converting traces the network, so it is done once.
_CONVERTED: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(requested: str, choice: DeviceChoice, auto_openvino: bool = True) -> str:
    """``"torch"`` or ``"openvino"`` for ``auto|torch|openvino`` on ``choice``'s device; ``auto`` means OpenVINO
    on the CPU only where ``auto_openvino`` (the model family it was measured better for)."""
    text = str(requested or "auto").lower()
    if text not in RUNTIMES:
        raise InputError(f"Unknown runtime '{requested}'; use {', '.join(RUNTIMES)}.")
    if choice.device.type != "cpu":
        if text == "openvino":
            raise InputError("--runtime openvino runs on the CPU only; use --device cpu, or --runtime auto/torch "
                             "on the GPU.")
        return "torch"
    if text == "auto":
        return "openvino" if auto_openvino and openvino_installed() else "torch"
    if text == "openvino" and not openvino_installed():
        raise InputError("--runtime openvino was requested but the 'openvino' package is not installed; "
                         "install it (pip install openvino) or use --runtime torch.")
    return text


class OpenVINONetwork:
    """A network compiled by OpenVINO, called like the torch module: ``(B, C, *spatial)`` float32 tensor in,
    logits tensor out (float32, CPU). One compilation per input shape, kept for later calls."""

    def __init__(self, converted, hint: str) -> None:
        self.converted, self.hint = converted, hint
        self.compiled: dict[tuple, object] = {}

    def _compiled_for(self, shape: tuple):
        if shape not in self.compiled:
            import openvino as ov
            model = self.converted.clone()
            model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            self.compiled[shape] = ov.Core().compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": self.hint, "INFERENCE_NUM_THREADS": cpu_threads(),
                "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        return self.compiled[shape]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        request = self._compiled_for(tuple(array.shape))
        result = request.infer({0: array})
        return torch.from_numpy(np.asarray(result[0], dtype=np.float32))


#: How networks are prepared for conversion (:func:`_for_conversion`); in the cache key, so that conversions
#: made by an older recipe are not reused.
CONVERSION_RECIPE = 2


class _PreciseInstanceNorm(torch.nn.Module):
    """The same instance normalisation, written so that OpenVINO computes it as exactly as PyTorch.

    OpenVINO sums a ReduceMean's values in one float32 accumulator: over a 128³ window (2 M values) the
    normalised output is off by ~3e-4 relative (PyTorch: 2e-7), enough to flip near-tied labels. Here each
    mean is a ReduceMean over the last axis alone, then matrix products with a ones vector over each further
    spatial axis (≤ a few hundred terms per sum; OpenVINO would merge consecutive ReduceMeans back into one):
    3e-7. Variance as PyTorch's (biased, of the centred values)."""

    def __init__(self, norm: torch.nn.Module) -> None:
        super().__init__()
        self.norm = norm

    @staticmethod
    def _mean(x: torch.Tensor) -> torch.Tensor:
        """Mean over the spatial axes of ``(B, C, *spatial)``, kept as size-1 axes."""
        y = x.mean(dim=-1)
        for size in reversed(x.shape[2:-1]):
            y = torch.matmul(y.reshape(-1, size), torch.ones(size, 1, dtype=x.dtype) / size)
        return y.reshape(x.shape[0], x.shape[1], *([1] * (x.dim() - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self._mean(x)
        y = centred / torch.sqrt(self._mean(centred * centred) + self.norm.eps)
        if self.norm.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            y = y * self.norm.weight.view(shape) + self.norm.bias.view(shape)
        return y


def _for_conversion(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` (eval mode) whose instance norms without running statistics are computed as
    :class:`_PreciseInstanceNorm`; ``network`` itself is untouched."""
    import copy
    prepared = copy.deepcopy(network).eval()
    norms = (torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d)
    for parent in list(prepared.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, norms) and not child.track_running_stats:
                setattr(parent, name, _PreciseInstanceNorm(child))
    return prepared


#: Largest relative difference (L2 norm of the logits) between OpenVINO and PyTorch on the probe window
#: that counts as the same network (float32 rounding is ~1e-6; bfloat16 ~1e-2).
PROBE_TOLERANCE = {"f32": 1e-3, "bf16": 5e-2}


def _traced(network: torch.nn.Module, example_shape: tuple) -> tuple[torch.jit.ScriptModule, tuple]:
    """``(TorchScript trace on zeros, its shape)``: at half the window where the network accepts it (an
    eighth of the work), else at the window itself."""
    half = (1, example_shape[1], *[max(1, s // 2) for s in example_shape[2:]])
    for shape in (half, (1, *example_shape[1:])):
        try:
            return torch.jit.trace(network, torch.zeros(shape), check_trace=False), shape
        except Exception as error:  # noqa: BLE001 - too small for the network: try the window itself
            failure = error
    raise failure


def _convert(network: torch.nn.Module, example_shape: tuple, hint: str) -> OpenVINONetwork:
    """Convert a trace of the network; check on a random input of the traced shape that OpenVINO computes
    what PyTorch computes (tracing turns Python control flow on the input's values into constants, which
    the probe exposes), and compile it at the window's shape (a graph that does not fit it fails here)."""
    import openvino as ov
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)      # the probe below is the real check
        warnings.simplefilter("ignore", DeprecationWarning)           # torch.jit.trace, used by the converter
        traced, shape = _traced(_for_conversion(network.eval()), example_shape)
        converted = ov.convert_model(traced, input=[ov.PartialShape([-1] * len(example_shape))])
        compiled = OpenVINONetwork(converted, hint)
        probe = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        expected = network(probe).float()
        difference = float(torch.linalg.vector_norm(compiled(probe) - expected)
                           / torch.linalg.vector_norm(expected).clamp_min(1e-12))
        if not difference <= PROBE_TOLERANCE[hint]:
            raise ValueError(f"its logits differ from PyTorch's by {difference:.2g} (relative) on a probe input")
        compiled.compiled.pop(tuple(shape), None)
        compiled._compiled_for(tuple(example_shape))
    return compiled


def _cache_folder(network: torch.nn.Module, example_shape: tuple, hint: str) -> Optional[Path]:
    """Where the verified conversion of this network (its class and weights, the window's channels and
    rank, the precision, the OpenVINO and torch versions) is kept: ``<models cache>/.openvino/<key>``."""
    try:
        import openvino
        from .models.cache import models_dir
        digest = hashlib.sha256(repr((CONVERSION_RECIPE, type(network).__qualname__, tuple(example_shape[1:]), hint,
                                      openvino.__version__, torch.__version__)).encode())
        for name, tensor in network.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return models_dir() / ".openvino" / digest.hexdigest()[:32]
    except Exception:  # noqa: BLE001 - no cache then (e.g. tensors that cannot be viewed as bytes)
        return None


def _load_or_convert(network: torch.nn.Module, example_shape: tuple, hint: str,
                     report: Callable[[str], None] = lambda message: None) -> OpenVINONetwork:
    """The converted network from the cache when this exact network was converted and verified before
    (a conversion costs seconds: tracing, converting, probing), else converted now and stored (atomically)."""
    import openvino as ov
    folder = _cache_folder(network, example_shape, hint)

    def kept() -> Optional[OpenVINONetwork]:
        if folder is None or not (folder / "model.xml").is_file():
            return None
        try:
            compiled = OpenVINONetwork(ov.Core().read_model(str(folder / "model.xml")), hint)
            compiled._compiled_for(tuple(example_shape))
            return compiled
        except Exception as error:  # noqa: BLE001 - a damaged cache entry: convert again
            LOG.warning("OpenVINO cache entry %s unreadable (%s); converting again", folder, error)
            return None

    compiled = kept()
    if compiled is not None:
        return compiled
    report("Converting the network for OpenVINO (first run only; kept in the models cache)...")
    compiled = _convert(network, example_shape, hint)
    if folder is not None:
        try:
            with atomic_directory(folder) as tmp:
                ov.save_model(compiled.converted, str(tmp / "model.xml"), compress_to_fp16=False)
        except OSError as error:
            LOG.warning("could not keep the OpenVINO conversion in %s: %s", folder, error)
    # The kept IR compiles to the last bit the same as on every later run (the in-memory conversion can
    # differ from it by float rounding): the first run uses it too.
    return kept() or compiled


def runtime_network(network: torch.nn.Module, choice: DeviceChoice, example_shape: tuple,
                    report: Optional[Callable[[str], None]] = None) -> tuple[Callable, DeviceChoice]:
    """``(callable network, the choice that runs it)``: the OpenVINO-compiled network when ``choice.runtime``
    is ``openvino`` (converted at ``example_shape``, ``(B, C, *spatial)``), else ``network`` itself. A network
    OpenVINO cannot convert runs in PyTorch, with a warning. ``report`` gets the messages for the progress
    line: a conversion starting (seconds, first run only), a conversion that failed."""
    if choice.runtime != "openvino":
        return network, choice
    report = report or (lambda message: None)
    hint = "bf16" if choice.cpu_bf16 else "f32"
    with _LOCK:
        per_network = _CONVERTED.setdefault(network, {})
        if hint not in per_network:
            try:
                per_network[hint] = _load_or_convert(network, tuple(example_shape), hint, report)
            except Exception as error:  # noqa: BLE001 - any conversion failure means: run in PyTorch
                per_network[hint] = None
                message = (f"OpenVINO could not convert this network ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:160] if str(error) else ''}); running it in PyTorch.")
                LOG.warning(message)
                report(message)
        compiled = per_network[hint]
    if compiled is None:
        return network, choice.with_runtime("torch")
    return compiled, choice

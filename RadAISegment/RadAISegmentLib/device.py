"""Device and precision for inference: ``auto`` (CUDA with float16 autocast, else the CPU with the thread count
sized to the cores), explicit ``cpu``/``cuda``; out-of-memory on GPU → retry on CPU.

Precision (``--precision auto|fp32|bf16``): on a CPU whose instruction set has bfloat16 arithmetic (AMX-BF16
or AVX512-BF16, read from the CPU flags) ``auto`` runs the network under ``torch.autocast("cpu", bfloat16)``
(with channels-last 3D convolutions, 2.3× faster per 96³ window than float32 on this project's 2-core
AVX512-BF16 machine); elsewhere ``auto`` is float32, and ``fp32`` always is. Stitching and argmax stay float32.
A model card can pin ``network.precision: "fp32"`` for a model whose labels do not survive bfloat16.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

import torch

from .errors import InputError

LOG = logging.getLogger(__name__)
T = TypeVar("T")


#: Accepted ``--precision`` values.
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class DeviceChoice:
    """``device`` for the network, ``sw_device`` where stitched outputs live (always CPU here: images can be
    large), ``mixed_precision`` True on CUDA (autocast float16), ``cpu_bf16`` True when the network runs in
    bfloat16 on the CPU, ``runtime`` what executes it on the CPU (``"torch"`` or ``"openvino"``, see
    :mod:`.cpu_runtime`)."""

    device: torch.device
    sw_device: torch.device
    mixed_precision: bool
    cpu_bf16: bool = False
    runtime: str = "torch"

    @property
    def precision(self) -> str:
        """The arithmetic the network runs in: ``"fp16"`` (CUDA autocast), ``"bf16"`` (CPU autocast) or ``"fp32"``."""
        if self.mixed_precision and self.device.type == "cuda":
            return "fp16"
        return "bf16" if self.cpu_bf16 and self.device.type == "cpu" else "fp32"

    def autocast(self):
        if self.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        if self.cpu_bf16 and self.device.type == "cpu" and self.runtime == "torch":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()             # OpenVINO compiles its precision into the network

    def with_precision(self, precision: str) -> "DeviceChoice":
        """The same device with CPU bfloat16 on (``"bf16"``) or off (``"fp32"``); CUDA choices are unchanged."""
        if self.device.type != "cpu":
            return self
        return DeviceChoice(self.device, self.sw_device, False, precision == "bf16", self.runtime)

    def with_runtime(self, runtime: str) -> "DeviceChoice":
        """The same device and precision run by ``"torch"`` or ``"openvino"`` (CPU only)."""
        if self.device.type != "cpu":
            return self
        return DeviceChoice(self.device, self.sw_device, False, self.cpu_bf16, runtime)


def cpu_bf16_instructions() -> Optional[str]:
    """The CPU's bfloat16 instruction set (``"amx_bf16"`` or ``"avx512_bf16"``, from ``/proc/cpuinfo``; oneDNN's
    own check where that file is missing), or None when bfloat16 would be emulated (slow)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return next((name for name in ("amx_bf16", "avx512_bf16") if name in flags), None)
    except OSError:
        pass
    try:
        return "onednn_bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except (AttributeError, RuntimeError):
        return None


def resolve_cpu_precision(precision: str = "auto") -> str:
    """``"bf16"`` or ``"fp32"`` for ``auto|fp32|bf16`` on this CPU (``auto``: bf16 only with bf16 instructions)."""
    text = str(precision or "auto").lower()
    if text not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}'; use {', '.join(PRECISIONS)}.")
    if text == "auto":
        return "bf16" if cpu_bf16_instructions() else "fp32"
    return text


#: Environment variable fixing the CPU inference threads (set by ``radai batch`` for each Dask worker so
#: that workers sharing a machine do not oversubscribe its cores).
THREADS_ENV = "RADAI_TORCH_THREADS"


def cpu_threads() -> int:
    """Threads for CPU inference: ``$RADAI_TORCH_THREADS`` when set, else the cores available to this
    process (affinity-aware)."""
    configured = os.environ.get(THREADS_ENV, "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def choose_device(device: str = "auto", precision: str = "fp32") -> DeviceChoice:
    """Resolve ``auto|cpu|cuda[:n]`` and, on the CPU, ``precision`` (``auto|fp32|bf16``, see
    :func:`resolve_cpu_precision`); ``cuda`` without a GPU is an :class:`InputError`."""
    text = str(device or "auto").lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda was requested but no CUDA GPU is available to this torch build "
                             f"({torch.__version__}); use --device cpu or auto.")
        return DeviceChoice(torch.device(text), torch.device("cpu"), True)
    if text != "cpu":
        raise InputError(f"Unknown device '{device}'; use auto, cpu or cuda.")
    if torch.get_num_threads() != cpu_threads():
        torch.set_num_threads(cpu_threads())
    return DeviceChoice(torch.device("cpu"), torch.device("cpu"), False, resolve_cpu_precision(precision) == "bf16")


def describe_device(device: str = "auto") -> dict:
    """Device, torch build, CUDA capability and free memory, as a JSON-ready dict."""
    choice = choose_device(device)
    info = {"device": str(choice.device), "mixed_precision": choice.mixed_precision,
            "cpu_bf16_instructions": cpu_bf16_instructions(), "torch": torch.__version__,
            "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "cpu_threads": torch.get_num_threads()}
    if choice.device.type == "cuda":
        index = choice.device.index or 0
        free, total = torch.cuda.mem_get_info(index)
        info.update(gpu=torch.cuda.get_device_name(index), cuda_capability=list(torch.cuda.get_device_capability(index)),
                    free_memory_mb=round(free / 2**20), total_memory_mb=round(total / 2**20))
        info["warning"] = gpu_memory_warning(info["free_memory_mb"])
    else:
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            info["free_memory_mb"] = round(pages / 2**20)
        except (ValueError, OSError, AttributeError):
            info["free_memory_mb"] = None
        info["cuda_capability"] = None
    return info


#: Free GPU memory (MB) below which full-resolution whole-body models (96³ windows of a 105-class
#: SegResNet, about 3 GB in mixed precision) are likely to run out of memory.
MIN_GPU_FREE_MB = 4096


def gpu_memory_warning(free_memory_mb: Optional[float]) -> Optional[str]:
    """A user-facing warning when the GPU is too small for full-resolution organ models, else None."""
    if free_memory_mb is None or free_memory_mb >= MIN_GPU_FREE_MB:
        return None
    return (f"Only {free_memory_mb:.0f} MB of GPU memory is free; full-resolution organ models need about "
            f"{MIN_GPU_FREE_MB} MB. Use fast mode, close other GPU programs, or run on the CPU "
            "(inference falls back to the CPU if the GPU runs out of memory).")


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def run_with_cpu_fallback(work: Callable[[DeviceChoice], T], choice: DeviceChoice,
                          warn: Optional[Callable[[str], None]] = None) -> T:
    """Run ``work(choice)``; if a GPU runs out of memory, free it and rerun on CPU with a clear message."""
    try:
        return work(choice)
    except Exception as error:  # noqa: BLE001 - only OOM on GPU is handled, everything else re-raised
        if choice.device.type != "cuda" or not is_out_of_memory(error):
            raise
        message = (f"GPU {choice.device} ran out of memory ({str(error).splitlines()[0][:120]}); "
                   "retrying on CPU (slower). Use --fast or a smaller image to stay on the GPU.")
        LOG.warning(message)
        (warn or (lambda m: None))(message)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return work(choose_device("cpu"))


def precision_report(choice: DeviceChoice) -> str:
    """What ran, for users and logs: e.g. ``"bf16 (CPU autocast, avx512_bf16)"``, ``"fp32"``, ``"fp16 (CUDA)"``."""
    engine = "OpenVINO" if choice.runtime == "openvino" else "CPU autocast"
    if choice.precision == "bf16":
        return f"bf16 ({engine}, {cpu_bf16_instructions() or 'emulated: no bf16 instructions'})"
    if choice.precision == "fp16":
        return "fp16 (CUDA autocast)"
    return "fp32 (OpenVINO)" if choice.runtime == "openvino" else "fp32"

"""Device choice for inference: ``auto`` (CUDA with autocast mixed precision, else CPU float32 with the
thread count sized to the cores), explicit ``cpu``/``cuda``; out-of-memory on GPU → retry on CPU."""
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


@dataclass(frozen=True)
class DeviceChoice:
    """``device`` for the network, ``sw_device`` where stitched outputs live (always CPU here: images can be
    large), ``mixed_precision`` True on CUDA (autocast float16)."""

    device: torch.device
    sw_device: torch.device
    mixed_precision: bool

    def autocast(self):
        if self.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


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


def choose_device(device: str = "auto") -> DeviceChoice:
    """Resolve ``auto|cpu|cuda[:n]``; ``cuda`` without a GPU is an :class:`InputError`."""
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
    return DeviceChoice(torch.device("cpu"), torch.device("cpu"), False)


def describe_device(device: str = "auto") -> dict:
    """Device, torch build, CUDA capability and free memory, as a JSON-ready dict."""
    choice = choose_device(device)
    info = {"device": str(choice.device), "mixed_precision": choice.mixed_precision, "torch": torch.__version__,
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

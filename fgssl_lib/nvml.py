"""What a GPU is (compute capability, memory), asked without initialising CUDA.

``torch.cuda.get_device_capability`` and ``get_device_properties`` create the CUDA context in the calling process;
after that, Lightning's notebook multi-GPU strategy (``ddp_notebook``, which forks) refuses to start. Where CUDA is
not initialised yet, these functions ask the driver's management library (NVML, ``libnvidia-ml.so.1``, through
``ctypes``; the device index mapped through ``CUDA_VISIBLE_DEVICES`` as torch maps it) instead; once CUDA is
initialised, torch itself. ``None`` where neither can answer (no NVIDIA driver).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch


class _Memory(ctypes.Structure):
    """NVML's ``nvmlMemory_t``: bytes."""

    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _nvml_query(index: int, query: str, *outputs: Any) -> bool:
    """Call NVML's ``query(handle of CUDA device index, *outputs)``; whether every call succeeded."""
    try:
        library = ctypes.CDLL("libnvidia-ml.so.1")
        nvml_index = torch.cuda._get_nvml_device_index(index)
    except (OSError, RuntimeError, ValueError, AttributeError):
        return False
    if library.nvmlInit_v2() != 0:
        return False
    try:
        handle = ctypes.c_void_p()
        return (library.nvmlDeviceGetHandleByIndex_v2(nvml_index, ctypes.byref(handle)) == 0
                and getattr(library, query)(handle, *(ctypes.byref(o) for o in outputs)) == 0)
    finally:
        library.nvmlShutdown()


def gpu_capability(index: int | None = None) -> tuple[int, int] | None:
    """The CUDA compute capability ``(major, minor)`` of GPU ``index`` (default 0), e.g. ``(7, 5)`` for a T4."""
    if torch.cuda.is_initialized():
        return tuple(torch.cuda.get_device_capability(index))  # type: ignore[return-value]
    major, minor = ctypes.c_int(), ctypes.c_int()
    if _nvml_query(index or 0, "nvmlDeviceGetCudaComputeCapability", major, minor):
        return major.value, minor.value
    return None


def gpu_memory(index: int | None = None) -> int | None:
    """Total memory of GPU ``index`` (default 0) in bytes."""
    if torch.cuda.is_initialized():
        return int(torch.cuda.get_device_properties(index or 0).total_memory)
    memory = _Memory()
    return int(memory.total) if _nvml_query(index or 0, "nvmlDeviceGetMemoryInfo", memory) else None

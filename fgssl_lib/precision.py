"""Mixed precision: which precision ``"auto"`` means on this hardware, the ops CUDA autocast refuses, and a guard
that makes such a call visible on a CPU (CI has no GPU).

- :func:`resolve_precision`: ``bf16-mixed`` only on GPUs whose hardware has bf16 (compute capability >= 8.0: A100,
  L4, H100; ``torch.cuda.is_bf16_supported()`` also counts emulation, e.g. on a T4), ``16-mixed`` on other GPUs
  (and where the capability cannot be read), ``32-true`` on a CPU. It reads the capability without initialising
  CUDA (:func:`fgssl_lib.nvml.gpu_capability`), so Lightning's ``ddp_notebook`` can still fork afterwards.
- :func:`cpu_bf16`: whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX): there ``bf16-mixed`` trains
  the small networks of the ``cpu`` preset about 1.6 times faster than ``32-true``.
- :func:`full_precision`: a region where autocast is off, for a loss that must be computed in float32.
- :func:`cuda_autocast_guard`: raises :class:`AutocastUnsafeError` when an op of :data:`CUDA_AUTOCAST_REFUSED` is
  called while autocast is on (on any device): CUDA autocast raises for these ops, CPU autocast runs them, so a test
  under CPU bf16 autocast inside the guard fails exactly where a GPU run would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from fgssl_lib.nvml import gpu_capability

PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true")
BF16_MIN_CAPABILITY = (8, 0)
"""The first CUDA compute capability (Ampere) with bf16 in hardware."""
CUDA_AUTOCAST_REFUSED = ("binary_cross_entropy",)
"""Ops that CUDA autocast refuses ("unsafe to autocast"): ``F.binary_cross_entropy`` and ``nn.BCELoss``."""


def resolve_precision(precision: str, accelerator: str, device_index: int | None = None) -> str:
    """``precision`` with ``"auto"`` resolved for Lightning's ``accelerator`` (``"gpu"`` or ``"cpu"``); CUDA stays
    uninitialised."""
    if precision != "auto":
        return precision
    if accelerator != "gpu":
        return "32-true"
    capability = gpu_capability(device_index)
    return "bf16-mixed" if capability is not None and capability >= BF16_MIN_CAPABILITY else "16-mixed"


def cpu_bf16() -> bool:
    """Whether oneDNN runs bf16 in this CPU's hardware (AVX512-BF16 or AMX) rather than emulating it."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def full_precision(tensor: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """A region with autocast off on ``tensor``'s device: cast its inputs with ``.float()`` inside it."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def autocast_enabled() -> bool:
    """Whether autocast is on for the CPU or CUDA."""
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


class AutocastUnsafeError(RuntimeError):
    """An op that CUDA autocast refuses was called under autocast."""


class _RefusedOpGuard(TorchFunctionMode):
    """Raise on a call to an op of :data:`CUDA_AUTOCAST_REFUSED` while autocast is enabled."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None):
        name = getattr(func, "__name__", "")
        if name in CUDA_AUTOCAST_REFUSED and autocast_enabled():
            raise AutocastUnsafeError(
                f"{name} was called under autocast: CUDA autocast refuses it, so this fails on any GPU with "
                f"precision='16-mixed' or 'bf16-mixed'; compute it in float32 inside "
                f"fgssl_lib.precision.full_precision(x), or use binary_cross_entropy_with_logits"
            )
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def cuda_autocast_guard() -> Iterator[None]:
    """Inside, a call that CUDA autocast would refuse raises :class:`AutocastUnsafeError`, whatever the device."""
    with _RefusedOpGuard():
        yield

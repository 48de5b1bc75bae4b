"""Shared configuration vocabulary: preset names, name and type checking, device resolution."""

from __future__ import annotations

import numbers
import types
import typing
from collections.abc import Iterable
from typing import Any

import torch

PRESETS = ("smoke", "cpu", "colab", "paper")
"""``smoke``: CI, seconds, numbers meaningless; ``cpu``: this machine, minutes; ``colab``: a free Colab T4 session, at
most two hours per notebook, the papers' settings with shorter schedules; ``paper``: GPU, the papers' settings."""
GPU_PRESETS = ("colab", "paper")
"""The presets whose runs take GPU-hours: ResNet-50 at 224 px on a real dataset."""


def check_choice(kind: str, name: str, valid: Iterable[str]) -> str:
    """Return ``name`` if it is one of ``valid``; otherwise raise a ``ValueError`` that lists the valid names."""
    valid = sorted(valid)
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")
    return name


def matches_type(value: Any, expected: Any) -> bool:
    """Whether ``value`` fits the type hint ``expected`` (``int``, ``float``, ``str``, ``bool``, ``X | None``,
    ``list[int]``, ``dict[str, Any]``, ``Any``). A bool is not an int, an int is a float."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return True
    if expected is None or expected is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arg) for arg in args)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, origin) and all(matches_type(v, args[0] if args else Any) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(matches_type(k, args[0]) for k in value if args)
    return isinstance(value, origin or expected)


def type_name(expected: Any) -> str:
    """``int | None`` for ``typing.Optional[int]``, ``float`` for ``float``: a type hint as a user writes it."""
    return expected.__name__ if isinstance(expected, type) else str(expected).replace("typing.", "")


def check_preset(name: str) -> str:
    """Validate a preset name (one of :data:`PRESETS`)."""
    return check_choice("preset", name, PRESETS)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; any other value is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'")
    return torch.device(device)

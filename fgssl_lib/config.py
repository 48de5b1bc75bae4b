"""Shared configuration vocabulary: preset names, name checking and device resolution."""

from __future__ import annotations

from collections.abc import Iterable

import torch

PRESETS = ("smoke", "cpu", "paper")
"""``smoke``: CI, seconds, numbers meaningless; ``cpu``: this machine, minutes; ``paper``: GPU, the papers' settings."""


def check_choice(kind: str, name: str, valid: Iterable[str]) -> str:
    """Return ``name`` if it is one of ``valid``; otherwise raise a ``ValueError`` that lists the valid names."""
    valid = sorted(valid)
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")
    return name


def check_preset(name: str) -> str:
    """Validate a preset name (``smoke``, ``cpu`` or ``paper``)."""
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

"""The memory of a training step, and the largest micro-batch that fits a device (``TrainConfig.batch_size="auto"``).

A training step's device memory is modelled as ``peak(m) = fixed + m x per_image``:

- ``per_image``: the activations autograd saves for the backward pass, per image, **measured** (not estimated from
  layer shapes): the method's training loss on a CPU (:func:`measure`) at two probe batch sizes, every tensor packed
  by ``torch.autograd.graph.saved_tensors_hooks`` counted once by its storage; the slope between the two is the
  per-image memory (the intercept holds what does not grow with the batch: autocast's weight copies). Under a mixed
  precision the step runs in CPU ``bfloat16`` autocast, whose saved tensors have the sizes of CUDA's ``float16``
  ones. Images above :data:`PROBE_SIZE` px are probed at :data:`PROBE_SIZE` px, the same network, and the result
  scaled by the ratio of the areas (every feature map of a ResNet scales with it: 224 / 96 = 56 / 24 = 7 / 3); the
  few per-image tensors that do not scale (pooled features, heads, losses: kilobytes) come out a little larger.
  Times :data:`ACTIVATION_MARGIN`, for what saved tensors do not show.
- ``fixed``: the trainable parameters as weights, gradients and optimizer state (SGD's momentum; Adam's two
  moments), the frozen and momentum-encoder parameters and the buffers (the MoCo queue) once, the training store
  where it is kept on the GPU (the batched view pipeline keeps it there up to
  :data:`~fgssl_lib.train.data.STORE_MEMORY_FRACTION` of the card), and :data:`WORKSPACE` (CUDA context, cuDNN
  workspace, the allocator's slack).

:func:`micro_batch` takes the largest divisor of the effective batch whose ``peak`` stays within
:data:`MEMORY_FRACTION` of the card; gradient accumulation makes up the rest (:func:`fgssl_lib.train.fit`). A
divisor, so that every optimizer step sees the same images whatever the card (``book/reproduce_gpu.md``). The
measurement runs on the CPU so that CUDA stays uninitialised before the trainer starts (``ddp_notebook`` forks).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
from dataclasses import dataclass
from typing import Any

import torch

from fgssl_lib.methods import build, method_class
from fgssl_lib.nvml import gpu_memory

log = logging.getLogger(__name__)
GIB = 2**30
MEMORY_FRACTION = 0.9
"""The share of a card's total memory a run plans to use (14.4 GiB of a 16 GiB card)."""
WORKSPACE = 1.0 * GIB
"""Memory that is neither parameters nor saved activations: CUDA context, cuDNN workspace, allocator slack."""
ACTIVATION_MARGIN = 1.15
"""Per-image memory beyond the saved activations: their gradients while the backward pass runs, the two views'
float copies, the caching allocator's rounding (a margin chosen, not measured: no GPU was at hand to calibrate it)."""
PROBE_SIZE = 96
"""Side (px) of the probe images of :func:`measure` for larger images: a multiple of ResNet's stride 32."""
PROBE_BATCHES = (2, 3)
"""The two probe batch sizes of :func:`measure` (MoCo's split BatchNorm is off in the probe)."""


@dataclass(frozen=True)
class StepMemory:
    """The memory model of one config's training step: ``peak(m) = fixed + m x per_image`` bytes."""

    per_image: float
    """Saved activations per image (bytes), measured."""
    fixed: float
    """Bytes that do not grow with the micro-batch (parameters, optimizer state, queue, store, workspace)."""

    def peak(self, micro: int) -> float:
        """Predicted peak device memory (bytes) of a step at micro-batch ``micro``."""
        return self.fixed + micro * self.per_image


def saved_bytes(step: Any) -> int:
    """Bytes of the distinct storages that autograd saves for the backward pass while ``step()`` runs."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(storages.values())


def _probe_batch(n: int, size: int) -> dict[str, torch.Tensor]:
    """A two-view batch of ``n`` random images of ``size`` px with a centred mask (what a training step reads)."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, size, size)
    mask[:, size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    return {"view1": torch.rand(n, 3, size, size, generator=generator),
            "view2": torch.rand(n, 3, size, size, generator=generator),
            "mask1": mask, "mask2": mask.flip(-1), "label": torch.arange(n) % 2, "index": torch.arange(n)}


def probe_method(config: Any) -> torch.nn.Module:
    """The method of ``config`` as it trains, on the CPU, with random weights (the probe reads shapes, not values)
    and MoCo's split BatchNorm off (a probe batch is smaller than a group)."""
    options = {**config.method_options, **({"bn_splits": 0} if "bn_splits" in config.method_options else {})}
    probe = dataclasses.replace(config, pretrained=None, method_options=options, batch_size=PROBE_BATCHES[0],
                                effective_batch_size=None)
    dataset_options = {key: 2 for key in method_class(config.method).dataset_options}
    return build(config.method, **{**probe.backbone_options(), **dataset_options, **options}).train()


def measure(config: Any, store_bytes: float = 0.0) -> StepMemory:
    """The :class:`StepMemory` of ``config``'s training step (see the module docstring); ``store_bytes``: the
    training store kept on the device (0 when it stays on the host). Measured once per process for each network,
    image size, precision and optimizer (:data:`_MEASURED`)."""
    options = {k: v for k, v in config.method_options.items() if k != "bn_splits"}
    key = json.dumps([config.method, config.backbone, config.image_size, config.precision, config.optimizer, options,
                      store_bytes], sort_keys=True, default=str)
    if key not in _MEASURED:
        _MEASURED[key] = _measure(config, store_bytes)
    return _MEASURED[key]


_MEASURED: dict[str, StepMemory] = {}
""":func:`measure`'s results in this process, by what they depend on (not the weights, not MoCo's groups)."""


def _measure(config: Any, store_bytes: float) -> StepMemory:
    """:func:`measure` without its cache."""
    method = probe_method(config)
    mixed = config.precision not in ("32-true", "64-true")
    size = min(config.image_size, PROBE_SIZE)
    totals = []
    for n in PROBE_BATCHES:
        batch = _probe_batch(n, size)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
                method.losses(batch)["loss"]

        totals.append(saved_bytes(step))
    per_image = max(totals[1] - totals[0], 0) / (PROBE_BATCHES[1] - PROBE_BATCHES[0])
    intercept = max(totals[0] - PROBE_BATCHES[0] * per_image, 0)
    per_image *= ACTIVATION_MARGIN * (config.image_size / size) ** 2
    trainable = sum(p.numel() * p.element_size() for p in method.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in method.parameters() if not p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in method.buffers())
    states = 1 if config.optimizer == "sgd" else 2
    fixed = (2 + states) * trainable + frozen + buffers + intercept + store_bytes + WORKSPACE
    return StepMemory(per_image=float(per_image), fixed=float(fixed))


def micro_batch(effective: int, memory: StepMemory, device_bytes: float | None) -> int:
    """The largest divisor of ``effective`` (at least 2, BatchNorm's least) whose predicted peak fits
    :data:`MEMORY_FRACTION` of ``device_bytes`` (``None``, e.g. a CPU: ``effective``); the smallest such divisor when
    none fits (the run then says so when it runs out of memory)."""
    if device_bytes is None:
        return effective
    budget = MEMORY_FRACTION * device_bytes
    divisors = [m for m in range(effective, 1, -1) if effective % m == 0] or [effective]
    return next((m for m in divisors if memory.peak(m) <= budget), divisors[-1])


def store_bytes(num_images: int, side: int) -> float:
    """Bytes of a training store of ``num_images`` images stored at shorter side ``side``: image, mask and saliency,
    5 bytes a pixel, of 4:3 images (CUB's typical 500 x 375)."""
    return num_images * 5 * side * round(side * 4 / 3)


def resolve_batch(config: Any, dataset: Any | None = None) -> Any:
    """``config`` with ``batch_size="auto"`` replaced by the micro-batch that fits its device (:func:`micro_batch` of
    :func:`measure`); on a CPU, the effective batch. ``dataset``: the training set, whose size bounds the training
    store the batched view pipeline keeps on the GPU (unknown: the largest store it keeps there)."""
    from fgssl_lib.config import resolve_device
    from fgssl_lib.train.data import STORE_MEMORY_FRACTION

    if config.batch_size != "auto":
        return config
    total = device_bytes(resolve_device(config.device))
    effective = config.effective_batch()
    if total is None:
        return dataclasses.replace(config, batch_size=effective)
    store = 0.0
    if config.view_pipeline != "per_sample":
        images = len(dataset) if dataset is not None else None
        if images is not None and config.num_images is not None:
            images = min(images, config.num_images)
        store = STORE_MEMORY_FRACTION * total
        if images is not None:
            store = min(store, store_bytes(images, config.store_side or config.image_size))
    micro = micro_batch(effective, measure(config, store), total)
    log.info("batch_size='auto': micro-batch %d x %d accumulated = %d on a %.1f GiB device", micro,
             effective // micro, effective, total / GIB)
    return dataclasses.replace(config, batch_size=micro)


def device_bytes(device: torch.device) -> int | None:
    """Total memory of a CUDA ``device`` (asked without initialising CUDA); ``None`` for a CPU."""
    return gpu_memory(device.index) if device.type == "cuda" else None

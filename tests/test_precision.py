"""Mixed precision on a CPU: ``auto`` picks bf16 only on bf16 hardware, and no method calls an op that CUDA autocast
refuses (the guard makes that GPU-only failure visible here)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fgssl_lib import nvml, precision
from fgssl_lib.methods import METHODS, build
from fgssl_lib.precision import AutocastUnsafeError, cuda_autocast_guard, resolve_precision
from fgssl_lib.train import TrainConfig


def tiny_batch(n: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, size, size)
    mask[:, 8:24, 8:24] = 1
    return {"view1": torch.rand(n, 3, size, size, generator=g), "view2": torch.rand(n, 3, size, size, generator=g),
            "mask1": mask, "mask2": mask.flip(-1), "label": torch.arange(n) % 3, "index": torch.arange(n)}


def tiny_method(name: str):
    options = {"backbone": "resnet_narrow", "small_input": True}
    if name.startswith("supervised"):
        return build(name, num_classes=3, **options)
    heads = {"hidden_dim": 32, "proj_dim": 16}
    if name.startswith(("mocov2", "lcr")):
        heads["queue_size"] = 64
    return build(name, **options, **({} if name == "simclr" else heads))


@pytest.mark.parametrize("name", METHODS)
def test_training_loss_calls_no_op_cuda_autocast_refuses(name: str) -> None:
    method = tiny_method(name).train()
    with cuda_autocast_guard():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = method.losses(tiny_batch())
        losses["loss"].backward()
    assert torch.isfinite(losses["loss"].float())


def test_guard_catches_a_deliberate_offender() -> None:
    p, t = torch.rand(4, requires_grad=True), torch.rand(4)
    with cuda_autocast_guard():
        F.binary_cross_entropy(p, t)  # allowed without autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with pytest.raises(AutocastUnsafeError, match="binary_cross_entropy was called under autocast"):
                F.binary_cross_entropy(p, t)
            with pytest.raises(AutocastUnsafeError):
                torch.nn.BCELoss()(p, t)


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "16-mixed"), ((8, 0), "bf16-mixed"),
                                                      ((9, 0), "bf16-mixed"), ((6, 1), "16-mixed"), (None, "16-mixed")])
def test_auto_precision_uses_bf16_only_on_bf16_hardware(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int],
                                                        expected: str) -> None:
    # a T4 (7.5) reports torch.cuda.is_bf16_supported() == True through emulation: it must not count
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(precision, "gpu_capability", lambda index=None: capability)
    assert resolve_precision("auto", "gpu") == expected
    config = TrainConfig.preset("smoke")
    monkeypatch.setattr(TrainConfig, "accelerator", lambda self: "gpu")
    assert config.resolved_precision() == expected
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"


def test_resolving_the_precision_leaves_cuda_uninitialised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's ddp_notebook forks the notebook's process, which it refuses once CUDA is initialised: the precision
    of a config on a (mocked) GPU is read through NVML, never through torch.cuda.get_device_capability."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    asked = []
    monkeypatch.setattr(nvml, "_nvml_query", lambda index, query, *out: asked.append(query) or False)
    config = TrainConfig.preset("smoke", device="cuda")
    assert config.resolved_precision() == "16-mixed"  # NVML cannot answer here: the precision every GPU has
    assert asked == ["nvmlDeviceGetCudaComputeCapability"]
    assert not torch.cuda.is_initialized()


def test_cpu_preset_trains_in_bf16_only_on_a_cpu_with_bf16_hardware(monkeypatch):
    from fgssl_lib.train import TrainConfig
    from fgssl_lib.train import config as train_config

    monkeypatch.setattr(train_config, "cpu_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert TrainConfig.preset("cpu", method="byol").precision == "bf16-mixed"
    assert TrainConfig.preset("smoke", method="byol").precision == "auto"  # the tests' numbers stay float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU resolves "auto" itself
    assert TrainConfig.preset("cpu", method="byol").precision == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train_config, "cpu_bf16", lambda: False)  # emulated bf16 would be slower than float32
    assert TrainConfig.preset("cpu", method="byol").precision == "auto"

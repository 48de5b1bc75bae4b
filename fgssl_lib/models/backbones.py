"""ResNet backbones with named stage maps.

A :class:`Backbone` takes images as float ``N x 3 x S x S`` in ``[0, 1]`` (the view contract), normalises them with
the ImageNet mean/std as its first op, and runs the ResNet stages ``stem -> layer1 -> layer2 -> layer3 -> layer4``.
``forward_maps`` returns the requested stage maps by name (CVSA aligns ``layer3``, LCR takes Grad-CAM on ``layer4``);
``forward`` returns the global-average-pooled ``layer4`` features (``N x feature_dim``).

Architectures (``BACKBONES``):

- ``resnet18`` / ``resnet50``: torchvision's ResNets (He et al. 2016), optionally with ImageNet weights;
- ``resnet_narrow``: the same four residual stages with :data:`NARROW_WIDTHS` channels and one basic block per stage,
  for the ``cpu`` preset on this machine (2 shared cores).

Weights and activations are kept ``channels_last`` (NHWC): oneDNN's CPU convolutions and cuDNN's tensor-core
convolutions under AMP are faster in that layout (``python -m fgssl_lib.bench layout`` measures it); the values are
the same up to float rounding, and shapes and indexing are unchanged.

``small_input=True`` replaces the 7x7/2 stem convolution and the max-pool by a 3x3 convolution of stride
``stem_stride`` (1: the usual CIFAR-style stem), so the total stride is ``8 * stem_stride`` instead of 32: a 32 px
image still gives a 4x4 ``layer4`` map. :func:`small_input_stem` picks the stem for an image size (a 64 px image
gets stride 2 and a 4x4 map: on CPU the stride-1 stem costs ~4x the compute for the same last-map size rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from lightly.models.batchnorm import SplitBatchNorm
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, conv1x1

from fgssl_lib.config import check_choice

BACKBONES = ("resnet18", "resnet50", "resnet_narrow")
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
EARLY_STAGES = ("stem", "layer1", "layer2")
"""Frozen in the second stage of CVSA's dual-stage recipe (CVSA Sec. 4)."""

NARROW_WIDTHS = (16, 32, 64, 128)
"""Channels of ``layer1..layer4`` of ``resnet_narrow`` (the stem has ``NARROW_WIDTHS[0]``)."""
NARROW_BLOCKS = (1, 1, 1, 1)
"""Basic blocks per stage of ``resnet_narrow``."""

MIN_LAST_MAP = 4
"""Smallest side of the ``layer4`` map that the automatic stem choice allows."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _narrow_resnet(widths: Sequence[int] = NARROW_WIDTHS, blocks: Sequence[int] = NARROW_BLOCKS) -> nn.Module:
    """A ResNet with torchvision's ``BasicBlock`` and the given stage widths; same attribute names as torchvision's."""
    net = nn.Module()
    net.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(widths[0])
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    inplanes = widths[0]
    for i, (planes, n) in enumerate(zip(widths, blocks)):
        stride = 1 if i == 0 else 2
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(inplanes, planes, stride, downsample)]
        layers += [BasicBlock(planes, planes) for _ in range(n - 1)]
        setattr(net, f"layer{i + 1}", nn.Sequential(*layers))
        inplanes = planes
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def _torchvision_resnet(name: str, pretrained: str | None) -> nn.Module:
    """torchvision's ResNet ``name``; ``pretrained="imagenet"`` loads its default ImageNet weights (needs a network)."""
    if pretrained is None:
        return torchvision.models.get_model(name, weights=None)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except OSError as error:  # urllib's URLError and socket errors are OSErrors
        raise RuntimeError(
            f"could not download the ImageNet weights of {name} ({weights.url}): {error}. "
            "Connect to the internet (e.g. on Colab), or place the file in torch.hub's checkpoint directory "
            f"({torch.hub.get_dir()}/checkpoints), or train from scratch with pretrained=None."
        ) from error


class Backbone(nn.Module):
    """A ResNet trunk (no classifier) with named stage maps; input float ``N x 3 x S x S`` in ``[0, 1]``.

    Args:
        name: one of :data:`BACKBONES`.
        small_input: 3x3/1 stem without max-pool, for images of at most 96 px (last map is ``S/8``).
        pretrained: ``None`` or ``"imagenet"`` (torchvision weights; ``resnet18``/``resnet50`` with the standard stem).
    """

    def __init__(
        self, name: str = "resnet18", small_input: bool = False, stem_stride: int = 1, pretrained: str | None = None
    ) -> None:
        super().__init__()
        check_choice("backbone", name, BACKBONES)
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if pretrained is not None:
            check_choice("pretrained", pretrained, ("imagenet",))
            if name == "resnet_narrow" or small_input:
                raise ValueError(
                    f"pretrained='imagenet' needs torchvision's own architecture; {name!r} with small_input="
                    f"{small_input} has no ImageNet weights. Use resnet18/resnet50 with small_input=False, "
                    "or pretrained=None."
                )
        net = _narrow_resnet() if name == "resnet_narrow" else _torchvision_resnet(name, pretrained)
        if small_input:
            net.conv1 = nn.Conv2d(3, net.conv1.out_channels, kernel_size=3, stride=stem_stride, padding=1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
            net.maxpool = nn.Identity()
        self.name = name
        self.small_input = small_input
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stage_channels: dict[str, int] = {"stem": net.conv1.out_channels}
        for stage in STAGES[1:]:
            last_block = getattr(self, stage)[-1]
            last_bn = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
            self.stage_channels[stage] = last_bn.num_features
        self.feature_dim: int = self.stage_channels["layer4"]
        self.frozen_stages: tuple[str, ...] = ()
        self.use_memory_format(torch.channels_last)

    def use_memory_format(self, memory_format: torch.memory_format) -> None:
        """Keep weights and stage maps in ``memory_format`` (``torch.channels_last``, the default, or
        ``torch.contiguous_format``: NCHW, what ``python -m fgssl_lib.bench layout`` compares against)."""
        self.memory_format = memory_format
        self.to(memory_format=memory_format)

    def forward_maps(self, x: Tensor, stages: Sequence[str] = ("layer3", "layer4")) -> dict[str, Tensor]:
        """Stage maps by name: ``{stage: N x C_stage x H_stage x W_stage}``; stops after the deepest requested."""
        for stage in stages:
            check_choice("stage", stage, STAGES)
        last = max(STAGES.index(s) for s in stages)
        x = ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)  # Nx3xSxS, ImageNet-normalised
        maps: dict[str, Tensor] = {}
        for stage in STAGES[: last + 1]:
            x = getattr(self, stage)(x)
            if stage in stages:
                maps[stage] = x
        return maps

    def forward(self, x: Tensor) -> Tensor:
        """Global-average-pooled ``layer4`` features, ``N x feature_dim``."""
        return self.forward_maps(x, ("layer4",))["layer4"].mean(dim=(2, 3))

    def freeze_early(self) -> None:
        """Freeze the stem, ``layer1`` and ``layer2`` (no gradients, BatchNorm statistics fixed) for dual-stage."""
        self.frozen_stages = EARLY_STAGES
        for stage in EARLY_STAGES:
            getattr(self, stage).requires_grad_(False)
        self.train(self.training)

    def split_batchnorm(self, num_splits: int) -> None:
        """:func:`split_batchnorm` on every BatchNorm of the backbone (MoCo's single-GPU shuffled BatchNorm)."""
        split_batchnorm(self, num_splits)

    def train(self, mode: bool = True) -> Backbone:
        """Like ``nn.Module.train``, but frozen stages stay in eval mode so their BatchNorm statistics do not move."""
        super().train(mode)
        for stage in self.frozen_stages:
            getattr(self, stage).eval()
        return self


def split_batchnorm(module: nn.Module, num_splits: int) -> None:
    """Make every ``BatchNorm2d`` in ``module`` a lightly ``SplitBatchNorm``: in training each of ``num_splits`` equal
    groups of the batch is normalised with its own statistics, as ``num_splits`` GPUs would; in eval the averaged
    statistics are used, so a trained network's eval output is unchanged. Weights and running statistics carry over
    (the statistics are repeated per group)."""
    if num_splits < 2:
        raise ValueError(f"num_splits must be at least 2 to split a batch, got {num_splits}")
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                split = _ContiguousSplitBatchNorm(child.num_features, num_splits, eps=child.eps,
                                                  momentum=child.momentum)
                with torch.no_grad():
                    split.weight.copy_(child.weight)
                    split.bias.copy_(child.bias)
                    split.running_mean.copy_(child.running_mean.repeat(num_splits))
                    split.running_var.copy_(child.running_var.repeat(num_splits))
                split.weight.requires_grad_(child.weight.requires_grad)
                split.bias.requires_grad_(child.bias.requires_grad)
                split.train(child.training)
                setattr(parent, name, split)


def regroup_batchnorm_statistics(state: dict[str, Tensor], model: nn.Module) -> None:
    """Fit ``state`` (a state dict of ``model``) to ``model``'s BatchNorm groups, in place: running statistics saved
    with another number of groups (MoCo's ``bn_splits`` of another micro-batch) are averaged over the saved groups,
    as evaluation averages them, and repeated for each of the model's groups."""
    for name, module in model.named_modules():
        if not isinstance(module, nn.BatchNorm2d):
            continue
        groups, features = getattr(module, "num_splits", 1), module.num_features
        for key in (f"{name}.running_mean", f"{name}.running_var"):
            saved = state.get(key)
            if saved is not None and saved.numel() != groups * features and saved.numel() % features == 0:
                state[key] = saved.reshape(-1, features).mean(dim=0).repeat(groups)


class _ContiguousSplitBatchNorm(SplitBatchNorm):
    """lightly's ``SplitBatchNorm`` on a ``channels_last`` map: its training path regroups the batch with ``view``,
    which needs the NCHW layout, so the map is made contiguous first (one copy; the next convolution returns to
    ``channels_last`` because its weight is)."""

    def forward(self, input: Tensor) -> Tensor:
        return super().forward(input.contiguous())


def small_input_stem(image_size: int) -> dict[str, object]:
    """Stem options for square images of side ``image_size``: the standard stem above 96 px, else the small stem
    with the largest stride (2 or 1) that keeps the ``layer4`` map at least :data:`MIN_LAST_MAP` wide."""
    if image_size > 96:
        return {"small_input": False, "stem_stride": 1}
    stride = 2 if image_size // 16 >= MIN_LAST_MAP else 1
    return {"small_input": True, "stem_stride": stride}


def build_backbone(name: str, **options: object) -> Backbone:
    """Build the backbone ``name`` (one of :data:`BACKBONES`) with ``small_input`` / ``stem_stride`` /
    ``pretrained`` options."""
    check_choice("backbone", name, BACKBONES)
    return Backbone(name, **options)

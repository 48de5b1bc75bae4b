"""The two bases of every method, as solo-learn's ``BaseMethod`` / ``BaseMomentumMethod``:

- :class:`SSLMethod`, a ``pytorch_lightning.LightningModule``: backbone, optimizer and schedule, logging, ``embed``;
  SimCLR and the supervised reference derive from it;
- :class:`MomentumMethod`: adds the momentum (target) encoder, its EMA pairs and schedule; BYOL and MoCo v2 (and so
  CVSA and LCR) derive from it.

Data flow: a collated two-view batch ``dict(view1, view2, mask1, mask2, label, index)`` (views float
``N x 3 x S x S`` in [0, 1], masks ``N x S x S``) -> :meth:`SSLMethod.losses` -> ``dict`` of named scalar losses
(``loss`` is optimised; every entry is logged per step) -> optimizer step.

Extension points (CVSA and LCR subclass BYOL / MoCo v2 through them):

- ``losses(batch) -> dict[str, Tensor]``: must contain ``loss``. The default calls :meth:`contrastive_forward` and
  returns ``{"loss": loss_ctr, "loss_ctr": loss_ctr}``; a method that adds a term overrides it, calls
  ``self.contrastive_forward(batch)`` and adds its own entries (``loss_align``, ``loss_kl``, ...).
- ``contrastive_forward(batch) -> PairOutput``: the baseline's two-view forward. It returns the online encoding of
  each view (``out.online[v]``: stage maps with grad, pooled features and, for LCR's DualPooling, the branch map
  that pooled them), the momentum encoder's stage maps (``out.target_maps[v][stage]``, no grad) and the contrastive
  loss ``loss_ctr``. The stages it keeps are ``self.stages`` (default ``("layer4",)``): CVSA sets
  ``("layer3", "layer4")`` to get the stage-3 maps of both views; LCR takes ``out.online[0].maps["layer4"]``
  (``phi``) and differentiates ``out.loss_ctr`` with respect to it.
- ``momentum_pairs() -> list[(online, target)]`` (momentum methods): the modules updated by EMA at the start of every
  optimizer step (lightly's ``update_momentum`` with a ``cosine_schedule`` from ``momentum_start`` to
  ``momentum_end``): the backbone and projection head with ``self.momentum_encoder``'s, then every target module a
  method adds with :meth:`MomentumMethod.momentum_twin` (CVSA's conv projector ``g_c'``, LCR DualPooling's branch).
- ``embed(images) -> N x D`` (eval mode, no grad): default the GAP backbone features of the online encoder; LCR
  overrides ``embed_features`` with its weighted pooling. ``saliency(images) -> N x S x S`` in [0, 1]: a method with
  a map of its own returns it through a :class:`~fgssl_lib.saliency.maps.MapSource`; ``NotImplementedError`` here.
- instances carry ``views`` and ``view_params``, which :func:`fgssl_lib.train.fit` passes to
  ``fgssl_lib.views.build_views(method.views, size=..., **method.view_params)``; the registry
  (:mod:`fgssl_lib.methods`) says which views each method trains on.
- class attribute ``dataset_options``: names of dataset attributes the trainer passes as constructor options
  (``("num_classes",)`` for the supervised reference).

Every constructor argument is saved with ``save_hyperparameters`` (plain values only, so checkpoints load with
``torch.load(weights_only=True)``); subclasses take ``**base_options`` and pass them on to ``super().__init__``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import pytorch_lightning as pl
import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from fgssl_lib.config import check_choice
from fgssl_lib.models import Backbone, build_backbone
from fgssl_lib.saliency.maps import MapSource, evaluating

OPTIMIZERS = ("sgd", "adam", "adamw")


class Encoding(NamedTuple):
    """The online encoder's output for one view: stage maps ``{stage: N x C x H x W}``, the pooled feature ``N x D``
    that feeds the head, and the map that weighted the pooling where one did (LCR's DualPooling branch map ``A``,
    ``N x H x W``; ``None`` for global average pooling)."""

    maps: dict[str, Tensor]
    features: Tensor
    branch_map: Tensor | None = None


class PairOutput(NamedTuple):
    """What a baseline's two-view forward produces (index ``v`` = 0 for ``view1``, 1 for ``view2``).

    ``online[v]``: the online :class:`Encoding` of view ``v`` (``None`` where the view was not passed through the
    online encoder); ``target_maps[v]``: the momentum encoder's maps (empty where not computed, or for methods
    without a momentum encoder); ``loss_ctr``: the contrastive loss (scalar).
    """

    online: tuple[Encoding | None, Encoding | None]
    target_maps: tuple[dict[str, Tensor], dict[str, Tensor]]
    loss_ctr: Tensor

    @property
    def maps(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The online stage maps of each view (an empty dict where the view was not encoded online)."""
        return tuple(e.maps if e is not None else {} for e in self.online)  # type: ignore[return-value]


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` without gradients: the target (momentum) twin of an online module."""
    target = copy.deepcopy(module)
    deactivate_requires_grad(target)
    return target


class MomentumEncoder(nn.Module):
    """Momentum (target) encoder of BYOL / MoCo: deep copies of the backbone and the projection head, no gradients.

    Its parameters follow the online ones by EMA, ``xi <- m * xi + (1 - m) * theta`` (BYOL Eq. 1, MoCo Eq. 2), done by
    :meth:`MomentumMethod.update_momentum` with lightly's ``update_momentum``.
    """

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = momentum_copy(backbone)
        self.head = momentum_copy(head)

    @torch.no_grad()
    def forward(self, x: Tensor, stages: Sequence[str] = ("layer4",)) -> tuple[dict[str, Tensor], Tensor]:
        """``x`` float ``N x 3 x S x S`` in [0, 1] -> (stage maps ``{stage: N x C x H x W}``, projection ``N x d``)."""
        maps = self.backbone.forward_maps(x, tuple(dict.fromkeys((*stages, "layer4"))))
        return maps, self.head(maps["layer4"].mean(dim=(2, 3)))


class SSLMethod(pl.LightningModule):
    """Base of every method: backbone, optimizer/schedule, logging, ``embed``.

    A training step sees one micro-batch: its BatchNorm statistics and any in-batch term (SimCLR's negatives) are the
    micro-batch's; under gradient accumulation the trainer steps the optimizer once per effective batch, and
    :class:`MomentumMethod` moves its target network once per optimizer step.

    Args:
        backbone: backbone name (:data:`fgssl_lib.models.BACKBONES`).
        small_input: 3x3 stem without max-pool (images <= 96 px); ``stem_stride``: its stride (1 or 2).
        pretrained: ``None`` or ``"imagenet"``.
        freeze_early: freeze stem + layer1 + layer2 (second stage of the dual-stage recipe).
        views: view generator name (``rrc``, ``saliency_swap``, ``copy_paste``); the registry passes the method's.
        view_params: extra keyword arguments for ``build_views``.
        optimizer: ``sgd`` (momentum ``sgd_momentum``, Nesterov off), ``adam`` or ``adamw``.
        lr: peak learning rate (absolute: scale by batch size in the config, not here).
        weight_decay: L2 weight decay.
        sgd_momentum: SGD momentum.
        warmup_epochs: linear warm-up before the per-step cosine decay to 0.
    """

    dataset_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        backbone: str = "resnet18",
        small_input: bool = False,
        stem_stride: int = 1,
        pretrained: str | None = None,
        freeze_early: bool = False,
        views: str | None = None,
        view_params: dict[str, Any] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.05,
        weight_decay: float = 1e-4,
        sgd_momentum: float = 0.9,
        warmup_epochs: int = 0,
    ) -> None:
        super().__init__()
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.save_hyperparameters()
        self.backbone = build_backbone(
            backbone, small_input=small_input, stem_stride=stem_stride, pretrained=pretrained
        )
        if freeze_early:
            self.backbone.freeze_early()
        self.views: str = views or "rrc"
        self.view_params: dict[str, Any] = dict(view_params or {})
        self.stages: tuple[str, ...] = ("layer4",)
        self.method_name: str = type(self).__name__.lower()

    # ----------------------------------------------------------------- forward pieces shared by the methods
    def encode(self, x: Tensor) -> Encoding:
        """Online backbone: ``x`` ``N x 3 x S x S`` -> maps at ``self.stages`` + ``layer4`` and the GAP ``N x D``."""
        maps = self.backbone.forward_maps(x, tuple(dict.fromkeys((*self.stages, "layer4"))))
        return Encoding(maps, maps["layer4"].mean(dim=(2, 3)))

    def contrastive_forward(self, batch: dict[str, Tensor]) -> PairOutput:
        """The baseline's two-view forward and contrastive loss (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} does not define a two-view contrastive forward")

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named scalar losses of one batch; ``loss`` is the one optimised."""
        out = self.contrastive_forward(batch)
        return {"loss": out.loss_ctr, "loss_ctr": out.loss_ctr}

    # ----------------------------------------------------------------- Lightning hooks
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """:meth:`losses`; every entry is logged per step (``self.log_dict``)."""
        losses = self.losses(batch)
        if "loss" not in losses:
            raise KeyError(f"{type(self).__name__}.losses must return a 'loss' entry; got {sorted(losses)}")
        self.log_dict(
            {name: value.detach().float() for name, value in losses.items()},
            on_step=True,
            on_epoch=False,
            prog_bar=False,
            batch_size=batch["view1"].shape[0],
        )
        self.log("train_loss", losses["loss"].detach().float(), prog_bar=True, on_step=True, logger=False)
        return losses["loss"]

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD / Adam / AdamW with a linear warm-up then a per-step cosine decay to 0 (SimCLR, BYOL, MoCo v2)."""
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.sgd_momentum, weight_decay=hp.weight_decay)
        else:
            cls = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
            opt = cls(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(int(total * hp.warmup_epochs / max(self.trainer.max_epochs or 1, 1)), total - 1)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup)
        if warmup > 0:
            linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=warmup)
            scheduler = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warmup])
        else:
            scheduler = cosine
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the registry name so that a checkpoint can be rebuilt (and refused for another method)."""
        checkpoint["fgssl_method"] = self.method_name

    # ----------------------------------------------------------------- evaluation interface
    def embed(self, images: Tensor) -> Tensor:
        """Features for evaluation: ``images`` float ``N x 3 x S x S`` in [0, 1] -> ``N x D`` (eval mode, no grad,
        the train/eval mode restored)."""
        with evaluating(self):
            return self.embed_features(images.to(self.device)).float()

    def embed_features(self, images: Tensor) -> Tensor:
        """What :meth:`embed` returns, without the mode/grad handling; default: GAP backbone features, ``N x D``."""
        return self.backbone(images)

    def saliency(self, images: Tensor) -> Tensor:
        """``N x S x S`` maps in [0, 1] of :meth:`map_source`, where the method has one."""
        return self.map_source()(images)

    def map_source(self) -> MapSource:
        """The method's own map (CVSA's intensity, LCR's branch map); the baselines have none."""
        raise NotImplementedError(f"{type(self).__name__} has no saliency map; CVSA and LCR have one")

    def localisation_map(self) -> MapSource:
        """The map self-saliency localises with (:mod:`fgssl_lib.train.localiser`): the method's own
        (:meth:`map_source`), else its target encoder's :class:`EmbeddingMap`."""
        try:
            return self.map_source()
        except NotImplementedError:
            return EmbeddingMap(self)


class EmbeddingMap(MapSource):
    """Where an embedding looks: ``ReLU(sum_c mean(A_c) A_c)`` over the channels ``c`` of the last map ``A`` of the
    method's target (momentum) encoder, or of its backbone where it has none; ``N x h x w``.

    For a GAP embedding ``f = mean_p A(p)`` this is the Grad-CAM of ``<f, sg(f)>`` (the evaluation's self target,
    :mod:`fgssl_lib.eval.cams`): the gradient of ``<f, sg(f)>`` with respect to ``A_c(p)`` is ``f_c / hw``, so
    Grad-CAM's channel weights are ``f_c / hw``. Computed in closed form: one forward pass, no gradients.
    """

    def __init__(self, method: SSLMethod) -> None:
        super().__init__(method)
        target = getattr(method, "momentum_encoder", None)
        self.backbone = target.backbone if target is not None else method.backbone

    def compute(self, images: Tensor) -> Tensor:
        maps = self.backbone.forward_maps(images, ("layer4",))["layer4"]  # NxCxhxw
        return torch.relu(torch.einsum("nc,nchw->nhw", maps.mean(dim=(2, 3)), maps))  # Nxhxw


class MomentumMethod(SSLMethod):
    """Base of the methods with a momentum (target) encoder, BYOL and MoCo v2: the EMA machinery.

    A subclass sets, in its ``__init__``, ``projection_head`` (the online head ``g``) and then ``momentum_encoder =
    MomentumEncoder(self.backbone, self.projection_head)``, in that order (it fixes the parameters' creation order,
    which checkpoints keep).

    Args:
        momentum_start, momentum_end: EMA momentum of the target network, cosine-scheduled over training
            (lightly's ``cosine_schedule``); equal for a constant momentum (MoCo).
        **base_options: the options of :class:`SSLMethod`.
    """

    projection_head: nn.Module
    """The online projection head ``g``; its momentum twin is ``momentum_encoder.head``."""
    momentum_encoder: MomentumEncoder
    """The target encoder ``f', g'`` (no gradients, EMA of the online ones)."""

    def __init__(self, momentum_start: float = 0.99, momentum_end: float = 1.0, **base_options: Any) -> None:
        super().__init__(**base_options)
        self.twins: list[tuple[nn.Module, nn.Module]] = []

    def momentum_twin(self, online: nn.Module) -> nn.Module:
        """A momentum copy of ``online`` (:func:`momentum_copy`) that follows it by EMA (:meth:`momentum_pairs`)."""
        target = momentum_copy(online)
        self.twins.append((online, target))
        return target

    def encode_target(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Momentum encoder (no grad): ``x`` -> (maps at ``self.stages`` + ``layer4``, projection ``N x d``). MoCo
        wraps it in its batch shuffle; what it computes is :meth:`target_forward`."""
        return self.target_forward(x)

    @torch.no_grad()
    def target_forward(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The momentum encoder's maps and projection of ``x`` (default: GAP then the momentum head)."""
        return self.momentum_encoder(x, self.stages)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) module pairs updated by EMA: the backbone and projection head, then the twins."""
        encoder = self.momentum_encoder
        return [(self.backbone, encoder.backbone), (self.projection_head, encoder.head), *self.twins]

    def momentum_value(self) -> float:
        """EMA momentum at the current step: cosine from ``momentum_start`` to ``momentum_end`` over training."""
        start, end = self.hparams.momentum_start, self.hparams.momentum_end
        if self._trainer is None:
            return start
        max_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        return cosine_schedule(self.trainer.global_step, max_steps, start, end)

    @torch.no_grad()
    def update_momentum(self) -> None:
        """EMA update of every pair of :meth:`momentum_pairs` with :meth:`momentum_value`."""
        m = self.momentum_value()
        for online, target in self.momentum_pairs():
            update_momentum(online, target, m)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """The EMA update (:meth:`update_momentum`) once per optimizer step (at the first micro-batch of a gradient
        accumulation), then :meth:`SSLMethod.training_step`."""
        if self._trainer is None or batch_idx % self.trainer.accumulate_grad_batches == 0:
            self.update_momentum()
        return super().training_step(batch, batch_idx)

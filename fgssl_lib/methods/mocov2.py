"""MoCo v2 (Chen et al. 2020, "Improved baselines with momentum contrastive learning").

A query encoder (backbone + lightly's ``MoCoProjectionHead``, the v2 MLP) is contrasted against a momentum key
encoder and a queue of ``queue_size`` past keys: InfoNCE with temperature ``temperature`` (MoCo Eq. 1), which is
lightly's ``NTXentLoss(temperature, memory_bank_size=(K, d))``. The key encoder's momentum is constant (``0.999``
in the paper: ``momentum_start == momentum_end``). The queue is saved in checkpoints so a resumed run is identical.

Across processes (DDP) the keys of every rank are gathered before they are enqueued (MoCo's ``concat_all_gather``;
lightly's ``gather_distributed``), so every rank holds the same queue of the whole batch's keys and DDP's buffer
broadcast from rank 0 changes nothing. The key encoder sees the batch shuffled (MoCo's shuffled BatchNorm, lightly's
``batch_shuffle``; across ranks when distributed) so that a query and its key never share BatchNorm statistics. On
one device a shuffle alone changes nothing (one BatchNorm group holds the whole batch), so ``bn_splits`` normalises
the backbones' BatchNorm in that many groups, as that many GPUs would (lightly's ``SplitBatchNorm``, as MoCo's
single-GPU demo does); the ``paper`` preset sets 32 images per group, MoCo's per-GPU batch. The groups split the
micro-batch (``TrainConfig.batch_size``): with gradient accumulation the trainer keeps the groups' size and lowers
their number (:func:`fgssl_lib.train.fit.build_method`).

With gradient accumulation (``TrainConfig.effective_batch_size``) each micro-batch enqueues its keys: a later
micro-batch of the same optimizer step also contrasts with the keys of the earlier ones, which the same key encoder
computed (the key encoder moves once per optimizer step, :meth:`MomentumMethod.training_step`).
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import batch_shuffle, batch_unshuffle
from torch import Tensor

from fgssl_lib.methods.base import MomentumEncoder, MomentumMethod, PairOutput
from fgssl_lib.models.backbones import regroup_batchnorm_statistics


class MoCoV2(MomentumMethod):
    """MoCo v2. Args: ``hidden_dim`` / ``proj_dim`` (paper 2048 / 128), ``queue_size`` K (paper 65536),
    ``temperature`` tau (paper 0.2), ``bn_splits`` (0: one BatchNorm group per device; ``g >= 2``:
    ``g`` groups, so the key encoder's shuffle puts a query and its key in different groups; the batch size must be a
    multiple of ``g``); see :class:`MomentumMethod`."""

    def __init__(
        self,
        hidden_dim: int = 2048,
        proj_dim: int = 128,
        queue_size: int = 65536,
        temperature: float = 0.2,
        bn_splits: int = 0,
        **base_options: Any,
    ) -> None:
        base_options.setdefault("momentum_start", 0.999)
        base_options.setdefault("momentum_end", base_options["momentum_start"])
        super().__init__(**base_options)
        self.bn_splits = bn_splits
        if bn_splits:
            self.backbone.split_batchnorm(bn_splits)  # before the key encoder copies it
        self.projection_head = MoCoProjectionHead(self.backbone.feature_dim, hidden_dim, proj_dim)
        self.momentum_encoder = MomentumEncoder(self.backbone, self.projection_head)
        self.criterion = NTXentLoss(
            temperature=temperature, memory_bank_size=(queue_size, proj_dim), gather_distributed=True
        )

    def encode_target(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The key encoder on the shuffled batch (shuffled BatchNorm), its keys put back in order: ``x`` ``N x 3 x S x
        S`` -> (``{}``, keys ``N x d``). No MoCo-based method reads the key encoder's maps, so they are not returned
        (unshuffling them across ranks would gather every map)."""
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        shuffled, order = batch_shuffle(x, distributed=distributed)
        _, key = super().encode_target(shuffled)  # Nxd in shuffled order
        return {}, batch_unshuffle(key, order, distributed=distributed)

    def contrastive_forward(self, batch: dict[str, Tensor]) -> PairOutput:
        """InfoNCE of query ``q = g(f(view1))`` against key ``k = g'(f'(view2))`` and the queue (MoCo Eq. 1); only
        view 1 goes through the online encoder, so view 2's online encoding is ``None`` and the unused ``target_maps``
        are ``{}``."""
        encoding = self.encode(batch["view1"])  # features: NxD
        query = self.projection_head(encoding.features)  # Nxd
        _, key = self.encode_target(batch["view2"])  # Nxd, no grad
        loss = self.criterion(query, key)
        return PairOutput((encoding, None), ({}, {}), loss)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also save the queue (lightly keeps it as a non-persistent buffer)."""
        super().on_save_checkpoint(checkpoint)
        bank = self.criterion.memory_bank
        checkpoint["moco_queue"] = {"bank": bank.bank.detach().cpu(), "bank_ptr": bank.bank_ptr.detach().cpu()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the queue saved by :meth:`on_save_checkpoint`; BatchNorm statistics saved with another
        ``bn_splits`` (a run resumed at another micro-batch) are regrouped for this model's."""
        if "state_dict" in checkpoint:
            regroup_batchnorm_statistics(checkpoint["state_dict"], self)
        bank = self.criterion.memory_bank
        saved = checkpoint["moco_queue"]
        if saved["bank"].shape != bank.bank.shape:
            raise ValueError(
                f"the checkpoint's MoCo queue has shape {tuple(saved['bank'].shape)}, this model's "
                f"{tuple(bank.bank.shape)}: build the method with the checkpoint's queue_size and proj_dim"
            )
        bank.bank.copy_(saved["bank"])
        bank.bank_ptr.copy_(saved["bank_ptr"])

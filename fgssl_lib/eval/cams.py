"""CAM sources for MaxBoxAcc and the Grad-CAM pictures: ``images float [0,1] N x 3 x S x S -> N x S x S`` in [0, 1].

- :func:`gradcam_maps` (:class:`GradCAMMap`): Grad-CAM (Selvaraju et al. 2017) through ``pytorch_grad_cam.GradCAM``
  on the encoder's last stage (``layer4``). An SSL model has no class logits, so the target is an embedding
  similarity:

  * ``target="self"`` (default): ``<f(x), sg(f(x))>``, the dot product of the embedding with its own detached value.
    Its gradient is ``f(x)`` itself, so the map shows what the embedding is made of. (The cosine of the embedding
    with itself is at its maximum, so its gradient is zero and the map would be empty: hence the dot product.)
  * ``target=prototypes`` (a ``C x D`` tensor, e.g. class means of training embeddings) with ``labels``: the cosine
    similarity of ``f(x)`` to its class prototype, as for a nearest-class-mean classifier.
- :func:`saliency_maps`: a method's own map (``method.saliency``: the LCR branch map, the CVSA intensity map).
- :func:`localization_maps`: the method's own map, else its Grad-CAM, over a whole split with the GT boxes, for
  MaxBoxAcc.

Every map is a :class:`~fgssl_lib.saliency.maps.MapSource`'s: taken in eval mode, brought to image size by
:func:`upsample_cams` (bicubic, then min-max per image, as wsolevaluation (Choe et al. 2020) prepares CAMs for
MaxBoxAcc).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fgssl_lib.caches import load_file, save_file
from fgssl_lib.config import resolve_device
from fgssl_lib.eval.features import Pooled, cache_path, encoder_of, model_fingerprint
from fgssl_lib.saliency.maps import MapSource, normalise_per_image, resize_maps
from fgssl_lib.views import eval_view


class EmbeddingSimilarityTarget:
    """Grad-CAM target on one embedding ``D``: the dot product with (``normalize=False``) or cosine to ``reference``."""

    def __init__(self, reference: torch.Tensor, normalize: bool) -> None:
        self.reference, self.normalize = reference, normalize

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            return F.cosine_similarity(embedding, self.reference.to(embedding.device), dim=0)
        return (embedding * self.reference.to(embedding.device)).sum()


def upsample_cams(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``N x h x w`` CAMs to ``N x H x W`` in [0, 1]: bicubic (``cv2.INTER_CUBIC``'s kernel, a = -0.75, half-pixel
    centres), then ``(C - min C) / (1e-7 + max(C - min C))`` per image, as wsolevaluation does before MaxBoxAcc (the
    :class:`~fgssl_lib.saliency.maps.MapSource` finish)."""
    return normalise_per_image(resize_maps(cams.float(), size))


class _FeatureResolutionGradCAM(GradCAM):
    """pytorch-grad-cam's Grad-CAM at the target layer's resolution (its maps min-max scaled, not resized), so that
    :func:`upsample_cams` resizes them bicubically instead of its bilinear ``cv2.resize``."""

    def get_target_width_height(self, input_tensor: torch.Tensor) -> None:
        return None


def last_stage(encoder: nn.Module, stage: str = "layer4") -> nn.Module:
    """The sub-module named ``stage`` (or ending in ``.stage``): Grad-CAM's target layer."""
    for name, module in encoder.named_modules():
        if name == stage or name.endswith(f".{stage}"):
            return module
    raise ValueError(
        f"{type(encoder).__name__} has no sub-module named {stage!r}; pass stage=<name of its last conv stage>"
    )


class GradCAMMap(MapSource):
    """Grad-CAM of an encoder's embedding (module doc), at the ``stage`` layer's resolution, as a
    :class:`~fgssl_lib.saliency.maps.MapSource` (it needs gradients). ``target``: ``"self"`` or a ``C x D``
    prototype tensor used with the ``labels`` of the images."""

    needs_grad = True

    def __init__(self, model: nn.Module, target: str | torch.Tensor = "self", labels: torch.Tensor | None = None,
                 stage: str = "layer4") -> None:
        super().__init__(encoder_of(model))
        self.target, self.labels, self.stage = target, labels, stage

    def targets(self, embeddings: torch.Tensor) -> list[EmbeddingSimilarityTarget]:
        """One Grad-CAM target per ``N x D`` embedding."""
        if isinstance(self.target, str):
            if self.target != "self":
                raise ValueError(f"target must be 'self' or a C x D tensor of class prototypes; got {self.target!r}")
            return [EmbeddingSimilarityTarget(e, normalize=False) for e in embeddings]
        if self.labels is None or self.target.ndim != 2 or self.target.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"prototype targets need a C x {embeddings.shape[1]} tensor and labels (N); got "
                f"{tuple(self.target.shape)} and labels={'None' if self.labels is None else tuple(self.labels.shape)}"
            )
        return [EmbeddingSimilarityTarget(self.target[int(y)], normalize=True) for y in self.labels]

    def compute(self, images: torch.Tensor) -> torch.Tensor:
        net = Pooled(self.model)
        with torch.no_grad():
            embeddings = net(images)  # NxD
        targets = self.targets(embeddings)
        with _FeatureResolutionGradCAM(model=net, target_layers=[last_stage(self.model, self.stage)]) as cam:
            maps = cam(input_tensor=images, targets=targets)  # Nxhxw numpy, each scaled to [0, 1]
        return torch.from_numpy(np.ascontiguousarray(maps))


def gradcam_maps(
    model: nn.Module,
    images: torch.Tensor,
    target: str | torch.Tensor = "self",
    labels: torch.Tensor | None = None,
    stage: str = "layer4",
) -> torch.Tensor:
    """Grad-CAM of ``images`` (``N x 3 x S x S`` in [0, 1]) with an embedding-similarity target; ``N x S x S``.

    ``model`` is a method (its ``backbone`` is used) or an encoder returning ``N x D`` (or ``N x C x h x w`` maps,
    which are averaged). ``target`` is ``"self"`` or a ``C x D`` prototype tensor used with ``labels`` (module doc).
    """
    return GradCAMMap(model, target, labels, stage)(images)


def saliency_maps(method: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The method's own map (LCR branch, CVSA intensity) at image size, ``N x S x S`` in [0, 1]."""
    if not hasattr(method, "saliency"):
        raise NotImplementedError(f"{type(method).__name__} has no saliency(images); use gradcam_maps for it")
    return upsample_cams(method.saliency(images).float().cpu(), images.shape[-2:])  # NxSxS


MAPS_FORMAT = 1
"""The format of a map cache file (:func:`fgssl_lib.caches.save_file`); a file of another format is rebuilt."""


def localization_maps(method: nn.Module, dataset: Dataset, image_size: int, batch_size: int = 64,
                      device: str | torch.device = "auto", cache_dir: str | os.PathLike | None = None
                      ) -> tuple[torch.Tensor, list[torch.Tensor], str]:
    """Maps for MaxBoxAcc over a whole ``dataset`` (each sample through ``eval_view(image_size)``, the whole image
    resized so the box stays inside the view): the method's own :func:`saliency_maps` where it has one, else
    :func:`gradcam_maps` of its embedding. Returns ``(maps N x S x S in [0, 1], GT boxes (4,) in the view frame,
    source name "saliency" | "gradcam")``, ready for :func:`fgssl_lib.eval.max_box_acc`. ``cache_dir`` keeps them
    as :func:`~fgssl_lib.eval.extract_features` keeps features (keyed by the weights, the data and the view)."""
    path = cache_path(cache_dir, model_fingerprint(method), dataset, eval_view(image_size), kind="maps") \
        if cache_dir is not None else None
    cached = load_file(path, MAPS_FORMAT, "map cache") if path is not None else None
    if cached is not None:
        return cached["maps"], list(cached["boxes"]), cached["source"]
    dev = resolve_device(device)
    method = method.to(dev)
    view = eval_view(image_size)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=lambda samples: [view(s) for s in samples])
    maps, boxes, source = [], [], "saliency"
    for samples in loader:
        images = torch.stack([s["image"] for s in samples]).to(dev)  # Nx3xSxS
        try:
            batch_maps = saliency_maps(method, images)
        except NotImplementedError:
            source = "gradcam"
            batch_maps = gradcam_maps(method, images)
        maps.append(batch_maps.detach().float().cpu())
        boxes += [s["box"] for s in samples]
    if path is not None:
        save_file({"maps": torch.cat(maps), "boxes": torch.stack(boxes), "source": source}, path, MAPS_FORMAT,
                  f"the parameter cache_dir ({cache_dir})")
    return torch.cat(maps), boxes, source

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from fgssl_lib.eval import gradcam_maps, saliency_maps


class _Encoder(nn.Module):
    """A two-stage conv encoder returning GAP features; ``layer4`` is the last stage."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer4 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x):
        return self.layer4(self.stem(x)).mean(dim=(2, 3))


class _Method(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _Encoder()

    def saliency(self, images):
        return images.mean(dim=1)[:, ::2, ::2]


def test_gradcam_self_target_gives_non_empty_maps_at_image_size():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    maps = gradcam_maps(_Method(), images)
    assert maps.shape == (3, 16, 16)
    assert maps.min() >= 0 and maps.max() <= 1
    assert (maps.flatten(1).max(dim=1).values > 0).all()  # the self target has a non-zero gradient


def test_gradcam_prototype_target_and_bad_targets():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    prototypes = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    maps = gradcam_maps(_Encoder(), images, target=prototypes, labels=torch.tensor([0, 4]))
    assert maps.shape == (2, 16, 16)
    with pytest.raises(ValueError, match="prototype"):
        gradcam_maps(_Encoder(), images, target=prototypes)
    with pytest.raises(ValueError, match="no sub-module"):
        gradcam_maps(_Encoder(), images, stage="layer9")


def test_saliency_maps_are_resized_to_image_size():
    images = torch.rand(2, 3, 16, 16)
    maps = saliency_maps(_Method(), images)
    assert maps.shape == (2, 16, 16)
    with pytest.raises(NotImplementedError):
        saliency_maps(_Encoder(), images)


class _Boxes(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        image = torch.zeros(3, 16, 16, dtype=torch.uint8)
        image[:, 2 + i : 9 + i, 3:12] = 255  # bright object inside the box
        box = torch.tensor([3.0, 2.0 + i, 12.0, 9.0 + i])
        return {"image": image, "label": 0, "box": box, "mask": torch.zeros(16, 16, dtype=torch.uint8), "index": i}


def test_localization_maps_give_maxboxacc_inputs_for_a_split_and_fall_back_to_gradcam():
    from fgssl_lib.eval import localization_maps, max_box_acc

    maps, boxes, source = localization_maps(_Method(), _Boxes(), image_size=16, batch_size=2, device="cpu")
    assert source == "saliency" and maps.shape == (5, 16, 16) and len(boxes) == 5
    torch.testing.assert_close(boxes[1], torch.tensor([3.0, 3.0, 12.0, 10.0]))
    assert max_box_acc(maps, boxes)[0] == pytest.approx(100.0)
    maps, _, source = localization_maps(_Encoder(), _Boxes(), image_size=16, batch_size=2, device="cpu")
    assert source == "gradcam" and maps.shape == (5, 16, 16)


def test_localization_maps_are_computed_once_per_model_split_and_view(tmp_path):
    from fgssl_lib.eval import localization_maps

    boxes, calls = _Boxes(), []

    class _Counted(_Method):
        def saliency(self, images):
            calls.append(len(images))
            return super().saliency(images)

    method = _Counted()
    first = localization_maps(method, boxes, image_size=16, batch_size=2, device="cpu", cache_dir=tmp_path)
    again = localization_maps(method, boxes, image_size=16, batch_size=2, device="cpu", cache_dir=tmp_path)
    assert sum(calls) == 5  # the second call read the cache
    torch.testing.assert_close(again[0], first[0])
    assert again[2] == first[2] and all(torch.equal(a, b) for a, b in zip(again[1], first[1]))
    localization_maps(method, boxes, image_size=8, batch_size=2, device="cpu", cache_dir=tmp_path)
    assert sum(calls) == 10  # another view size: computed
    with torch.no_grad():
        method.backbone.stem.bias += 1
    localization_maps(method, boxes, image_size=16, batch_size=2, device="cpu", cache_dir=tmp_path)
    assert sum(calls) == 15  # other weights: computed


def test_cams_are_upsampled_bicubically_and_normalised_as_wsolevaluation():
    import cv2
    import numpy as np

    from fgssl_lib.eval.cams import upsample_cams

    cams = torch.rand(150, 7, 7, generator=torch.Generator().manual_seed(0))
    ours = upsample_cams(cams, (224, 224))
    for cam, mine in zip(cams.numpy(), ours):
        cam = (cam - cam.min()) / (1e-7 + cam.max() - cam.min())  # their per-image scaling before the resize
        resized = cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)
        reference = (resized - resized.min()) / (1e-7 + resized.max() - resized.min())
        np.testing.assert_allclose(mine.numpy(), reference, atol=2e-5)
    bilinear = torch.nn.functional.interpolate(cams[:, None], size=(224, 224), mode="bilinear")[:, 0]
    assert (ours - upsample_cams(bilinear, (224, 224))).abs().max() > 0.05  # the kernel matters


def test_gradcam_maps_are_the_feature_resolution_cam_upsampled_bicubically():
    from pytorch_grad_cam import GradCAM

    from fgssl_lib.eval.cams import EmbeddingSimilarityTarget, upsample_cams
    from fgssl_lib.eval.features import Pooled

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    encoder = _Encoder()
    with torch.no_grad():
        embeddings = encoder(images)
    targets = [EmbeddingSimilarityTarget(e, normalize=False) for e in embeddings]
    with GradCAM(model=Pooled(encoder), target_layers=[encoder.layer4]) as cam:
        cam.get_target_width_height = lambda _: (8, 8)  # the 8x8 map of layer4, not resized
        low = torch.from_numpy(cam(input_tensor=images, targets=targets))
    torch.testing.assert_close(gradcam_maps(encoder, images), upsample_cams(low, (16, 16)))

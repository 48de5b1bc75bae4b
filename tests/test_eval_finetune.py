import torch
from torch import nn
from torch.utils.data import Dataset

from fgssl_lib.eval import fine_tune


class _Colours(Dataset):
    """Class = which colour channel is bright."""

    num_classes = 3

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = torch.full((3, 8, 8), 30, dtype=torch.uint8)
        image[i % 3] = 200
        return {"image": image, "label": i % 3, "box": torch.tensor([0.0, 0.0, 8.0, 8.0]),
                "mask": torch.ones(8, 8, dtype=torch.uint8), "index": i}


class _View:
    def __repr__(self):
        return "_View()"

    def __call__(self, sample):
        return {**sample, "image": sample["image"].float() / 255}


class _Method(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())  # returns maps: pooled by fine_tune


def test_fine_tune_smoke_learns_and_leaves_the_pretrained_model_untouched():
    torch.manual_seed(0)  # the encoder's initialisation (fine_tune seeds only what it draws itself)
    method = _Method()
    before = [p.clone() for p in method.parameters()]
    result = fine_tune(method, _Colours(30), _Colours(12), transform=_View(), epochs=15, batch_size=8, lr=0.1,
                       label_fraction=0.5, device="cpu")
    assert set(result) == {"top1", "top5"}
    assert result["top1"] > 60
    assert all(torch.equal(a, b) for a, b in zip(before, method.parameters()))

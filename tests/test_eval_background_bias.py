import pytest
import torch
from torch.utils.data import Dataset

from fgssl_lib.eval import BoxVariant, background_bias_report, box_background_report


class _Split(Dataset):
    """Images whose object (a box) carries the class in the red channel and whose background carries ``bg`` in green."""

    def __init__(self, split, n=40, classes=4, bg="class"):
        self.split, self.n, self.classes, self.bg = split, n, classes, bg

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        label = i % self.classes
        bg = {"class": label, "rand": (i * 7 + 1) % self.classes, "none": 0}[self.bg]
        image = torch.zeros(3, 8, 8, dtype=torch.uint8)
        image[1] = 40 * bg + 10
        image[1, 2:6, 2:6] = 0
        image[0, 2:6, 2:6] = 40 * label + 10
        return {"image": image, "label": label, "box": torch.tensor([2.0, 2.0, 6.0, 6.0]),
                "mask": torch.zeros(8, 8, dtype=torch.uint8), "index": i}


class _View:
    def __repr__(self):
        return "_View()"

    def __call__(self, sample):
        return {**sample, "image": sample["image"].float() / 255}


def _background_only(images):
    """A maximally background-biased embedding: only the green channel at a corner (background) pixel."""
    g = images[:, 1, 0, 0]
    return torch.stack([torch.cos(8 * g), torch.sin(8 * g)], dim=1)


def test_bg_gap_of_a_background_model_is_large_and_of_an_object_model_zero():
    splits = {"train": "class", "test_original": "class", "test_only_fg": "none", "test_only_bg": "class",
              "test_mixed_same": "class", "test_mixed_rand": "rand"}

    def load(name):
        return _Split(name, bg=splits[name])

    options = dict(transform=_View(), device="cpu", batch_size=16)
    linear = dict(epochs=30, lrs=(0.1,), weight_decays=(0.0,), device="cpu")
    report = background_bias_report(_background_only, load, linear_options=linear, **options)
    assert set(report) == {"knn", "linear", "bg_gap"}
    assert report["knn"]["mixed_same"] == pytest.approx(100.0)
    assert report["knn"]["only_bg"] == pytest.approx(100.0)
    assert report["bg_gap"]["knn"] > 50
    assert report["bg_gap"]["knn"] == pytest.approx(report["knn"]["mixed_same"] - report["knn"]["mixed_rand"])

    def object_only(images):
        r = images[:, 0, 4, 4]
        return torch.stack([torch.cos(8 * r), torch.sin(8 * r)], dim=1)

    report = background_bias_report(object_only, load, protocols=("knn",), **options)
    assert report["bg_gap"] == {"knn": pytest.approx(0.0)}
    assert report["knn"]["mixed_rand"] == pytest.approx(100.0)


def test_box_variants_crop_and_black_out_the_box():
    sample = _Split("test")[5]
    crop = BoxVariant(_Split("test"), "foreground")[5]
    assert crop["image"].shape == (3, 4, 4) and crop["box"].tolist() == [0.0, 0.0, 4.0, 4.0]
    assert torch.equal(crop["image"], sample["image"][:, 2:6, 2:6])
    black = BoxVariant(_Split("test"), "blackout")[5]["image"]
    assert black[:, 2:6, 2:6].sum() == 0 and torch.equal(black[:, 0], sample["image"][:, 0])
    with pytest.raises(ValueError, match="box variant"):
        BoxVariant(_Split("test"), "blur")


def test_box_background_report_on_a_real_style_dataset():
    report = box_background_report(_background_only, _Split("train"), _Split("test"), protocols=("knn",),
                                   transform=_View(), device="cpu")
    assert report["knn"]["original"] == pytest.approx(100.0)
    assert report["knn"]["blackout"] == pytest.approx(100.0)  # the corner pixel survives the black-out
    assert report["knn"]["foreground"] == pytest.approx(25.0)  # the crop has no background left: chance

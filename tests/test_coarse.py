"""The coarse world: sample contract, determinism, exact masks, balanced distinct kinds, label-free backgrounds."""

from __future__ import annotations

import pytest
import torch

from fgssl_lib.data import load_dataset, mask_to_box
from fgssl_lib.data.coarse import ATTRIBUTES, CoarseObjects, draw_things, kind_attributes, sample_thing
from fgssl_lib.data.rendered import index_generator

OPTS = dict(image_size=32, num_images=80, cache_dir=None)


def test_contract_keys_dtypes_shapes() -> None:
    ds = load_dataset("coarse", split="val", **OPTS)
    assert len(ds) == 80 and ds.num_classes == 40 and len(ds.classes) == 40
    s = ds[5]
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.uint8
    assert s["mask"].shape == (32, 32) and s["mask"].dtype == torch.uint8 and set(s["mask"].unique().tolist()) <= {0, 1}
    assert s["box"].dtype == torch.float32 and torch.equal(s["box"], mask_to_box(s["mask"]))
    assert s["label"] == 5 and s["index"] == 5 and 0 <= s["background"] < 40


def test_pure_function_of_seed_stream_index(tmp_path) -> None:
    a = CoarseObjects("train", **OPTS)
    b = CoarseObjects("train", **{**OPTS, "cache_dir": tmp_path})  # rendered whole, saved, then loaded again
    c = CoarseObjects("train", **{**OPTS, "cache_dir": tmp_path})
    for i in (79, 3, 40):  # any order, any chunk neighbours
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["image"], c[i]["image"])
    assert not torch.equal(a[3]["image"], CoarseObjects("val", **OPTS)[3]["image"])
    assert not torch.equal(a[3]["image"], CoarseObjects("train", **OPTS, seed=1)[3]["image"])
    with pytest.raises(IndexError, match="out of range"):
        a[80]
    with pytest.raises(ValueError, match="valid coarse splits"):
        CoarseObjects("test", **OPTS)


def test_mask_is_exactly_the_object_pixels() -> None:
    ds = CoarseObjects("train", **OPTS)
    indices = list(range(12))
    background, _ = ds.backgrounds(indices)
    things = [sample_thing(ds.label(i), index_generator("coarse", 0, "train", i, "object")) for i in indices]
    colour, shape = draw_things(things, 32, 32)
    for k in indices:
        s = ds[k]
        mask = s["mask"].bool()
        assert torch.equal(mask, shape[k]) and 0.03 < mask.float().mean() < 0.6
        assert torch.equal(s["image"][:, ~mask], background[k][:, ~mask])  # outside: the background untouched
        assert torch.equal(s["image"][:, mask], colour[k].round().to(torch.uint8)[:, mask])  # inside: the object


def test_classes_balanced_and_kinds_distinct() -> None:
    ds = CoarseObjects("train", image_size=32, num_images=120, num_classes=40, cache_dir=None)
    assert torch.bincount(torch.tensor([ds.label(i) for i in range(120)])).tolist() == [3] * 40
    assert len({kind_attributes(c) for c in range(40)}) == 40 and len(set(ds.classes)) == 40
    assert len({kind_attributes(c)[:2] for c in range(40)}) == 40  # family or colour tells them apart
    every = [kind_attributes(c) for c in range(len(ATTRIBUTES["family"]) * len(ATTRIBUTES["colour"]) * 3)]
    assert len(set(every)) == len(every)
    with pytest.raises(ValueError, match="num_classes"):
        CoarseObjects("train", num_classes=len(every) + 1, **OPTS)


def _nearest_mean_accuracy(features: torch.Tensor, targets: torch.Tensor, groups: int) -> float:
    """Train nearest class mean on the first half of the rows, score on the second half."""
    half = len(targets) // 2
    train, test = torch.arange(half), torch.arange(half, len(targets))
    means = torch.stack([features[train][targets[train] == g].mean(0) for g in range(groups)])
    predicted = torch.cdist(features[test], means).argmin(1)
    return (predicted == targets[test]).float().mean().item()


def test_background_carries_no_class_information() -> None:
    """The background's mean colour predicts the drawn background well but the class only at chance."""
    ds = CoarseObjects("train", image_size=32, num_images=800, num_classes=10, num_backgrounds=10, cache_dir=None)
    samples = [ds[i] for i in range(len(ds))]
    stats = torch.stack([s["image"][:, s["mask"] == 0].float().mean(1) for s in samples])  # N x 3
    labels = torch.tensor([s["label"] for s in samples])
    drawn = torch.tensor([s["background"] for s in samples])
    assert torch.bincount(drawn, minlength=10).min() > 40  # every background used
    assert _nearest_mean_accuracy(stats, drawn, 10) > 0.6
    assert _nearest_mean_accuracy(stats, labels, 10) < 0.18  # chance is 0.10

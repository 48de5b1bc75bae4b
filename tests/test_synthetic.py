"""The synthetic background-bias benchmark: determinism, exact masks and boxes, the Xiao et al. variants, rho."""

from __future__ import annotations

import pytest
import torch

from fgssl_lib.data import load_dataset, mask_to_box
from fgssl_lib.data.synthetic import (
    NO_HABITAT,
    ONLY_FG_GREY,
    SPLITS,
    Bird,
    SyntheticBirds,
    class_parts,
    composite,
    draw_bird,
    sample_bird,
)

OPTS = dict(image_size=32, num_images=40)


def _variant(name: str, **options) -> SyntheticBirds:
    return load_dataset("synthetic", split=f"test_{name}", **{**OPTS, **options})


def test_contract_keys_dtypes_shapes() -> None:
    ds = load_dataset("synthetic", split="train", **OPTS)
    assert len(ds) == 40 and ds.num_classes == 10 and len(ds.classes) == 10 and len(set(ds.classes)) == 10
    s = ds[3]
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.uint8
    assert s["mask"].shape == (32, 32) and s["mask"].dtype == torch.uint8 and set(s["mask"].unique().tolist()) <= {0, 1}
    assert s["box"].dtype == torch.float32 and s["box"].shape == (4,)
    assert isinstance(s["label"], int) and 0 <= s["label"] < 10 and s["index"] == 3
    assert isinstance(s["habitat"], int) and 0 <= s["habitat"] < 10


def test_same_index_same_tensors_across_instances_and_order() -> None:
    a, b = _variant("mixed_rand"), _variant("mixed_rand")
    for i in (7, 0, 7):
        sa, sb = a[i], b[i]
        assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["mask"], sb["mask"])
        assert torch.equal(sa["box"], sb["box"]) and sa["habitat"] == sb["habitat"]
    assert not torch.equal(a[1]["image"], a[2]["image"])
    alone = a.render([7])  # an image does not depend on the batch it is rendered in
    assert torch.equal(alone["image"][0], a[7]["image"]) and torch.equal(alone["mask"][0], a[7]["mask"])
    other_seed = _variant("mixed_rand", seed=1)
    assert not torch.equal(a[7]["image"], other_seed[7]["image"])
    val = load_dataset("synthetic", split="val", **OPTS)
    train = load_dataset("synthetic", split="train", **OPTS)
    assert not torch.equal(val[0]["image"], train[0]["image"])  # val is its own stream, not a copy of train


def test_mask_is_exactly_the_drawn_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    for label in range(27):
        colour, mask = draw_bird(sample_bird(label, g), 48, 40)
        black = composite(colour, mask, torch.zeros(3, 48, 40, dtype=torch.uint8))
        white = composite(colour, mask, torch.full((3, 48, 40), 255, dtype=torch.uint8))
        drawn = (black != white).any(0)  # a pixel differs between the two flat backgrounds iff it is background
        assert torch.equal(~drawn, mask)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert mask_to_box(mask).tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_bird_inside_image_and_parts_change_pixels() -> None:
    bird = Bird(label=0, centre=(0.5, 0.5), angle=0.0, scale=1.0, flip=False, body=(140.0, 115.0, 90.0))
    colour0, mask0 = draw_bird(bird, 64, 64)
    assert not mask0[0].any() and not mask0[-1].any() and not mask0[:, 0].any() and not mask0[:, -1].any()
    for label in range(1, 27):  # every class differs from class 0 in at least one part, hence in some pixels
        colour, mask = draw_bird(Bird(label, (0.5, 0.5), 0.0, 1.0, False, (140.0, 115.0, 90.0)), 64, 64)
        assert (mask != mask0).any() or (colour != colour0).any(), label
    assert len({class_parts(c) for c in range(27)}) == 27
    flipped = draw_bird(Bird(0, (0.5, 0.5), 0.0, 1.0, True, (140.0, 115.0, 90.0)), 64, 64)[1]
    assert torch.equal(flipped, mask0.flip(-1))


def test_variants_definitions() -> None:
    original, only_fg, only_bg = _variant("original"), _variant("only_fg"), _variant("only_bg")
    mixed_same, mixed_rand = _variant("mixed_same"), _variant("mixed_rand")
    for i in range(len(original)):
        o, f, b, s, r = original[i], only_fg[i], only_bg[i], mixed_same[i], mixed_rand[i]
        m = o["mask"].bool()
        assert m.any()
        for v in (f, b, s, r):  # one bird per index across the variants
            assert torch.equal(v["mask"], o["mask"]) and torch.equal(v["box"], o["box"]) and v["label"] == o["label"]
        assert (f["image"][:, ~m] == ONLY_FG_GREY).all() and f["habitat"] == NO_HABITAT
        assert torch.equal(f["image"][:, m], o["image"][:, m])
        assert torch.equal(b["image"][:, ~m], o["image"][:, ~m]) and b["habitat"] == o["habitat"]
        assert (b["image"][:, m] != o["image"][:, m]).any()  # the bird's pixels are filled with background
        assert s["habitat"] == s["label"]
        for v in (s, r):
            assert torch.equal(v["image"][:, m], o["image"][:, m])
            assert not torch.equal(v["image"][:, ~m], o["image"][:, ~m])  # a new background
    mixed_rand = _variant("mixed_rand", num_images=300)
    habitats = torch.tensor([mixed_rand[i]["habitat"] for i in range(300)])
    counts = torch.bincount(habitats, minlength=10)
    assert counts.min() >= 12  # uniform: 30 expected per habitat
    labels = torch.arange(300) % 10
    assert (habitats == labels).float().mean() < 0.2


@pytest.mark.parametrize("rho", [0.9, 0.5])
def test_rho_respected(rho: float) -> None:
    ds = load_dataset("synthetic", split="train", image_size=16, num_images=2000, rho=rho)
    on_own = torch.tensor([ds.scene_habitat(i) == ds.label(i) for i in range(len(ds))]).float().mean().item()
    assert abs(on_own - rho) < 4 * (rho * (1 - rho) / len(ds)) ** 0.5 + 1e-3
    others = torch.tensor([ds.scene_habitat(i) for i in range(len(ds)) if ds.scene_habitat(i) != ds.label(i)])
    assert len(others.unique()) == 10  # "otherwise a random habitat": all of them occur
    assert ds[5]["habitat"] == ds.scene_habitat(5)


def test_disk_cache_matches_rendering(tmp_path) -> None:
    plain = load_dataset("synthetic", split="test_mixed_same", **OPTS)
    cached = load_dataset("synthetic", split="test_mixed_same", cache_dir=tmp_path, **OPTS)
    again = load_dataset("synthetic", split="test_mixed_same", cache_dir=tmp_path, **OPTS)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    for i in (0, 39):
        for s in (cached[i], again[i]):
            assert torch.equal(s["image"], plain[i]["image"]) and torch.equal(s["mask"], plain[i]["mask"])
            assert torch.equal(s["box"], plain[i]["box"]) and s["habitat"] == plain[i]["habitat"]
    load_dataset("synthetic", split="test_mixed_same", cache_dir=tmp_path, **{**OPTS, "rho": 0.5})
    assert len(list(tmp_path.glob("*.pt"))) == 2  # keyed by parameters


def test_bad_options_raise_clear_errors() -> None:
    assert "test_mixed_rand" in SPLITS and "val_only_fg" in SPLITS
    with pytest.raises(ValueError, match="valid synthetic splits"):
        load_dataset("synthetic", split="test_mixed")
    with pytest.raises(ValueError, match="num_classes"):
        load_dataset("synthetic", num_classes=30)
    with pytest.raises(ValueError, match="rho"):
        load_dataset("synthetic", rho=1.5)
    with pytest.raises(ValueError, match="unknown synthetic option"):
        load_dataset("synthetic", imagesize=32)
    with pytest.raises(IndexError):
        load_dataset("synthetic", **OPTS)[40]

"""Two-view generators: contract, masks that follow the geometry, area bounds, edge cases, seeding, DataLoader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as nnf
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from fgssl_lib.data.backgrounds import GreyBackgrounds
from fgssl_lib.data.sample import mask_to_box
from fgssl_lib.views import build_views, eval_view, seed_worker
from fgssl_lib.views.base import object_box
from fgssl_lib.views.photometric import build_photometric, separable_gaussian_blur
from fgssl_lib.views.saliency_swap import paste_box, sample_patch

RED, BLUE = (255, 0, 0), (0, 0, 255)
SIZE = 24


def make_sample(height: int, width: int, object_mask: torch.Tensor, index: int = 0) -> dict:
    """A blue image with a red object exactly on ``object_mask`` (HxW bool)."""
    image = torch.tensor(BLUE, dtype=torch.uint8)[:, None, None].repeat(1, height, width)
    image[:, object_mask] = torch.tensor(RED, dtype=torch.uint8)[:, None]
    mask = object_mask.to(torch.uint8)
    return dict(image=image, label=index % 3, box=mask_to_box(mask), mask=mask, index=index)


def l_shape(height: int, width: int) -> torch.Tensor:
    """An L-shaped object left of centre: asymmetric, so a mask that misses a flip is caught."""
    m = torch.zeros(height, width, dtype=torch.bool)
    m[height // 5: 4 * height // 5, width // 8: width // 4] = True
    m[3 * height // 5: 4 * height // 5, width // 8: width // 2] = True
    return m


def rectangle(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    m = torch.zeros(height, width, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def red_pixels(view: torch.Tensor) -> torch.Tensor:
    return (view[0] - view[1]) > 0.5  # red minus green: red object vs blue or grey backgrounds


def border_band(mask: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Pixels within ``width`` pixels of the mask's border or of the view's edge (where resampling may disagree:
    an antialiased downscale spreads an edge over about one pixel per 2x of zoom)."""
    m = (mask > 0.5).float()[None, None]
    pad, kernel = (width,) * 4, 2 * width + 1
    dilated = nnf.max_pool2d(nnf.pad(m, pad, value=1.0), kernel, 1)[0, 0] > 0
    eroded = -nnf.max_pool2d(nnf.pad(-m, pad, value=0.0), kernel, 1)[0, 0] > 0
    return dilated & ~eroded


def assert_mask_matches_red(view: torch.Tensor, mask: torch.Tensor) -> None:
    mismatch = red_pixels(view) ^ (mask > 0.5)
    assert not (mismatch & ~border_band(mask)).any(), "mask and object pixels disagree away from the border"


@pytest.fixture(scope="module")
def rect_dataset() -> list[dict]:
    """Samples of different sizes, each a red rectangle (mask = box) on blue."""
    shapes = [(30, 40, 5, 8, 30, 25), (50, 36, 10, 5, 30, 40), (40, 40, 0, 0, 40, 40), (28, 60, 40, 3, 55, 20)]
    return [make_sample(h, w, rectangle(h, w, *box), i) for i, (h, w, *box) in enumerate(shapes)]


def generator_cases(dataset: list[dict]) -> dict[str, dict]:
    pool = GreyBackgrounds(100, 150)
    return {
        "rrc": dict(name="rrc"),
        "saliency_swap_same": dict(name="saliency_swap", mode="same", dataset=dataset),
        "saliency_swap_other": dict(name="saliency_swap", mode="other", backgrounds=pool),
        "copy_paste": dict(name="copy_paste", p=1.0, blending="none", backgrounds=pool),
    }


CASES = ["rrc", "saliency_swap_same", "saliency_swap_other", "copy_paste"]


def build(case: str, dataset: list[dict], **params) -> object:
    kwargs = generator_cases(dataset)[case] | params
    return build_views(kwargs.pop("name"), size=kwargs.pop("size", SIZE), **kwargs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("photometric", ["mocov2", "byol"])
def test_contract(case, photometric, rect_dataset):
    views = build(case, rect_dataset, photometric=photometric, seed=0)
    for sample in rect_dataset:
        out = views(sample)
        assert set(out) == {"view1", "view2", "mask1", "mask2", "label", "index"}
        assert out["label"] == sample["label"] and out["index"] == sample["index"]
        for k in (1, 2):
            view, mask = out[f"view{k}"], out[f"mask{k}"]
            assert view.shape == (3, SIZE, SIZE) and view.dtype == torch.float32
            assert mask.shape == (SIZE, SIZE) and mask.dtype == torch.float32
            assert 0 <= float(view.min()) and float(view.max()) <= 1
            assert 0 <= float(mask.min()) and float(mask.max()) <= 1


@pytest.mark.parametrize("case", CASES)
def test_mask_follows_geometry(case, rect_dataset):
    """Object pixels and mask agree after crop / resize / paste / flip (all cases: the mask covers exactly the red)."""
    dataset = rect_dataset if case.startswith("saliency_swap") else [make_sample(40, 56, l_shape(40, 56), i)
                                                                      for i in range(3)]
    views = build(case, rect_dataset, photometric="none", seed=1)
    for epoch in range(6):
        views.set_epoch(epoch)
        for sample in dataset:
            out = views(sample)
            for k in (1, 2):
                assert_mask_matches_red(out[f"view{k}"], out[f"mask{k}"])
                assert out[f"mask{k}"].sum() > 0 or not case.startswith("saliency_swap")


def test_flip_moves_image_and_mask_together():
    sample = make_sample(30, 30, l_shape(30, 30))
    views = build_views("rrc", size=30, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0, photometric="none", seed=0)
    out = views(sample)
    assert torch.equal(out["view1"], F.horizontal_flip(F.to_dtype(sample["image"], torch.float32, scale=True)))
    assert torch.equal(out["mask1"], sample["mask"].flip(-1).float())


def test_swap_same_removes_background_object_and_uses_its_box(rect_dataset):
    """Mode ``same``: the pasted patch covers B_b exactly (the background's own object is gone) and the mask is B_b."""
    background = make_sample(48, 32, rectangle(48, 32, 4, 12, 20, 36), index=1)
    source = make_sample(30, 30, rectangle(30, 30, 0, 0, 30, 30), index=0)
    views = build_views("saliency_swap", size=SIZE, mode="same", dataset=[source, background], photometric="none",
                        flip_p=0.0, seed=0)
    out = views(source)
    expected = torch.zeros(SIZE, SIZE)
    expected[round(12 * SIZE / 48): round(36 * SIZE / 48), round(4 * SIZE / 32): round(20 * SIZE / 32)] = 1
    assert torch.equal(out["mask1"], expected) and torch.equal(out["mask2"], expected)
    assert torch.equal(red_pixels(out["view1"]), expected.bool())


def test_copy_paste_replaces_only_the_background():
    sample = make_sample(40, 40, l_shape(40, 40))
    flat = GreyBackgrounds(128, 128)
    pasted = build_views("copy_paste", size=SIZE, p=1.0, blending="none", backgrounds=flat, photometric="none", seed=0)
    kept = build_views("copy_paste", size=SIZE, p=0.0, backgrounds=flat, photometric="none", seed=0)
    out, base = pasted(sample), kept(sample)
    for k in (1, 2):
        outside = (out[f"mask{k}"] == 0) & ~border_band(out[f"mask{k}"])
        assert torch.allclose(out[f"view{k}"][:, outside], torch.tensor(128 / 255))
        outside = (base[f"mask{k}"] == 0) & ~border_band(base[f"mask{k}"], width=2)
        assert torch.allclose(base[f"view{k}"][:, outside], torch.tensor([0.0, 0.0, 1.0])[:, None])


def _paste_alpha(views, sample: dict) -> torch.Tensor:
    """The blend weight ``S`` of view 1 at S x S, read back from a paste of a white object onto black."""
    sample = dict(sample, image=torch.full_like(sample["image"], 255))
    return views(sample)["view1"][0]


def _whole_image_views(size: int, **options):
    """Copy-paste views whose crop is the whole (square) image, so the view is the image resized to ``size``."""
    return build_views("copy_paste", size=size, p=1.0, backgrounds=GreyBackgrounds(0, 0), scale=(1.0, 1.0),
                       ratio=(1.0, 1.0), photometric="none", flip_p=0.0, seed=0, **options)


@pytest.mark.parametrize("paste_map", ["saliency", "mask"])
def test_copy_paste_blends_with_the_soft_saliency_map_or_the_binary_mask(paste_map: str) -> None:
    sample = make_sample(32, 32, rectangle(32, 32, 8, 8, 24, 24))
    sample["saliency"] = torch.linspace(0, 1, 32)[None].expand(32, 32).clone()  # a soft map unlike the mask
    alpha = _paste_alpha(_whole_image_views(16, blending="none", paste_map=paste_map), sample)
    source = sample["saliency"] if paste_map == "saliency" else sample["mask"].float()
    expected = F.resize(source[None], [16, 16], antialias=True)[0]
    torch.testing.assert_close(alpha, expected, atol=1e-5, rtol=0)
    out = _whole_image_views(16, blending="none", paste_map=paste_map)(sample)
    torch.testing.assert_close(out["mask1"], F.resize(sample["mask"][None], [16, 16],
                                                      interpolation=F.InterpolationMode.NEAREST)[0].float())


def test_copy_paste_blurs_the_map_at_the_source_resolution_before_the_crop() -> None:
    from fgssl_lib.views.copy_paste import BLUR_RADIUS, blur_at_source

    sample = make_sample(512, 512, rectangle(512, 512, 0, 0, 256, 512))  # a vertical edge at x = 256
    alpha = _paste_alpha(_whole_image_views(128, blending="gaussian"), sample)
    blurred = blur_at_source(sample["mask"].float())  # sigma = BLUR_RADIUS * 512 = 6.8 px at the source
    torch.testing.assert_close(alpha, F.resize(blurred[None], [128, 128], antialias=True)[0], atol=1e-5, rtol=0)
    hard = _paste_alpha(_whole_image_views(128, blending="none"), sample)
    soft_columns, hard_columns = (int(((a[0] > 0.02) & (a[0] < 0.98)).sum()) for a in (alpha, hard))
    # the view's border is the source blur seen through a 4x downscale: about 6 sigma / 4 columns wide
    assert soft_columns >= hard_columns + round(6 * BLUR_RADIUS * 512 / 4) - 4 > hard_columns


def test_patch_area_within_crop_scale_and_inside_box():
    torch.manual_seed(0)
    for _ in range(300):
        x0, y0 = (int(v) for v in torch.randint(0, 30, (2,)))
        x1, y1 = x0 + int(torch.randint(1, 40, ())), y0 + int(torch.randint(1, 40, ()))
        lo, hi = sorted(float(v) for v in torch.rand(2).clamp_min(0.05))
        px0, py0, px1, py1 = sample_patch((x0, y0, x1, y1), (lo, hi))
        assert x0 <= px0 < px1 <= x1 and y0 <= py0 < py1 <= y1
        w, h, area = px1 - px0, py1 - py0, (x1 - x0) * (y1 - y0)
        assert (w - 0.5) * (h - 0.5) <= hi * area + 1e-6 or (w == 1 or h == 1)
        assert (w + 0.5) * (h + 0.5) >= lo * area - 1e-6 or (w == x1 - x0 and h == y1 - y0)


@pytest.mark.parametrize("size", [16, 64])
def test_paste_area_within_paste_ratio(size):
    torch.manual_seed(0)
    for _ in range(300):
        ph, pw = (int(v) for v in torch.randint(1, 50, (2,)))
        lo, hi = sorted(float(v) for v in torch.rand(2).clamp_min(0.05))
        x0, y0, x1, y1 = paste_box(ph, pw, size, (lo, hi))
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        area = (x1 - x0) * (y1 - y0)
        assert lo * size**2 - size / 2 - 1 <= area <= hi * size**2 + size / 2 + 1


def test_swap_other_mask_fraction_within_bounds(rect_dataset):
    views = build("saliency_swap_other", rect_dataset, paste_ratio=(0.2, 0.4), photometric="none", size=48, seed=3)
    fractions = [float(views(s)[f"mask{k}"].mean()) for s in rect_dataset * 5 for k in (1, 2)]
    assert min(fractions) >= 0.2 - 0.02 and max(fractions) <= 0.4 + 0.02
    assert max(fractions) - min(fractions) > 0.05  # r is drawn, not fixed


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("box", [(0.0, 0.0, 0.0, 0.0), (5.0, 5.0, 6.0, 6.0), (5.2, 5.3, 5.7, 5.9),
                                 (0.0, 0.0, 1e9, 1e9), (-10.0, 3.0, 4.0, 1e3)])
@pytest.mark.parametrize("shape", [(13, 70), (64, 9), (25, 25)])
def test_edge_boxes_and_image_sizes(case, box, shape, rect_dataset):
    height, width = shape
    sample = make_sample(height, width, torch.zeros(height, width, dtype=torch.bool))
    sample["box"] = torch.tensor(box)
    out = build(case, rect_dataset, seed=0)(sample)
    assert out["view1"].shape == (3, SIZE, SIZE) and out["mask2"].shape == (SIZE, SIZE)
    assert torch.isfinite(out["view1"]).all()


def test_object_box():
    assert object_box(torch.tensor([0.0, 0.0, 0.0, 0.0]), 10, 20) == (0, 0, 20, 10)  # empty: whole image
    assert object_box(torch.tensor([3.0, 4.0, 3.0, 9.0]), 10, 20) == (0, 0, 20, 10)  # zero width: whole image
    assert object_box(torch.tensor([5.2, 5.3, 5.7, 5.9]), 10, 20) == (5, 5, 6, 6)  # sub-pixel: one pixel
    assert object_box(torch.tensor([-4.0, 2.5, 30.0, 8.0]), 10, 20) == (0, 2, 20, 8)  # clipped, rounded outwards


@pytest.mark.parametrize("case", CASES)
def test_seed_gives_identical_views(case, rect_dataset):
    first, second = build(case, rect_dataset, seed=7), build(case, rect_dataset, seed=7)
    other = build(case, rect_dataset, seed=8)
    state = torch.get_rng_state()
    a, b, c = first(rect_dataset[1]), second(rect_dataset[1]), other(rect_dataset[1])
    assert torch.equal(state, torch.get_rng_state()), "seeded views must not disturb the global RNG"
    for key in ("view1", "view2", "mask1", "mask2"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["view1"], c["view1"])
    assert not torch.equal(a["view1"], a["view2"])
    first.set_epoch(1)
    assert not torch.equal(first(rect_dataset[1])["view1"], a["view1"])


class ViewDataset(Dataset):
    def __init__(self, samples: list[dict], views) -> None:
        self.samples, self.views = samples, views

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.views(self.samples[index])


def _batches(dataset: Dataset, workers: int, seed: int | None = None) -> list[dict]:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=3, num_workers=workers, worker_init_fn=seed_worker, generator=generator)
    return list(loader)


def test_dataloader_workers_reproducible():
    samples = [make_sample(20 + i, 30 - i, l_shape(20 + i, 30 - i), i) for i in range(6)]
    seeded = ViewDataset(samples, build_views("copy_paste", size=16, p=0.5, seed=11))
    reference = _batches(seeded, workers=0)
    for batch, expected in zip(_batches(seeded, workers=2), reference, strict=True):
        assert torch.equal(batch["view1"], expected["view1"]) and torch.equal(batch["mask2"], expected["mask2"])
    unseeded = ViewDataset(samples, build_views("rrc", size=16))  # per-worker seeding from the loader's generator
    run1, run2 = _batches(unseeded, workers=2, seed=5), _batches(unseeded, workers=2, seed=5)
    assert all(torch.equal(a["view1"], b["view1"]) for a, b in zip(run1, run2, strict=True))
    run3 = _batches(unseeded, workers=2, seed=6)
    assert not all(torch.equal(a["view1"], b["view1"]) for a, b in zip(run1, run3, strict=True))


@pytest.mark.parametrize("center_crop", [False, True])
def test_eval_view(center_crop):
    sample = make_sample(40, 80, rectangle(40, 80, 20, 10, 60, 30))
    out = eval_view(20, center_crop=center_crop)(sample)
    assert out["image"].shape == (3, 20, 20) and out["image"].dtype == torch.float32
    assert out["mask"].shape == (20, 20) and out["label"] == sample["label"]
    assert_mask_matches_red(out["image"], out["mask"])
    assert torch.allclose(out["box"], mask_to_box(out["mask"]), atol=1.0)
    if not center_crop:
        assert torch.allclose(out["box"], torch.tensor([5.0, 5.0, 15.0, 15.0]))
    assert torch.equal(eval_view(20, center_crop=center_crop)(sample)["image"], out["image"])


def test_photometric_pipelines():
    first, second = build_photometric("byol", 32)
    assert first is not second  # asymmetric blur / solarize
    mocov2 = build_photometric("mocov2", 32)
    assert mocov2[0] is mocov2[1]
    image = torch.rand(3, 32, 32)
    torch.manual_seed(0)
    assert all(0 <= float(op(image).min()) and float(op(image).max()) <= 1 for op in (*mocov2, first, second))


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_separable_blur_matches_torchvision(channels):
    image = torch.rand(channels, 21, 34)
    for kernel, sigma in [(3, 0.4), (9, 1.7), (23, 2.0)]:
        expected = F.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
        assert torch.allclose(separable_gaussian_blur(image, kernel, sigma), expected, atol=1e-5)


def test_errors_say_what_to_do(rect_dataset):
    with pytest.raises(ValueError, match="copy_paste, rrc, saliency_swap"):
        build_views("cutmix", size=8)
    with pytest.raises(ValueError, match="pass dataset="):
        build_views("saliency_swap", size=8, mode="same")
    with pytest.raises(ValueError, match="same"):
        build_views("saliency_swap", size=8, mode="coco", dataset=rect_dataset)
    with pytest.raises(ValueError, match="blending"):
        build_views("copy_paste", size=8, blending="poisson", backgrounds=GreyBackgrounds())
    with pytest.raises(ValueError, match="crop_scale"):
        build_views("saliency_swap", size=8, dataset=rect_dataset, crop_scale=(0.0, 1.0))
    with pytest.raises(TypeError, match="BackgroundPool"):
        build_views("copy_paste", size=8, backgrounds=object())
    with pytest.raises(ValueError, match="size"):
        build_views("rrc", size=0)
    bad = dict(rect_dataset[0], image=rect_dataset[0]["image"].float())
    with pytest.raises(ValueError, match="uint8"):
        build_views("rrc", size=8)(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CASES)
def test_views_on_cuda(case, rect_dataset):
    cuda = [dict(s, image=s["image"].cuda(), mask=s["mask"].cuda()) for s in rect_dataset]
    out = build(case, cuda, seed=0)(cuda[0])
    assert out["view1"].device.type == "cuda" and out["mask2"].device.type == "cuda"
    assert eval_view(SIZE)(cuda[1])["image"].device.type == "cuda"

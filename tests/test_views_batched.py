"""Batched two-view generators: masks follow every op, distributions match the per-sample generators, seeding,
contract, autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as F

from fgssl_lib.data.backgrounds import GreyBackgrounds
from fgssl_lib.views import build_batched_views, build_views
from fgssl_lib.views.batched.geometry import (RRC_UNIFORMS, Workspace, blur_matrices, channels_last, flip_rows,
                                              paste_boxes, patch_boxes, random_resized_crop_boxes, resample,
                                              resampling_matrices, resized_crop, resized_crops)
from fgssl_lib.views.batched.photometric import (ORDERS, PHOTOMETRIC_UNIFORMS, colour_transforms, gaussian_blur,
                                                 grouped_gaussian_blur, photometric)
from fgssl_lib.views.copy_paste import blur_at_source
from fgssl_lib.views.photometric import PHOTOMETRIC_SPECS, PhotometricSpec
from fgssl_lib.views.saliency_swap import paste_box, sample_patch
from test_views import assert_mask_matches_red, l_shape, make_sample, rectangle, red_pixels

SIZE = 24
POOL = GreyBackgrounds(100, 150)


def collate(samples: list[dict], saliency: bool = False) -> dict:
    """Store rows of ``samples``: images zero-padded to the largest height and width, with their ``hw``."""
    height, width = max(s["image"].shape[1] for s in samples), max(s["image"].shape[2] for s in samples)
    image = torch.zeros(len(samples), 3, height, width, dtype=torch.uint8)
    mask = torch.zeros(len(samples), height, width, dtype=torch.uint8)
    for row, s in enumerate(samples):
        h, w = s["image"].shape[1:]
        image[row, :, :h, :w], mask[row, :h, :w] = s["image"], s["mask"]
    batch = dict(image=image, mask=mask, box=torch.stack([s["box"] for s in samples]),
                 hw=torch.tensor([s["image"].shape[1:] for s in samples]),
                 label=torch.tensor([s["label"] for s in samples]), index=torch.tensor([s["index"] for s in samples]))
    if saliency:
        batch["saliency"] = mask * 255
    return batch


def source_of(batch: dict):
    """``source(indices)`` over the rows of ``batch`` (index ``i`` is row ``i``)."""
    return lambda indices: {key: value[indices.cpu()] for key, value in batch.items()}


def rect_batch() -> dict:
    shapes = [(30, 40, 5, 8, 30, 25), (50, 36, 10, 5, 30, 40), (40, 40, 0, 0, 40, 40), (28, 60, 40, 3, 55, 20)]
    return collate([make_sample(h, w, rectangle(h, w, *box), i) for i, (h, w, *box) in enumerate(shapes)])


def l_batch() -> dict:
    return collate([make_sample(h, w, l_shape(h, w), i) for i, (h, w) in enumerate([(40, 56), (30, 30), (52, 44)])])


CASES = {
    "rrc": dict(name="rrc"),
    "saliency_swap_same": dict(name="saliency_swap", mode="same", dataset_size=4),
    "saliency_swap_other": dict(name="saliency_swap", mode="other", backgrounds=POOL),
    "copy_paste": dict(name="copy_paste", p=1.0, blending="none", backgrounds=POOL),
}


GROUPED_CASES = CASES | {"copy_paste_mix": dict(name="copy_paste", p=1.0, blending="mix", backgrounds=POOL)}
"""The cases whose grouped path is checked against the per-view path: a blurred soft map too."""


def build(case: str, **params):
    kwargs = GROUPED_CASES[case] | params
    return build_batched_views(kwargs.pop("name"), kwargs.pop("size", SIZE), **kwargs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("photometric_name", ["mocov2", "byol", "none"])
def test_contract(case, photometric_name):
    batch = rect_batch()
    out = build(case, photometric=photometric_name)(batch, epoch=0, source=source_of(batch))
    assert set(out) == {"view1", "view2", "mask1", "mask2", "label", "index"}
    assert torch.equal(out["label"], batch["label"]) and torch.equal(out["index"], batch["index"])
    for k in (1, 2):
        view, mask = out[f"view{k}"], out[f"mask{k}"]
        assert view.shape == (4, 3, SIZE, SIZE) and view.dtype == torch.float32
        assert mask.shape == (4, SIZE, SIZE) and mask.dtype == torch.float32
        assert 0 <= float(view.min()) and float(view.max()) <= 1
        assert set(mask.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("case", CASES)
def test_mask_covers_exactly_the_object(case):
    """Known colours: a red object on blue (zero padding around each row). After crop, resize, paste and flip the mask
    covers exactly the red pixels, up to a one-pixel border where bilinear resampling mixes the two colours."""
    batch = rect_batch() if case.startswith("saliency_swap") else l_batch()
    views = build(case, photometric="none", seed=1)
    for epoch in range(6):
        out = views(batch, epoch, source=source_of(batch))
        for k in (1, 2):
            for view, mask in zip(out[f"view{k}"], out[f"mask{k}"]):
                assert_mask_matches_red(view, mask)


def test_flip_moves_image_and_mask_together():
    batch = collate([make_sample(30, 30, l_shape(30, 30))])
    views = build_batched_views("rrc", 30, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0, photometric="none")
    out = views(batch, 0)
    expected = F.horizontal_flip(F.to_dtype(batch["image"][0], torch.float32, scale=True))
    assert torch.allclose(out["view1"][0], expected, atol=1e-6)
    assert torch.equal(out["mask1"][0], batch["mask"][0].flip(-1).float())


def test_swap_same_pastes_over_the_other_images_box():
    background = make_sample(48, 32, rectangle(48, 32, 4, 12, 20, 36), index=1)
    batch = collate([make_sample(30, 30, rectangle(30, 30, 0, 0, 30, 30), index=0), background])
    views = build_batched_views("saliency_swap", SIZE, mode="same", dataset_size=2, photometric="none", flip_p=0.0)
    out = views(batch, 0, source=source_of(batch))
    expected = torch.zeros(SIZE, SIZE)
    expected[round(12 * SIZE / 48): round(36 * SIZE / 48), round(4 * SIZE / 32): round(20 * SIZE / 32)] = 1
    assert torch.equal(out["mask1"][0], expected) and torch.equal(out["mask2"][0], expected)
    assert torch.equal(red_pixels(out["view1"][0]), expected.bool())


def test_copy_paste_blends_with_the_soft_map():
    """An object whose saliency is 0 is replaced by the background wherever it is pasted: with p the fraction of
    grey views is p (binomial tolerance), the mask still marks the object."""
    samples = [make_sample(20, 20, rectangle(20, 20, 0, 0, 20, 20), i) for i in range(200)]
    batch = collate(samples, saliency=True)
    batch["saliency"].zero_()
    out = build_batched_views("copy_paste", 8, p=0.3, backgrounds=POOL, photometric="none")(batch, 0)
    views = torch.cat([out["view1"], out["view2"]])
    grey = (views[:, 0] - views[:, 2]).abs().amax((-2, -1)) < 1e-6
    assert abs(float(grey.float().mean()) - 0.3) < 3 * (0.3 * 0.7 / 400) ** 0.5
    assert bool((torch.cat([out["mask1"], out["mask2"]]) == 1).all())


def test_copy_paste_blurs_the_soft_map_before_the_crop():
    batch = collate([make_sample(60, 60, rectangle(60, 60, 20, 20, 40, 40))], saliency=True)
    hard = build_batched_views("copy_paste", 60, p=1.0, blending="none", scale=(1.0, 1.0), ratio=(1.0, 1.0),
                               photometric="none", flip_p=0.0, backgrounds=GreyBackgrounds(0, 0))(batch, 0)
    soft = build_batched_views("copy_paste", 60, p=1.0, blending="gaussian", scale=(1.0, 1.0), ratio=(1.0, 1.0),
                               photometric="none", flip_p=0.0, backgrounds=GreyBackgrounds(0, 0))(batch, 0)
    red_hard, red_soft = hard["view1"][0, 0], soft["view1"][0, 0]
    assert set(red_hard.unique().tolist()) <= {0.0, 1.0}
    assert ((red_soft > 0.01) & (red_soft < 0.99)).sum() > 0  # a soft border
    assert torch.equal(hard["mask1"], soft["mask1"])


def torchvision_boxes(height: int, width: int, scale, ratio, count: int) -> np.ndarray:
    image = torch.zeros(1, height, width)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        boxes = [RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(count)]
    return np.array([(j, i, j + w, i + h) for i, j, h, w in boxes], dtype=float)


def ks(a: np.ndarray, b: np.ndarray) -> float:
    return float(ks_2samp(a, b).statistic)


def area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def log_aspect(boxes: np.ndarray) -> np.ndarray:
    return np.log((boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1]))


def centre_x(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 0] + boxes[:, 2]) / 2


@pytest.mark.parametrize("hw, scale", [((50, 80), (0.2, 1.0)), ((64, 64), (0.08, 1.0)), ((30, 90), (0.2, 1.0))])
def test_rrc_scale_aspect_and_position_match_torchvision(hw, scale):
    count, ratio = 3000, (3 / 4, 4 / 3)
    u = torch.rand(count, RRC_UNIFORMS, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = random_resized_crop_boxes(u, torch.tensor([hw] * count), scale, ratio).numpy()
    ref = torchvision_boxes(*hw, scale, ratio, count)
    for boxes in (ours, ref):
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= hw[1]).all() and (boxes[:, 3] <= hw[0]).all()
    for statistic in (area, log_aspect, centre_x):  # crop scale and aspect histograms, position
        assert ks(statistic(ours), statistic(ref)) < 0.06


def test_swap_patch_and_paste_boxes_match_the_per_sample_draws():
    count, box, size = 2000, (3, 5, 40, 30), 32
    u = torch.rand(count, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    patches = patch_boxes(u[:, :3], torch.tensor([box] * count, dtype=torch.float64), (0.5, 1.0))
    pastes = paste_boxes(u[:, 3:], patches, size, (0.3, 0.7)).numpy()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref_patches = np.array([sample_patch(box, (0.5, 1.0)) for _ in range(count)], dtype=float)
        ref_pastes = np.array([paste_box(p[3] - p[1], p[2] - p[0], size, (0.3, 0.7)) for p in ref_patches.astype(int)],
                              dtype=float)
    patches = patches.numpy()
    assert (patches[:, :2] >= box[:2]).all() and (patches[:, 2] <= box[2]).all() and (patches[:, 3] <= box[3]).all()
    paste_area = area(pastes) / size**2
    assert paste_area.min() >= 0.3 - 0.05 and paste_area.max() <= 0.7 + 0.05
    for ours, ref in ((patches, ref_patches), (pastes, ref_pastes)):
        assert ks(area(ours), area(ref)) < 0.06 and ks(ours[:, 0], ref[:, 0]) < 0.06


def as_rows(images: torch.Tensor) -> torch.Tensor:
    """Float ``N x 3 x S x S`` images in [0, 1] as the photometric ops' input: ``N x S x S x 3`` uint8."""
    return torch.round(images * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize("case", ["rrc", "saliency_swap_other"])
def test_view_mask_fractions_match_the_per_sample_generator(case):
    """End to end, over many epochs: the fraction of each view the mask covers (what the crop scale, aspect and paste
    ratio decide together) has the per-sample generator's distribution."""
    samples = [make_sample(h, w, rectangle(h, w, *box), i)
               for i, (h, w, *box) in enumerate([(30, 40, 5, 8, 30, 25), (50, 36, 10, 5, 30, 40)])]
    batch, params = collate(samples), {key: value for key, value in CASES[case].items() if key != "name"}
    batched = build(case, photometric="none")
    per_sample = build_views(CASES[case]["name"], SIZE, photometric="none", seed=0, **params)
    ours, theirs = [], []
    for epoch in range(100):
        out = batched(batch, epoch)
        ours += torch.cat([out["mask1"], out["mask2"]]).mean((-2, -1)).tolist()
        per_sample.set_epoch(epoch)
        for sample in samples:
            views = per_sample(sample)
            theirs += [float(views["mask1"].mean()), float(views["mask2"].mean())]
    assert ks(np.array(ours), np.array(theirs)) < 0.12


def forced_uniforms(order: int, factors: tuple[float, float, float, float], greyscale: bool = False) -> torch.Tensor:
    """Uniforms that apply the jitter in ``ORDERS[order]`` with the given ``(b, c, s, h)`` drawn positions."""
    u = torch.ones(1, PHOTOMETRIC_UNIFORMS, dtype=torch.float64)
    u[0, 0], u[0, 1], u[0, 2:6] = 0.0, (order + 0.5) / len(ORDERS), torch.tensor(factors)
    u[0, 6] = 0.0 if greyscale else 1.0
    return u


@pytest.mark.parametrize("order", [0, 7, 23])
def test_jitter_matrix_equals_torchvision_chain(order):
    """Brightness, contrast and saturation (hue fixed at 0) in a drawn order and greyscale, as one matrix: equal to
    torchvision's ops in that order while no value leaves [0, 1]."""
    spec = PhotometricSpec(saturation=0.4, blur_p=0.0)
    rows = as_rows(0.35 + 0.3 * torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)))
    image = rows[0].permute(2, 0, 1) / 255
    u = forced_uniforms(order, (0.2, 0.8, 0.3, 0.5), greyscale=True)
    factors = {0: 1 + 0.4 * (2 * 0.2 - 1), 1: 1 + 0.4 * (2 * 0.8 - 1), 2: 1 + 0.4 * (2 * 0.3 - 1)}
    ops = {0: F.adjust_brightness, 1: F.adjust_contrast, 2: F.adjust_saturation}
    expected = image
    for op in ORDERS[order].tolist():
        if op in ops:
            expected = ops[op](expected, factors[op])
    expected = F.rgb_to_grayscale(expected, num_output_channels=3)
    ours = photometric(rows, u, (spec, spec))[0]
    assert torch.allclose(ours, expected, atol=1e-5)


def test_a_spec_pair_gives_each_half_of_the_views_its_own_transforms():
    """Both views' transforms in one call equal each half's with its own spec (BYOL's asymmetric pair)."""
    first, plain = PHOTOMETRIC_SPECS["byol"][0], PhotometricSpec(saturation=0.0, blur_p=0.0, hue=0.0)
    u = torch.rand(6, PHOTOMETRIC_UNIFORMS, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mean = 255 * torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    both = colour_transforms(u, (first, plain), mean)
    halves = [colour_transforms(u[:3], first, mean[:3]), colour_transforms(u[3:], plain, mean[3:])]
    for ours, expected in zip(both, zip(*halves)):
        assert torch.allclose(ours, torch.cat(expected))


def test_hue_keeps_luma_and_turns_like_torchvision():
    spec = PhotometricSpec(saturation=0.0, blur_p=0.0, brightness=0.0, contrast=0.0, hue=0.1)
    rows = as_rows(0.3 + 0.4 * torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    image = rows[0].permute(2, 0, 1) / 255
    u = forced_uniforms(0, (0.5, 0.5, 0.5, 1.0))  # hue +0.1
    A, t = colour_transforms(u, spec, image.mean((-2, -1)).double()[None] * 255)
    assert torch.allclose(torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64) @ (A[0] * 255),
                          torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64), atol=1e-3)
    ours = photometric(rows, u, (spec, spec))[0]
    ref, other_way = F.adjust_hue(image, 0.1), F.adjust_hue(image, -0.1)
    assert (ours - ref).abs().mean() < (ours - other_way).abs().mean()


@pytest.mark.parametrize("name", ["mocov2", "byol"])
def test_photometric_probabilities_and_ranges_match_the_spec(name):
    """Over many views: greyscale, blur and solarize rates match the spec; brightness factors span its range."""
    count = 4000
    for spec in PHOTOMETRIC_SPECS[name]:
        u = torch.rand(count, PHOTOMETRIC_UNIFORMS, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        A, _ = colour_transforms(u, PhotometricSpec(saturation=0.0, blur_p=0.0, contrast=0.0, hue=0.0,
                                                    brightness=spec.brightness, jitter_p=spec.jitter_p,
                                                    grayscale_p=0.0), torch.zeros(count, 3, dtype=torch.float64))
        brightness = A[:, 0, 0] * 255
        jittered = brightness != 1
        assert abs(float(jittered.double().mean()) - spec.jitter_p) < 0.03
        assert float(brightness.min()) >= 1 - spec.brightness and float(brightness.max()) <= 1 + spec.brightness
        assert float(brightness[jittered].min()) < 1 - 0.9 * spec.brightness
        assert float(brightness[jittered].max()) > 1 + 0.9 * spec.brightness
        assert abs(float((u[:, 6] < spec.grayscale_p).double().mean()) - spec.grayscale_p) < 0.03
    # end to end: the fraction of grey views is jitter-independent and equals grayscale_p
    views = photometric(as_rows(torch.rand(400, 3, 8, 8)), torch.rand(400, PHOTOMETRIC_UNIFORMS, dtype=torch.float64,
                                                                   generator=torch.Generator().manual_seed(4)),
                        PHOTOMETRIC_SPECS[name])
    grey = (views[:, 0] - views[:, 1]).abs().amax((-2, -1)) < 1e-5
    assert abs(float(grey.float().mean()) - 0.2) < 0.07


def test_blur_and_solarize_are_applied_per_view():
    spec = PhotometricSpec(saturation=0.0, blur_p=0.5, solarize_p=0.5, jitter_p=0.0, grayscale_p=0.0)
    image = torch.full((1, 3, 64, 64), 0.2)
    image[..., 32:] = 0.8
    u = torch.ones(4, PHOTOMETRIC_UNIFORMS, dtype=torch.float64) - 1e-9
    u[1, 7] = 0.0  # blurred, with the largest sigma of the range
    u[2, 9] = 0.0  # solarized
    out = photometric(as_rows(image.expand(4, -1, -1, -1)), u, (spec, spec))
    plain = image[0]
    assert torch.allclose(out[0], plain) and torch.equal(out[0], out[3])
    edge = out[1][:, :, 31:33]  # the two columns beside the step: smoothed towards each other
    assert float(edge.min()) > 0.25 and float(edge.max()) < 0.75
    assert torch.allclose(out[1][:, :, :20], plain[:, :, :20])  # flat regions stay
    assert torch.allclose(out[2], torch.where(plain >= 0.5, 1 - plain, plain))


@pytest.mark.parametrize("case", CASES)
def test_seeded_views_depend_on_seed_epoch_and_index_only(case):
    batch = rect_batch()
    views = build(case, seed=3)
    first, again = views(batch, 2, source=source_of(batch)), views(batch, 2, source=source_of(batch))
    later = views(batch, 3, source=source_of(batch))
    for key in ("view1", "view2", "mask1", "mask2"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["view1"], later["view1"])
    reordered = {key: value[[2, 0]] for key, value in batch.items()}  # a different batch around rows 2 and 0
    part = views(reordered, 2, source=source_of(batch))
    for key in ("view1", "view2", "mask1", "mask2"):
        assert torch.allclose(part[key], first[key][[2, 0]], atol=1e-6)


def test_global_rng_is_untouched():
    batch = rect_batch()
    state = torch.get_rng_state()
    build("copy_paste")(batch, 0)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("case", CASES)
def test_runs_under_bfloat16_autocast(case):
    batch = rect_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = build(case, photometric="byol")(batch, 0, source=source_of(batch))
    assert out["view1"].dtype == torch.float32 and out["mask2"].dtype == torch.float32


def test_float_resize_path_matches_the_uint8_kernel():
    """The path other devices take (through float) gives the CPU's uint8 kernel's pixels, up to rounding."""
    source = torch.randint(0, 256, (2, 40, 50, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for box, (height, width) in [([3, 5, 45, 37], (16, 16)), ([10, 2, 20, 12], (24, 31))]:  # shrink, magnify
        exact = resized_crop(source, 1, box, height, width)
        through_float = resized_crop(source.float(), 1, box, height, width).round().clamp(0, 255)
        assert exact.shape == (height, width, 4)
        assert (through_float - exact.float()).abs().max() <= 1


def test_resized_crops_into_a_buffer_equal_torch_interpolate():
    """The CPU loop (the uint8 kernel written into a reused buffer) gives F.interpolate's antialiased pixels exactly."""
    source = torch.randint(0, 256, (2, 40, 50, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[3.0, 5, 45, 37], [10, 2, 20, 12], [0, 0, 50, 40]])
    out = Workspace().buffer("views", (3, 16, 16, 4), source.device)
    ours = resized_crops(source, torch.tensor([1, 0, 1]), boxes, 16, out=out)
    for k, (row, (x0, y0, x1, y1)) in enumerate(zip([1, 0, 1], boxes.long().tolist())):
        expected = torch.nn.functional.interpolate(source[row, y0:y1, x0:x1].permute(2, 0, 1)[None], size=(16, 16),
                                                   mode="bilinear", antialias=True, align_corners=False)
        assert torch.equal(ours[k], expected[0].permute(1, 2, 0))
    assert ours.data_ptr() == out.data_ptr()
    region = torch.zeros(30, 30, 4, dtype=torch.uint8)  # a strided target (a box of the first three channels)
    resized_crop(source[..., :3].contiguous(), 1, [3, 5, 45, 37], 10, 12, out=region[4:14, 6:18, :3])
    assert torch.equal(region[4:14, 6:18, :3], resized_crop(source, 1, [3, 5, 45, 37], 10, 12)[..., :3])
    assert region.sum() == region[4:14, 6:18, :3].sum()


@pytest.mark.parametrize("grouped", [False, True])
def test_flip_rows_mirrors_only_the_flagged_rows(grouped):
    x = torch.arange(3 * 2 * 4 * 1, dtype=torch.uint8).view(3, 2, 4, 1)
    flip = torch.tensor([True, False, True])
    expected = torch.where(flip[:, None, None, None], x.flip(2), x)
    assert torch.equal(flip_rows(x.clone(), flip, dim=2, grouped=grouped), expected)


def test_grouped_resize_matches_the_uint8_kernel():
    """All crops in one pair of matrix products (the path other devices take) give the CPU's antialiased uint8
    kernel's pixels up to rounding: shrinking, magnifying, one-pixel crops, and crops placed in a box of the view."""
    source = torch.randint(0, 256, (3, 40, 50, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rows = torch.tensor([1, 0, 2, 1, 0])
    boxes = torch.tensor([[3.0, 5, 45, 37], [10, 2, 20, 12], [0, 0, 50, 40], [7, 9, 8, 10], [0, 0, 50, 1]])
    for size in (16, 37):
        exact = resized_crops(source, rows, boxes, size, grouped=False)
        grouped = resized_crops(source, rows, boxes, size, grouped=True)
        assert (grouped.int() - exact.int()).abs().max() <= 1 and (grouped != exact).float().mean() < 0.2
    targets = torch.tensor([[2.0, 3, 14, 9], [0, 0, 20, 20], [5, 5, 6, 6], [1, 0, 19, 20], [4, 2, 10, 17]])
    placed = resample(source.permute(0, 3, 1, 2), rows, *resampling_matrices(boxes, (40, 50), 20, targets))
    for k, (x0, y0, x1, y1) in enumerate(targets.long().tolist()):
        exact = resized_crop(source, int(rows[k]), boxes[k].long().tolist(), y1 - y0, x1 - x0).permute(2, 0, 1)
        inside = placed[k, :, y0:y1, x0:x1]
        assert (inside.round() - exact.float()).abs().max() <= 1
        outside = placed[k].clone()
        outside[:, y0:y1, x0:x1] = 0
        assert not outside.any()  # nothing outside the target box


def test_blur_matrices_equal_the_blur_at_source():
    """Composed into the resampling matrices, the blur along each axis (reflect-101 at the valid size of a padded
    row) equals DiLo's blur of the map at its stored size."""
    generator = torch.Generator().manual_seed(0)
    for height, width in [(40, 50), (31, 30), (2, 5), (1, 3), (120, 90)]:
        soft = torch.rand(height, width, generator=generator)
        sigma = torch.tensor([max(5 / 375 * min(height, width), 0.5)])
        padded = torch.zeros(130, 130)
        padded[:height, :width] = soft
        along_y = blur_matrices(torch.tensor([height]), sigma, 130, torch.device("cpu"))[0]
        along_x = blur_matrices(torch.tensor([width]), sigma, 130, torch.device("cpu"))[0]
        ours = along_y @ padded @ along_x.T
        assert torch.allclose(ours[:height, :width], blur_at_source(soft), atol=1e-3)
        assert ours[height:].abs().sum() == 0 and ours[:, width:].abs().sum() == 0


@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_views_equal_the_per_view_path(case):
    """The generators' grouped path (forced on the CPU) makes the per-view path's views up to the resize's rounding
    (twice that where a resized soft map blends the view) and the same masks but for a rare border pixel."""
    from fgssl_lib.bench.views import store_batch

    batch, _ = store_batch(32, 6, seed=1)
    size = {"dataset_size": 6} if case == "saliency_swap_same" else {}
    for epoch in range(3):
        views = [build(case, photometric="none", seed=epoch, grouped=grouped, **size)(batch, epoch,
                                                                                      source=source_of(batch))
                 for grouped in (False, True)]
        for k in (1, 2):
            tolerance = (2 if case.startswith("copy_paste") else 1) / 255 + 1e-6
            assert (views[0][f"view{k}"] - views[1][f"view{k}"]).abs().max() <= tolerance
            assert (views[0][f"mask{k}"] != views[1][f"mask{k}"]).float().mean() < 2e-3


def test_grouped_photometric_ops_equal_the_cpu_ones():
    rows = as_rows(torch.rand(8, 3, 24, 24, generator=torch.Generator().manual_seed(0)))
    u = torch.rand(8, PHOTOMETRIC_UNIFORMS, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u[:, 7] = 0.0  # every view blurred
    specs = PHOTOMETRIC_SPECS["mocov2"]
    assert torch.allclose(photometric(rows, u, specs, grouped=True), photometric(rows, u, specs, grouped=False),
                          atol=1e-5)


@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_operator_calls_do_not_grow_with_the_batch(case):
    """The grouped path makes a batch of 12 with as many operator calls as a batch of 3 (host draws from background
    pools aside), up to the few calls of a branch some batch skips; the per-view path's calls grow with the batch."""
    from fgssl_lib.bench.views import operator_calls

    shapes = [(30, 40, 5, 8, 30, 25), (50, 36, 10, 5, 30, 40), (40, 40, 0, 0, 40, 40)]
    counts = {}
    for n in (3, 12):
        batch = collate([make_sample(h, w, rectangle(h, w, *box), i) for i, (h, w, *box) in
                         enumerate(shapes * (n // 3))])
        for grouped in (False, True):
            size = {"dataset_size": n} if case == "saliency_swap_same" else {}
            views = build(case, photometric="mocov2", grouped=grouped, **size)
            counts[n, grouped] = operator_calls(views, batch, source_of(batch))
    assert abs(counts[12, True] - counts[3, True]) <= 0.01 * counts[3, True]  # a branch (no view solarized) aside
    assert counts[12, False] > counts[3, False] + 9 * 2  # at least one more call per extra view


def test_grouped_blur_matches_opencv():
    """The blur other devices take (grouped convolutions) equals OpenCV's on a CPU, per view and sigma."""
    views = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows, sigma = torch.tensor([0, 2, 3]), torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    expected = gaussian_blur(views.clone(), rows, 9, sigma)
    ours = grouped_gaussian_blur(views.clone(), rows, 9, sigma)
    assert torch.allclose(ours, expected, atol=1e-5) and torch.equal(ours[1], views[1])


def test_resizing_runs_on_the_meta_device():
    """Shapes propagate without data: the geometry is device-agnostic."""
    image = torch.empty(2, 3, 20, 30, dtype=torch.uint8, device="meta")
    rows = channels_last(Workspace(), image, torch.empty(2, 20, 30, dtype=torch.uint8, device="meta"))
    out = resized_crops(rows, torch.tensor([0, 1]), torch.tensor([[0.0, 0, 30, 20], [2, 2, 12, 8]]), 8)
    assert out.shape == (2, 8, 8, 4) and out.device.type == "meta"


def test_bench_prints_one_line_per_generator_and_size(capsys):
    from fgssl_lib.bench.views import BATCHED_CASES, main

    threads = torch.get_num_threads()
    try:
        assert main(["--sizes", "--batched-sizes", "16", "--batch", "4", "--batched-rounds", "1", "--ops-batches",
                     "2", "6", "--ops-size", "8"]) == 0
    finally:
        torch.set_num_threads(threads)  # the bench runs on one thread
    lines = capsys.readouterr().out.splitlines()
    expected = [["views", name, "16"] for name in BATCHED_CASES] + [["views", name, "ops"] for name in BATCHED_CASES]
    assert [line.split()[:3] for line in lines] == expected
    for line in lines[:len(BATCHED_CASES)]:
        fields = dict(field.split("=") for field in line.split()[3:])
        assert set(fields) == {"batched_per_s", "per_sample_per_s", "ratio"} and float(fields["ratio"]) > 0
    for line in lines[len(BATCHED_CASES):]:
        fields = dict(field.split("=") for field in line.split()[3:])
        assert fields["batches"] == "2,6" and float(fields["grouped_growth"]) == 1.0
        per_view = [int(count) for count in fields["ops_per_step"].split(",")]
        assert per_view[1] > per_view[0]


def test_errors_say_what_to_do():
    batch = rect_batch()
    with pytest.raises(ValueError, match="dataset_size"):
        build_batched_views("saliency_swap", SIZE, mode="same")
    with pytest.raises(ValueError, match="source="):
        build("saliency_swap_same")(batch, 0)
    with pytest.raises(ValueError, match="copy_paste, rrc, saliency_swap"):
        build_batched_views("cutmix", SIZE)
    with pytest.raises(ValueError, match="lacks .hw."):
        build("rrc")({"image": batch["image"]}, 0)
    with pytest.raises(ValueError, match="uint8"):
        build("rrc")(batch | {"image": batch["image"].float()}, 0)


def test_splitmix64_matches_its_64_bit_definition():
    """The wrapped int64 arithmetic gives SplitMix64's outputs (reference: Python's unbounded ints mod 2^64)."""
    from fgssl_lib.views.batched.randomness import splitmix64

    def reference(x: int) -> int:
        z = (x + 0x9E3779B97F4A7C15) % 2**64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        return z ^ (z >> 31)

    states = [0, 1, 12345, 2**62 + 3, 2**64 - 5, 2**63 + 7]
    ours = splitmix64(torch.tensor([x - 2**64 if x >= 2**63 else x for x in states], dtype=torch.int64))
    assert [v % 2**64 for v in ours.tolist()] == [reference(x) for x in states]


def test_uniforms_are_uniform_and_per_sample():
    """A sample's uniforms depend only on (seed, epoch, index), not on the batch around it."""
    from fgssl_lib.views.batched.randomness import draw_uniforms, sample_keys

    u = draw_uniforms(sample_keys(3, 1, torch.arange(500)), 40)
    assert ks_2samp(u.flatten().numpy(), np.linspace(0, 1, 2000)).pvalue > 1e-3
    alone = draw_uniforms(sample_keys(3, 1, torch.tensor([7])), 40)
    assert torch.equal(alone[0], u[7])
    assert not torch.equal(draw_uniforms(sample_keys(3, 2, torch.tensor([7])), 40), alone)

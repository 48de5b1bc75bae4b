"""Saliency sources (shape, dtype, range, ground truth), ModelSaliency, the on-disk cache and SaliencyDataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from fgssl_lib.data.sample import box_to_mask
from fgssl_lib.saliency import (
    SOURCES,
    CentrePrior,
    ModelSaliency,
    SaliencyCache,
    SaliencyDataset,
    SaliencySource,
    best_box,
    build_saliency,
    cache_root,
    dataset_fingerprint,
)
from fgssl_lib.saliency.cache import cache_key


def make_sample(index: int, height: int = 24, width: int = 32, seed: int = 0) -> dict:
    """A grey-noise image with a bright square object; box and mask are the square."""
    generator = torch.Generator().manual_seed(seed * 1000 + index)
    image = torch.randint(60, 90, (3, height, width), dtype=torch.uint8, generator=generator)
    box = torch.tensor([8.0, 4.0, 20.0, 16.0])
    image[:, 4:16, 8:20] = torch.tensor([230, 40, 40], dtype=torch.uint8)[:, None, None]
    return {"image": image, "label": index % 2, "box": box, "mask": box_to_mask(box, height, width), "index": index}


class TinyDataset(Dataset):
    def __init__(self, n: int = 4, seed: int = 0, height: int = 24, width: int = 32) -> None:
        self.n, self.seed, self.height, self.width = n, seed, height, width
        self.classes, self.num_classes = ["a", "b"], 2
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        return make_sample(index, self.height, self.width, self.seed)


def all_sources() -> list[SaliencySource]:
    return [build_saliency(name) for name in SOURCES if name != "model"] + [
        build_saliency("model", fn=lambda images: images.mean(1)[:, ::4, ::4])
    ]


@pytest.mark.parametrize("source", all_sources(), ids=lambda s: s.name)
def test_every_source_returns_a_map_in_unit_range_at_image_size(source: SaliencySource) -> None:
    sample = make_sample(0, height=24, width=36)
    saliency = source(sample["image"], sample)
    assert saliency.shape == (24, 36) and saliency.dtype == torch.float32
    assert saliency.min() >= 0 and saliency.max() <= 1 and saliency.max() > saliency.min()


def test_ground_truth_sources_equal_the_sample() -> None:
    sample = make_sample(1)
    assert torch.equal(build_saliency("box")(sample["image"], sample), box_to_mask(sample["box"], 24, 32).float())
    assert torch.equal(build_saliency("mask")(sample["image"], sample), sample["mask"].float())
    whole = {**sample, "box": torch.tensor([0.0, 0.0, 32.0, 24.0])}
    assert torch.equal(build_saliency("box")(sample["image"], whole), torch.ones(24, 32))  # constant map kept, not 0


@pytest.mark.parametrize("name", ["box", "mask"])
def test_ground_truth_sources_need_a_sample(name: str) -> None:
    image = make_sample(0)["image"]
    with pytest.raises(ValueError, match=f"ground-truth '{name}'"):
        build_saliency(name)(image)


@pytest.mark.parametrize("name", ["spectral_residual", "fine_grained"])
def test_opencv_sources_find_the_object(name: str) -> None:
    image = torch.full((3, 96, 128), 80, dtype=torch.uint8)  # a red rectangle on flat grey
    image[:, 30:60, 40:80] = torch.tensor([230, 40, 40], dtype=torch.uint8)[:, None, None]
    source = build_saliency(name)
    saliency = source(image)
    inside = torch.zeros(96, 128, dtype=torch.bool)
    inside[28:62, 38:82] = True  # the object and its contour, where both algorithms respond
    assert saliency[inside].mean() > 2 * saliency[~inside].mean()
    assert pickle.loads(pickle.dumps(source)).name == name  # picklable for DataLoader workers


@pytest.mark.parametrize("name", ["spectral_residual", "fine_grained"])
@pytest.mark.parametrize(("height", "width", "value"), [(16, 16, 0), (17, 23, 128), (64, 64, 255), (30, 40, 1)])
def test_opencv_sources_of_a_uniform_image_give_the_whole_image(name: str, height: int, width: int,
                                                                value: int) -> None:
    image = torch.full((3, height, width), value, dtype=torch.uint8)
    saliency = build_saliency(name)(image)
    assert (saliency == saliency[0, 0]).all()
    assert best_box(saliency) == (0, 0, width, height)  # was a corner box, e.g. (0, 0, 1, 1) at 16 px


class NearConstant(SaliencySource):
    """A map of float noise around 1 (range 0.3 % of its value), like OpenCV's spectral residual of flat grey."""

    name = "near_constant"

    def compute(self, image: torch.Tensor, sample: dict | None) -> torch.Tensor:
        return 1 - 0.003 * torch.rand(image.shape[1:], generator=torch.Generator().manual_seed(0))


def test_a_near_constant_map_counts_as_constant() -> None:
    saliency = NearConstant()(torch.zeros(3, 20, 30, dtype=torch.uint8))
    assert (saliency == saliency[0, 0]).all() and best_box(saliency) == (0, 0, 30, 20)


def test_centre_prior_peaks_in_the_centre_and_widens_with_sigma() -> None:
    image = torch.zeros(3, 21, 31, dtype=torch.uint8)
    narrow, wide = CentrePrior(sigma=0.1)(image), CentrePrior(sigma=0.5)(image)
    assert narrow[10, 15] == 1 and narrow[0, 0] == 0
    assert wide[5, 8] > narrow[5, 8]
    assert torch.allclose(narrow, narrow.flip(0)) and torch.allclose(narrow, narrow.flip(1))
    with pytest.raises(ValueError, match="sigma"):
        CentrePrior(sigma=0)


def test_model_saliency_upsamples_and_normalises() -> None:
    seen = []

    def fn(images: torch.Tensor) -> torch.Tensor:
        seen.append(images)
        coarse = torch.zeros(len(images), 2, 2)
        coarse[:, 0, 1] = 10.0  # top-right cell hot, on an arbitrary scale
        return coarse - 3.0

    image = torch.full((3, 16, 16), 255, dtype=torch.uint8)
    saliency = ModelSaliency(fn)(image)
    (images,) = seen
    assert images.shape == (1, 3, 16, 16) and images.dtype == torch.float32 and images.max() == 1.0
    assert saliency.shape == (16, 16) and saliency.min() == 0 and saliency.max() == 1
    assert saliency[0, 15] == 1 and saliency[15, 0] == 0
    assert saliency[:8, 8:].mean() > 0.5 > saliency[8:, :8].mean()
    assert best_box(saliency, grid=2) == (8, 0, 16, 8)


def test_model_saliency_uses_the_module_device_and_checks_output() -> None:
    layer = torch.nn.Conv2d(3, 1, 1)
    source = ModelSaliency(lambda images: layer(images)[:, 0])
    assert source.device == torch.device("cpu")
    assert ModelSaliency(layer).device == next(layer.parameters()).device
    assert source(make_sample(0)["image"]).shape == (24, 32)
    with pytest.raises(ValueError, match="N x h x w"):
        ModelSaliency(lambda images: images)(make_sample(0)["image"])
    with pytest.raises(ValueError, match="key"):
        source.params()


def test_bad_names_options_and_images_are_explained() -> None:
    with pytest.raises(ValueError, match="valid saliency sources: box, centre"):
        build_saliency("boxes")
    with pytest.raises(TypeError, match="saliency source 'centre'"):
        build_saliency("centre", radius=3)
    with pytest.raises(ValueError, match="3 x H x W uint8"):
        CentrePrior()(torch.zeros(3, 8, 8))


def test_cache_hit_miss_and_key_separation(tmp_path: Path) -> None:
    cache = SaliencyCache(tmp_path)
    dataset = TinyDataset()
    source = build_saliency("centre", sigma=0.2)
    maps = cache.load(dataset, source)
    assert len(maps) == 4 and maps[2].shape == (24, 32)
    expected = source(dataset[2]["image"])
    assert torch.allclose(maps[2], expected, atol=0.5 / 255)  # uint8 quantisation
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert len(entries) == 1 and entries[0].startswith("centre-")

    assert torch.equal(pickle.loads(pickle.dumps(maps))[3], maps[3])  # picklable for DataLoader workers
    reads = dataset.reads
    again = cache.load(dataset, source)  # hit: only the fingerprint images are read, no map is recomputed
    assert dataset.reads - reads <= 8 and torch.equal(again[2], maps[2])

    cache.load(dataset, build_saliency("centre", sigma=0.3))  # other parameters
    cache.load(dataset, build_saliency("fine_grained"))  # other source
    cache.load(TinyDataset(seed=1), source)  # other images
    cache.load(dataset, source, dataset_key="tiny-v1")  # explicit dataset identity
    assert len(list(tmp_path.iterdir())) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    cache.clear(dataset, source)
    assert len(list(tmp_path.iterdir())) == 4


def test_cache_keys_are_stable_and_separate() -> None:
    a, b = TinyDataset(seed=0), TinyDataset(seed=0)
    assert dataset_fingerprint(a) == dataset_fingerprint(b) != dataset_fingerprint(TinyDataset(seed=2))
    assert dataset_fingerprint(TinyDataset(n=4)) != dataset_fingerprint(TinyDataset(n=5))
    key = cache_key("d", CentrePrior(0.25))
    assert key == cache_key("d", CentrePrior(0.25)) != cache_key("d", CentrePrior(0.3)) != cache_key("e", CentrePrior())


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "saliency" and SaliencyCache().root == tmp_path / "saliency"
    monkeypatch.delenv("FGSSL_CACHE")
    assert cache_root() == Path.home() / ".cache" / "fgssl" / "saliency"


def test_model_saliency_is_cached_only_with_a_key(tmp_path: Path) -> None:
    fn = lambda images: images.mean(1)  # noqa: E731
    with pytest.raises(ValueError, match="key"):
        SaliencyCache(tmp_path).load(TinyDataset(), ModelSaliency(fn))
    assert len(SaliencyCache(tmp_path).load(TinyDataset(), ModelSaliency(fn, key="mean-v1"))) == 4


@pytest.mark.parametrize("cache", [False, True])
def test_saliency_dataset_adds_the_map_box_and_mask(tmp_path: Path, cache: bool) -> None:
    dataset = TinyDataset(height=32)  # the sample's box (8, 4, 20, 16) lies on the grid of 8 steps on 32 px
    wrapped = SaliencyDataset(dataset, build_saliency("mask"), cache=tmp_path if cache else False, grid=8)
    assert len(wrapped) == 4 and wrapped.num_classes == 2 and wrapped.classes == ["a", "b"]
    sample = wrapped[3]
    assert sample["saliency"].shape == (32, 32) and sample["saliency"].dtype == torch.float32
    assert sample["box"].dtype == torch.float32 and sample["box"].tolist() == [8.0, 4.0, 20.0, 16.0]
    assert torch.equal(sample["mask"], dataset[3]["mask"]) and sample["mask"].dtype == torch.uint8
    assert torch.equal(sample["gt_box"], dataset[3]["box"]) and sample["label"] == 1 and sample["index"] == 3


def test_saliency_dataset_threshold_mask(tmp_path: Path) -> None:
    wrapped = SaliencyDataset(
        TinyDataset(), CentrePrior(sigma=0.2), cache=tmp_path, mask="threshold", threshold=0.5, objective="covariance"
    )
    sample = wrapped[0]
    assert torch.equal(sample["mask"], (sample["saliency"] >= 0.5).to(torch.uint8))
    assert 0 < sample["mask"].float().mean() < 0.5
    x0, y0, x1, y1 = sample["box"].tolist()
    assert 0 < x0 < 16 < x1 < 32 and 0 < y0 < 12 < y1 < 24  # the centre prior's best box is centred
    assert (x1 - x0) * (y1 - y0) > 0.1 * 24 * 32
    with pytest.raises(ValueError, match="valid mask modes"):
        SaliencyDataset(TinyDataset(), CentrePrior(), cache=False, mask="soft")


class FailingSource(SaliencySource):
    """Fails on the third sample, to check that an interrupted build leaves nothing behind."""

    name = "failing"

    def compute(self, image: torch.Tensor, sample: dict | None) -> torch.Tensor:
        if sample is not None and sample["index"] == 2:
            raise RuntimeError("source failed")
        return image[0]


def test_interrupted_build_leaves_no_entry(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="source failed"):
        SaliencyCache(tmp_path).load(TinyDataset(), FailingSource())
    assert list(tmp_path.iterdir()) == []


def test_evaluating_switches_to_eval_without_gradients_and_restores_the_mode_even_on_an_error():
    from fgssl_lib.saliency.maps import evaluating

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
    with evaluating(model):
        assert not model.training and not torch.is_grad_enabled()
    assert model.training and torch.is_grad_enabled()
    with pytest.raises(RuntimeError, match="inside"):
        with evaluating(model, grad=True):
            assert not model.training and torch.is_grad_enabled()
            raise RuntimeError("inside")
    assert model.training
    model.eval()
    with evaluating(model):
        pass
    assert not model.training  # an eval-mode model stays in eval mode


def test_every_map_is_a_map_source_that_restores_the_mode_and_spans_0_to_1_per_image():
    from fgssl_lib.eval.cams import GradCAMMap
    from fgssl_lib.methods import build
    from fgssl_lib.methods.cvsa import IntensityMap
    from fgssl_lib.methods.lcr import BranchMap
    from fgssl_lib.saliency import MapSource, SaliencySource

    assert all(issubclass(cls, MapSource) for cls in (GradCAMMap, IntensityMap, BranchMap, SaliencySource))
    tiny = dict(backbone="resnet_narrow", small_input=True, hidden_dim=16, proj_dim=8)
    torch.manual_seed(0)
    cvsa, lcr = build("cvsa", **tiny), build("lcr", queue_size=16, **tiny)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for source in (GradCAMMap(cvsa), IntensityMap(cvsa), BranchMap(lcr)):
        source.model.train()
        maps = source(images)
        assert source.model.training, type(source).__name__
        assert maps.shape == (3, 32, 32)
        torch.testing.assert_close(maps.amin(dim=(1, 2)), torch.zeros(3))
        torch.testing.assert_close(maps.amax(dim=(1, 2)), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(cvsa.saliency(images), IntensityMap(cvsa)(images))
    torch.testing.assert_close(lcr.saliency(images), BranchMap(lcr)(images))
    with pytest.raises(ValueError, match="N x 3 x S x S"):
        BranchMap(lcr)(images[0])


def test_a_map_source_upsamples_bicubically_then_normalises_per_image():
    from fgssl_lib.saliency import MapSource

    class Raw(MapSource):
        def compute(self, images):
            return images[:, 0, ::4, ::4] * 10 - 3  # N x 4 x 4, any range

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    raw = images[:, 0, ::4, ::4] * 10 - 3
    up = torch.nn.functional.interpolate(raw[:, None], size=(16, 16), mode="bicubic", align_corners=False)[:, 0]
    low, high = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(Raw()(images), (up - low) / (1e-7 + high - low))

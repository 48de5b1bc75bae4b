"""The training store: rows resized to a shorter side, stored unpadded, gathered into zero-padded batches with their
valid size; cached atomically by identity."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, Subset

from fgssl_lib.train.store import StoreError, TrainingStore, stored_shape


class Samples(Dataset):
    """Images of three sizes with a known object (a rectangle of colour 200) and, optionally, a saliency map."""

    SIZES = ((8, 12), (12, 8), (10, 10))

    def __init__(self, n: int = 6, saliency: bool = True, box_shift: float = 0.0) -> None:
        self.n, self.saliency, self.box_shift, self.reads = n, saliency, box_shift, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        height, width = self.SIZES[index % 3]
        image = torch.full((3, height, width), 20, dtype=torch.uint8)
        image[:, 2:6, 2:6] = 200
        mask = (image[0] == 200).to(torch.uint8)
        sample = {"image": image, "label": index % 2, "box": torch.tensor([2.0, 2.0, 6.0, 6.0]) + self.box_shift,
                  "mask": mask, "index": 100 + index}
        if self.saliency:
            sample["saliency"] = mask.float() * 0.5
        return sample


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path))
    return tmp_path / "store"


def test_shorter_side_is_the_stored_side() -> None:
    assert stored_shape(8, 12, 16) == (16, 24) and stored_shape(12, 8, 4) == (6, 4)
    assert stored_shape(8, 12, None) == (8, 12) and stored_shape(8, 12, 8) == (8, 12)


def test_rows_are_padded_and_carry_their_valid_size_box_label_and_index(cache: Path) -> None:
    store = TrainingStore.load(Samples(), side=None)
    assert len(store) == 6 and store.arrays == ("image", "mask", "saliency")
    batch = store.batch(torch.tensor([1, 0]))
    assert batch["image"].shape == (2, 3, 12, 12) and batch["image"].dtype == torch.uint8
    assert batch["mask"].shape == batch["saliency"].shape == (2, 12, 12)
    assert batch["hw"].tolist() == [[12, 8], [8, 12]]
    assert batch["label"].tolist() == [1, 0] and batch["index"].tolist() == [101, 100]
    assert batch["box"].tolist() == [[2.0, 2.0, 6.0, 6.0]] * 2
    assert batch["image"][0, :, :, 8:].eq(0).all() and batch["image"][1, :, 8:].eq(0).all()  # zero padding
    assert batch["saliency"][0].max() == 128  # round(255 * 0.5)
    object_pixels = batch["image"][:, 0] == 200
    assert torch.equal(object_pixels, batch["mask"].bool())  # the mask covers exactly the object's pixels
    assert store.batch(torch.tensor([3]))["image"].shape == (1, 3, 8, 12)  # padded to the batch's largest only


def test_rows_of_one_size_are_gathered_at_once_as_the_padded_copy_would(cache: Path) -> None:
    """A store whose rows share one size gathers with one index per array; the batch equals the row-by-row copy of
    the mixed-size path."""
    square = Subset(Samples(9), [2, 5, 8])  # the 10 x 10 samples only
    store = TrainingStore.load(square, side=None)
    assert store.row_shape == (10, 10) and TrainingStore.load(Samples(), side=None).row_shape is None
    positions = torch.tensor([2, 0, 2])
    fast = store.batch(positions)
    store.row_shape = None  # the general path
    slow = store.batch(positions)
    assert fast.keys() == slow.keys() and all(torch.equal(fast[name], slow[name]) for name in fast)
    assert fast["index"].tolist() == [108, 102, 108] and fast["image"].shape == (3, 3, 10, 10)


def test_resized_rows_scale_the_box_and_keep_the_mask_on_the_object() -> None:
    store = TrainingStore.load(Samples(saliency=False), side=16)
    assert store.arrays == ("image", "mask")
    batch = store.batch(torch.arange(3))
    assert batch["hw"].tolist() == [[16, 24], [24, 16], [16, 16]]
    assert batch["image"].shape == (3, 3, 24, 24) and "saliency" not in batch
    assert batch["box"][0].tolist() == [4.0, 4.0, 12.0, 12.0]
    assert batch["box"][2].tolist() == pytest.approx([3.2, 3.2, 9.6, 9.6])
    inside = batch["mask"][0, 5:11, 5:11]
    assert inside.all() and batch["mask"][0].sum() == 64  # the 4 x 4 object doubled
    assert batch["image"][0, 0][batch["mask"][0].bool()].float().mean() > 150


def test_a_second_load_reads_the_cache_and_other_data_gets_another_entry(cache: Path) -> None:
    samples = Samples()
    first = TrainingStore.load(samples, side=None)
    reads = samples.reads
    again = TrainingStore.load(samples, side=None)
    assert again.path == first.path and samples.reads - reads <= 8  # only the fingerprint's samples
    assert TrainingStore.load(Samples(), side=16).path != first.path
    assert TrainingStore.load(Samples(box_shift=1.0), side=None).path != first.path  # same pixels, other boxes
    assert TrainingStore.load(Subset(Samples(), [0, 1, 2]), side=None).path != \
        TrainingStore.load(Subset(Samples(), [0, 1, 3]), side=None).path
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []  # no temporary directory left


class Broken(Samples):
    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        if index == 4 and self.reads > 8:  # past the fingerprint
            sample["image"] = sample["image"].float()
        return sample


def test_samples_that_cannot_be_stored_say_which_and_leave_no_entry(cache: Path) -> None:
    with pytest.raises(StoreError, match="sample 104 cannot be stored: .*uint8"):
        TrainingStore.load(Broken(), side=None)
    assert list(cache.iterdir()) == []

    class Sometimes(Samples):
        def __getitem__(self, index: int) -> dict:
            sample = super().__getitem__(index)
            if index == 5:
                del sample["saliency"]
            return sample

    with pytest.raises(StoreError, match="every sample must carry a saliency map, or none"):
        TrainingStore.load(Sometimes(), side=None)
    with pytest.raises(ValueError, match="shorter side"):
        TrainingStore.load(Samples(), side=0)


def test_the_store_pickles_without_its_arrays_and_gathers_on_request() -> None:
    store = TrainingStore.load(Samples(), side=None)
    store.batch(torch.tensor([0]))  # opens the arrays
    copy = pickle.loads(pickle.dumps(store))
    assert copy._tensors is None
    assert torch.equal(copy.batch(torch.tensor([2, 3]))["image"], store.batch(torch.tensor([2, 3]))["image"])
    assert store.fits(torch.device("cpu"), 0.0)
    pixels = 2 * (8 * 12 + 12 * 8 + 10 * 10)  # unpadded
    assert store.nbytes == (3 + 1 + 1) * pixels + 6 * (4 * 4 + 2 * 8 + 8 + 8 + 8)  # + box, hw, start, label, index
    moved = store.to("cpu").batch(torch.tensor([5]), device="cpu")
    assert moved["index"].tolist() == [105]

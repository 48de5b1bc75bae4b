import torch
from torch import nn
from torch.utils.data import Dataset

from fgssl_lib.eval import extract_features
from fgssl_lib.eval.features import model_fingerprint


class _Toy(Dataset):
    """Samples with 3x8x8 uint8 images whose mean encodes the label."""

    split = "test"

    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = torch.full((3, 8, 8), 20 * (i % 3), dtype=torch.uint8)
        return {"image": image, "label": i % 3, "box": torch.tensor([1.0, 2.0, 6.0, 7.0]),
                "mask": torch.ones(8, 8, dtype=torch.uint8), "index": i}


class _ToView:
    """A transform with a parameter repr (as eval_view has)."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def __repr__(self):
        return f"_ToView(scale={self.scale})"

    def __call__(self, sample):
        return {**sample, "image": sample["image"].float() / 255 * self.scale}


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.calls = 0

    def embed(self, images):
        self.calls += 1
        assert not self.training and not torch.is_grad_enabled()
        return self.linear(images.mean(dim=(2, 3)))


def test_features_are_batched_in_eval_mode_without_grad_and_in_order():
    net = _Net()
    net.train()
    out = extract_features(net, _Toy(10), transform=_ToView(), batch_size=4, device="cpu")
    assert out.feats.shape == (10, 4) and net.calls == 3
    assert out.labels.tolist() == [i % 3 for i in range(10)]
    assert out.boxes.shape == (10, 4) and out.boxes[0].tolist() == [1.0, 2.0, 6.0, 7.0]
    assert net.training  # restored
    expected = net.linear(torch.full((10, 3), 0.0) + (torch.arange(10) % 3 * 20 / 255)[:, None])
    torch.testing.assert_close(out.feats, expected.detach())


def test_cache_hits_and_keys_on_model_and_transform(tmp_path):
    net = _Net()
    first = extract_features(net, _Toy(), transform=_ToView(), device="cpu", cache_dir=tmp_path)
    assert net.calls == 1 and len(list(tmp_path.iterdir())) == 1
    again = extract_features(net, _Toy(), transform=_ToView(), device="cpu", cache_dir=tmp_path)
    assert net.calls == 1  # cache hit: embed not called
    torch.testing.assert_close(again.feats, first.feats)
    extract_features(net, _Toy(), transform=_ToView(scale=0.5), device="cpu", cache_dir=tmp_path)
    assert net.calls == 2  # other transform parameters: a miss
    fingerprint = model_fingerprint(net)
    with torch.no_grad():
        net.linear.bias += 1
    assert model_fingerprint(net) != fingerprint
    fingerprint = model_fingerprint(net)
    net.hparams = {"test_pooling": False}  # a variant evaluated from the same weights (LCR's MultiTask)
    assert model_fingerprint(net) != fingerprint
    del net.hparams
    extract_features(net, _Toy(), transform=_ToView(), device="cpu", cache_dir=tmp_path)
    assert net.calls == 3  # other weights: a miss
    assert not list(tmp_path.glob("*.tmp"))


def test_plain_function_needs_a_key_to_cache(tmp_path):
    def fn(images):
        return images.mean(dim=(2, 3))

    import pytest

    with pytest.raises(ValueError, match="key="):
        extract_features(fn, _Toy(), transform=_ToView(), device="cpu", cache_dir=tmp_path)
    out = extract_features(fn, _Toy(), transform=_ToView(), device="cpu", cache_dir=tmp_path, key="mean-rgb")
    assert out.feats.shape == (10, 3)

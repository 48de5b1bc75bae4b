import pytest
import torch

from fgssl_lib.eval import class_balanced_subset, linear_probe


def test_class_balanced_subset_is_balanced_seeded_and_keeps_every_class():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([10, 20, 3])])
    subset = class_balanced_subset(labels, 0.5, seed=3)
    counts = torch.bincount(labels[subset], minlength=3).tolist()
    assert counts == [5, 10, 2]
    assert torch.equal(subset, class_balanced_subset(labels, 0.5, seed=3))
    assert not torch.equal(subset, class_balanced_subset(labels, 0.5, seed=4))
    assert torch.bincount(labels[class_balanced_subset(labels, 0.01)], minlength=3).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="fraction"):
        class_balanced_subset(labels, 0.0)


def test_linear_probe_separates_separable_features_at_every_fraction():
    g = torch.Generator().manual_seed(0)
    classes, d = 6, 16
    centres = 4 * torch.randn(classes, d, generator=g)
    train_labels, test_labels = torch.arange(120) % classes, torch.arange(60) % classes
    train = centres[train_labels] + 0.3 * torch.randn(120, d, generator=g)
    test = centres[test_labels] + 0.3 * torch.randn(60, d, generator=g)
    result = linear_probe(train, train_labels, test, test_labels, epochs=10, device="cpu")
    assert set(result) == {1.0, 0.5, 0.2}
    for fraction, r in result.items():
        assert r["top1"] == pytest.approx(100.0), fraction
        assert r["top5"] == pytest.approx(100.0)
        assert r["lr"] in (0.1, 0.01) and r["weight_decay"] in (0.0, 1e-4)


def test_linear_probe_is_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(1)
    train, test = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g)
    labels = torch.randint(0, 4, (200,), generator=g)
    result = linear_probe(train, labels, test, torch.randint(0, 4, (200,), generator=g), fractions=(1.0,),
                          epochs=5, lrs=(0.1,), weight_decays=(0.0,), device="cpu")
    assert result[1.0]["top1"] < 40

"""Background pools: shapes, dtypes, determinism under a seeded generator, folder reading and its errors."""

from __future__ import annotations

import pytest
import torch
from torchvision.io import write_png

from fgssl_lib.data.backgrounds import (
    BackgroundPool,
    GreyBackgrounds,
    ImageFolderBackgrounds,
    TextureBackgrounds,
    build_backgrounds,
)
from fgssl_lib.data.textures import PATTERNS, habitat, render_habitat


def _draw_twice(pool: BackgroundPool, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    return pool.draw(h, w, torch.Generator().manual_seed(3)), pool.draw(h, w, torch.Generator().manual_seed(3))


@pytest.fixture
def image_folder(tmp_path):
    nested = tmp_path / "sub"
    nested.mkdir()
    # a vertical ramp (row index) in red and a horizontal one in green, so crops can be located
    ramp = torch.stack([torch.arange(60)[:, None].expand(60, 90), torch.arange(90)[None].expand(60, 90),
                        torch.zeros(60, 90, dtype=torch.long)]).to(torch.uint8)
    write_png(ramp, str(tmp_path / "a.png"))
    write_png(torch.full((3, 40, 30), 200, dtype=torch.uint8), str(nested / "b.png"))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("name", ["grey", "texture"])
def test_generated_pools_shape_dtype_determinism(name: str) -> None:
    pool = build_backgrounds(name)
    a, b = _draw_twice(pool, 24, 40)
    assert a.shape == (3, 24, 40) and a.dtype == torch.uint8 and torch.equal(a, b)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([pool.draw(8, 8, g) for _ in range(30)])
    assert len({tuple(d.flatten().tolist()) for d in draws}) > 10  # the pool varies


def test_grey_is_flat_within_range() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        img = GreyBackgrounds(100, 110).draw(5, 6, g)
        assert (img == img[0, 0, 0]).all() and 100 <= int(img[0, 0, 0]) <= 110
    with pytest.raises(ValueError, match="grey levels"):
        GreyBackgrounds(10, 300)
    levels = {int(GreyBackgrounds().draw(1, 1, g)[0, 0, 0]) for _ in range(3000)}
    assert levels == set(range(255))  # DiLo's floor(255 U): 0 to 254, never white


def test_textures_cover_every_pattern_and_differ_between_habitats() -> None:
    assert {habitat(h).kind for h in range(len(PATTERNS))} == set(PATTERNS)
    means = []
    for h in range(12):
        img = render_habitat(h, 32, 32, torch.Generator().manual_seed(h)).float()
        assert img.std(dim=(1, 2)).max() > 10, f"habitat {h} is flat"  # a texture, not a flat colour
        means.append(img.mean(dim=(1, 2)))
    dist = torch.cdist(torch.stack(means), torch.stack(means)) + 1e3 * torch.eye(12)
    assert dist.min() > 10  # each habitat has its own palette
    assert len(TextureBackgrounds(num_habitats=4)) == 4


def test_folder_backgrounds(image_folder) -> None:
    pool = build_backgrounds("folder", root=image_folder, min_scale=0.5)
    assert len(pool) == 2  # recursive, the text file ignored
    a, b = _draw_twice(pool, 16, 20)
    assert a.shape == (3, 16, 20) and a.dtype == torch.uint8 and torch.equal(a, b)
    g = torch.Generator().manual_seed(0)
    ramp_crops = [d for d in (pool.draw(16, 20, g) for _ in range(40)) if d[2].max() == 0]
    assert ramp_crops and any(not torch.equal(ramp_crops[0], d) for d in ramp_crops)
    for d in ramp_crops:  # crops of the ramp image keep its orientation: red grows down, green grows right
        d = d.float()
        assert d[0, -1].mean() > d[0, 0].mean() and d[1, :, -1].mean() > d[1, :, 0].mean()


def test_folder_errors(tmp_path, image_folder) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderBackgrounds(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderBackgrounds(empty)
    with pytest.raises(ValueError, match="needs root"):
        build_backgrounds("folder")
    with pytest.raises(ValueError, match="valid background pools"):
        build_backgrounds("coco")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(RuntimeError, match="broken.jpg"):
        ImageFolderBackgrounds(bad).draw(8, 8, torch.Generator().manual_seed(0))


def test_texture_pool_draws_crops_of_its_bank() -> None:
    pool = TextureBackgrounds(num_habitats=3, bank_size=6)
    g = torch.Generator().manual_seed(0)
    bank = pool.bank(8, 10)
    assert bank.shape == (6, 3, 16, 20)
    for _ in range(10):
        d = pool.draw(8, 10, g)
        crops = bank.unfold(2, 8, 1).unfold(3, 10, 1)  # 6 x 3 x 9 x 11 x 8 x 10: every crop
        assert (crops == d[None, :, None, None]).all(-1).all(-1).all(1).any()
    with pytest.raises(ValueError, match="bank_size"):
        TextureBackgrounds(num_habitats=10, bank_size=4)

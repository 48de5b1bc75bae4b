"""Background pools for SaliencySwap mode ``other`` (CVSA) and copy-paste (DiLo): ``draw(H, W, generator)``.

DiLo's copy-paste ``view = S·x + (1−S)·bg`` (the DiLo theory page) takes ``bg`` from a random grey level (the
authors' code), a texture or another image; SaliencySwap mode ``other`` pastes the object patch onto such a ``bg``.
``draw`` is called twice per training sample, so each pool renders or crops one ``3 x H x W`` uint8 image directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image

from fgssl_lib.config import check_choice
from fgssl_lib.data.textures import render_habitats

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class BackgroundPool:
    """A source of backgrounds; subclasses implement :meth:`draw`."""

    def draw(self, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A ``3 x height x width`` uint8 background; all randomness from ``generator`` (torch's default if None)."""
        raise NotImplementedError


class GreyBackgrounds(BackgroundPool):
    """A flat grey level drawn uniformly from ``[low, high]`` (default 0-254: DiLo's code draws ``floor(255 U)``)."""

    def __init__(self, low: int = 0, high: int = 254) -> None:
        if not 0 <= low <= high <= 255:
            raise ValueError(f"grey levels need 0 <= low <= high <= 255, got low={low}, high={high}")
        self.low, self.high = low, high

    def draw(self, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        level = torch.randint(self.low, self.high + 1, (1,), generator=generator)
        return level.to(torch.uint8).expand(3, height, width).contiguous()


class TextureBackgrounds(BackgroundPool):
    """The synthetic benchmark's habitat textures (:mod:`fgssl_lib.data.textures`), habitat drawn uniformly from the
    first ``num_habitats`` (default 10, the benchmark's default number of classes).

    For speed, the first ``draw`` at a size renders a bank of ``bank_size`` textures at twice that size (habitats in
    turn, fixed ``seed``); each draw is then a random crop of a random bank texture (indexing only).
    """

    def __init__(self, num_habitats: int = 10, bank_size: int = 128, seed: int = 0) -> None:
        if num_habitats < 1 or bank_size < num_habitats:
            raise ValueError(f"need 1 <= num_habitats <= bank_size, got num_habitats={num_habitats}, "
                             f"bank_size={bank_size}")
        self.num_habitats, self.bank_size, self.seed = num_habitats, bank_size, seed
        self._banks: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return self.num_habitats

    def bank(self, height: int, width: int) -> torch.Tensor:
        """The ``bank_size x 3 x 2H x 2W`` uint8 textures crops are drawn from (texture ``k`` is habitat
        ``k mod num_habitats``)."""
        if (height, width) not in self._banks:
            generators = [torch.Generator().manual_seed(self.seed * 1_000_003 + k) for k in range(self.bank_size)]
            habitats = [k % self.num_habitats for k in range(self.bank_size)]
            self._banks[height, width] = render_habitats(habitats, 2 * height, 2 * width, generators)
        return self._banks[height, width]

    def draw(self, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        bank = self.bank(height, width)
        k, y0, x0 = (int(v) for v in (torch.rand(3, generator=generator) * torch.tensor([len(bank), height, width])))
        return bank[k, :, y0:y0 + height, x0:x0 + width].clone()


class ImageFolderBackgrounds(BackgroundPool):
    """Random crops of the images under ``root`` (searched recursively), resized to the requested size.

    A crop has the requested aspect ratio and covers a fraction ``U(min_scale, 1)`` of the largest such crop that fits
    the image (e.g. COCO train2017 as in CVSA / DiLo).
    """

    def __init__(self, root: str | Path, min_scale: float = 0.3) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"background folder {str(self.root)!r} does not exist; pass a folder of images "
                                    f"(e.g. COCO train2017) or use build_backgrounds('grey') / ('texture')")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(self.root)!r}; "
                                    f"put background images there or use build_backgrounds('grey') / ('texture')")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.min_scale = min_scale

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> torch.Tensor:
        try:
            return decode_image(str(path), mode=ImageReadMode.RGB)  # 3 x h x w uint8
        except RuntimeError as error:
            message = f"cannot decode background image {str(path)!r}: {error}; remove or replace it"
            raise RuntimeError(message) from error

    def draw(self, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(4, generator=generator).tolist()
        image = self._read(self.files[min(int(u[0] * len(self.files)), len(self.files) - 1)])
        h, w = image.shape[-2:]
        fit = min(h / height, w / width)  # largest crop of the requested aspect ratio, in output-pixel units
        shrink = (self.min_scale + (1 - self.min_scale) * u[1]) ** 0.5
        ch, cw = max(1, round(height * fit * shrink)), max(1, round(width * fit * shrink))
        y0, x0 = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
        crop = image[None, :, y0:y0 + ch, x0:x0 + cw].float()  # 1 x 3 x ch x cw
        out = F.interpolate(crop, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        return out[0].round_().clamp_(0, 255).to(torch.uint8)


_POOLS = {"grey": GreyBackgrounds, "texture": TextureBackgrounds, "folder": ImageFolderBackgrounds}
BACKGROUNDS = tuple(_POOLS)


def build_backgrounds(name: str, **options: Any) -> BackgroundPool:
    """Pool ``name`` (``grey``, ``texture`` or ``folder``; ``folder`` needs ``root=``) built with ``options``."""
    cls = _POOLS[check_choice("background pool", name, _POOLS)]
    if name == "folder" and "root" not in options:
        raise ValueError("build_backgrounds('folder') needs root=<folder of images>, e.g. COCO train2017")
    return cls(**options)

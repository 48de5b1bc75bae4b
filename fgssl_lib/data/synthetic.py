"""The synthetic background-bias benchmark: procedurally drawn "birds" on habitat textures.

Every bird has one basic shape (body ellipse, head, beak, wing, tail); classes differ only in three small parts
(:data:`PARTS`): the wing-bar colour, the head shape and the tail pattern. Nuisances are pose (rotation, flip),
scale, position and a modest body colour. Each class ``c`` has its own habitat ``c`` (:mod:`fgssl_lib.data.textures`);
an image of the ``train`` / ``val`` / ``test`` stream shows its class's habitat with probability ``rho`` and otherwise
one of the other habitats, chosen uniformly. The test variants follow Xiao et al. 2020 ("Noise or Signal"):

- ``original``: the image as drawn (same correlation ``rho``);
- ``only_fg``: the bird on flat grey (128);
- ``only_bg``: the background without the bird (rendered without it, so no trace of the object is left);
- ``mixed_same``: the bird on a new background of its class's habitat;
- ``mixed_rand``: the bird on a new background of a habitat drawn uniformly from all habitats.

Split names are ``<stream>`` or ``<stream>_<variant>`` with stream ``train``, ``val`` (carved from the train
distribution, for tuning) or ``test``; ``test`` is ``test_original``. Each image is a pure function of
``(seed, stream, index)`` and of the size options, so the variants of one index share the same bird and two dataset
instances render identical tensors. The mask is exactly the drawn bird's pixels and the box its tight box.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from fgssl_lib.config import check_choice
from fgssl_lib.data.sample import mask_to_box
from fgssl_lib.data.textures import grey_image, habitat, render_habitat

STREAMS = ("train", "val", "test")
VARIANTS = ("original", "only_fg", "only_bg", "mixed_same", "mixed_rand")
SPLITS = STREAMS + tuple(f"{s}_{v}" for s in STREAMS for v in VARIANTS)
DEFAULT_NUM_IMAGES = {"train": 3000, "val": 500, "test": 1000}
ONLY_FG_GREY = 128
NO_HABITAT = -1
"""``habitat`` of an ``only_fg`` sample (no background texture)."""

PARTS = {
    "wing_bar": ("red", "white", "black"),
    "head": ("round", "crest", "long_beak"),
    "tail": ("wedge", "forked", "white_tip"),
}
"""The part attributes that define a species; a class is one value of each."""
_WING_BAR_RGB = ((215, 35, 35), (245, 245, 245), (20, 20, 20))  # red / white / black differ in hue and luminance
_MAX_CLASSES = math.prod(len(v) for v in PARTS.values())


def class_parts(label: int) -> tuple[int, int, int]:
    """Part values ``(wing_bar, head, tail)`` of class ``label``.

    Classes 0-8 form a Latin square (tail = wing_bar + head mod 3), so any two of them differ in at least two parts;
    classes 9-17 and 18-26 shift the tail by 1 and 2, so every combination is used once.
    """
    if not 0 <= label < _MAX_CLASSES:
        raise ValueError(f"class label must be in [0, {_MAX_CLASSES}), got {label}")
    wing_bar, head = label % 3, (label // 3) % 3
    return wing_bar, head, (wing_bar + head + label // 9) % 3


def class_name(label: int) -> str:
    """Readable species name, e.g. ``"red-wing crest forked"``."""
    w, h, t = class_parts(label)
    return f"{PARTS['wing_bar'][w]}-wing {PARTS['head'][h]} {PARTS['tail'][t]}"


@dataclass(frozen=True)
class Bird:
    """Pose and colours of one drawn bird. ``centre`` in fractions of the image side, ``angle`` in radians,
    ``scale`` relative to the base size, ``flip`` mirrors it horizontally, ``body`` RGB in ``[0, 255]``."""

    label: int
    centre: tuple[float, float]
    angle: float
    scale: float
    flip: bool
    body: tuple[float, float, float]


def sample_bird(label: int, generator: torch.Generator) -> Bird:
    """Draw the nuisances: rotation ±30°, flip 1/2, scale 0.8-1.2, centre so the bird stays inside, and a body colour
    near a brown-grey (each channel ±20 around (140, 115, 90), jointly shifted ±25)."""
    u = torch.rand(9, generator=generator).tolist()
    scale = 0.8 + 0.4 * u[0]
    margin = 0.36 * scale  # the bird's half-extent along its long axis, in image sides
    centre = (margin + (1 - 2 * margin) * u[1], 0.3 * scale + (1 - 0.6 * scale) * u[2])
    shift = 50 * (u[3] - 0.5)
    body = tuple(base + shift + 40 * (v - 0.5) for base, v in zip((140, 115, 90), u[4:7]))
    return Bird(label, centre, math.radians(60 * (u[7] - 0.5)), scale, u[8] < 0.5, body)


def _ellipse(u: torch.Tensor, v: torch.Tensor, cu: float, cv: float, a: float, b: float) -> torch.Tensor:
    return ((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 <= 1


def _polygon(u: torch.Tensor, v: torch.Tensor, vertices: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """Inside test for a convex polygon (vertices in either winding): on the same side of every edge."""
    sides = torch.stack([(u1 - u0) * (v - v0) - (v1 - v0) * (u - u0)
                         for (u0, v0), (u1, v1) in zip(vertices, vertices[1:] + vertices[:1])])  # E x H x W
    return (sides >= 0).all(0) | (sides <= 0).all(0)


def draw_bird(bird: Bird, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise ``bird``: ``(colour 3 x H x W float32 in [0, 255], mask H x W bool)``.

    Each part is an implicit region in the bird's own frame ``(u, v)`` (unit = image side, bird facing +u, v down);
    parts are painted in order, later ones on top, and the mask is the union of all regions, so it is exactly the set
    of pixels the bird covers. No anti-aliasing: every pixel is either bird or background.
    """
    wing_bar, head, tail = class_parts(bird.label)
    side = float(max(height, width))
    ys = (torch.arange(height, dtype=torch.float32)[:, None] + 0.5) / side - bird.centre[1]  # H x 1
    xs = (torch.arange(width, dtype=torch.float32)[None, :] + 0.5) / side - bird.centre[0]  # 1 x W
    c, s = math.cos(bird.angle), math.sin(bird.angle)
    u = (c * xs + s * ys) / bird.scale  # H x W, the bird's frame
    v = (-s * xs + c * ys) / bird.scale
    if bird.flip:
        u = -u
    body = torch.tensor(bird.body).clamp(0, 255)
    tail_poly = ((-0.15, -0.035), (-0.15, 0.045), (-0.34, 0.085), (-0.34, -0.075))
    tail_region = _polygon(u, v, tail_poly)
    if tail == 1:  # forked: a notch cut from the tail end
        tail_region &= ~_polygon(u, v, ((-0.345, -0.045), (-0.345, 0.055), (-0.25, 0.005)))
    layers = [
        (tail_region, 0.75 * body),
        (_ellipse(u, v, 0.0, 0.0, 0.2, 0.11), body),
        (_ellipse(u, v, -0.02, -0.005, 0.13, 0.065), 0.6 * body),  # wing
        (_ellipse(u, v, -0.02, -0.005, 0.13, 0.065) & ((u + 0.02).abs() < 0.03), torch.tensor(_WING_BAR_RGB[wing_bar])),
        (_ellipse(u, v, 0.19, -0.085, 0.075, 0.075), 1.1 * body),  # head
        (_polygon(u, v, ((0.25, -0.105), (0.25, -0.065), (0.40 if head == 2 else 0.32, -0.085))),
         torch.tensor((60.0, 50.0, 30.0))),  # beak
        (_ellipse(u, v, 0.22, -0.095, 0.018, 0.018), torch.tensor((10.0, 10.0, 10.0))),  # eye
    ]
    if tail == 2:  # white tip
        layers.insert(1, (tail_region & (u < -0.28), torch.tensor((240.0, 240.0, 235.0))))
    if head == 1:  # crest: a dark triangle raked back from the crown
        layers.append((_polygon(u, v, ((0.2, -0.15), (0.14, -0.14), (0.08, -0.24))), 0.45 * body))
    colour = torch.zeros(3, height, width)
    mask = torch.zeros(height, width, dtype=torch.bool)
    for region, rgb in layers:
        colour = torch.where(region, rgb.clamp(0, 255)[:, None, None], colour)
        mask |= region
    return colour, mask


def composite(colour: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Paste the bird (``colour`` 3xHxW float, ``mask`` HxW bool) over ``background`` (3xHxW uint8) -> 3xHxW uint8."""
    return torch.where(mask, colour.round().to(torch.uint8), background)


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the benchmark; an image is a pure function of these, the stream and the index."""

    image_size: int = 64
    num_classes: int = 10
    rho: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels for the parts to be visible, got {self.image_size}")
        if not 2 <= self.num_classes <= _MAX_CLASSES:
            raise ValueError(f"num_classes must be in [2, {_MAX_CLASSES}] (3 parts x 3 values), got {self.num_classes}")
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"rho is a probability, got {self.rho}")


def _generator(config: SyntheticConfig, stream: str, index: int, role: str) -> torch.Generator:
    """A generator seeded by a stable hash of ``(seed, stream, index, role)`` (roles: bird, habitat, background, mixed)."""
    key = f"{config.seed}/{stream}/{index}/{role}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little"))


class SyntheticBirds(Dataset):
    """One split of the benchmark; ``dataset[i]`` is a sample dict with the contract keys
    ``image, label, box, mask, index`` plus ``habitat`` (the background's habitat id; ``-1`` for ``only_fg``)."""

    def __init__(self, split: str = "train", num_images: int | None = None, cache_dir: str | Path | None = None,
                 **options: Any) -> None:
        check_choice("synthetic split", split, SPLITS)
        self.stream, _, variant = split.partition("_")
        self.variant = variant or "original"
        self.split = split
        self.config = SyntheticConfig(**options)
        self.num_images = DEFAULT_NUM_IMAGES[self.stream] if num_images is None else int(num_images)
        if self.num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {self.num_images}")
        self.num_classes = self.config.num_classes
        self.classes = [class_name(c) for c in range(self.num_classes)]
        self.habitats = [habitat(h).name for h in range(self.num_classes)]
        self._cache = self._load_cache(Path(cache_dir)) if cache_dir is not None else None

    def __len__(self) -> int:
        return self.num_images

    def label(self, index: int) -> int:
        """Class of image ``index``: balanced, ``index mod num_classes``."""
        return index % self.num_classes

    def scene_habitat(self, index: int) -> int:
        """Habitat of the ``original`` image: the class's own with probability ``rho``, else another, uniformly."""
        label = self.label(index)
        g = _generator(self.config, self.stream, index, "habitat")
        if torch.rand(1, generator=g).item() < self.config.rho:
            return label
        other = int(torch.randint(self.num_classes - 1, (1,), generator=g))
        return other + (other >= label)

    def render(self, index: int) -> dict[str, Any]:
        """Render image ``index`` of this split (no cache): the sample dict."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.split!r} with {self.num_images} images")
        size, label = self.config.image_size, self.label(index)
        colour, mask = draw_bird(sample_bird(label, _generator(self.config, self.stream, index, "bird")), size, size)
        if self.variant == "only_fg":
            hab, background = NO_HABITAT, grey_image(size, size, ONLY_FG_GREY)
        else:
            if self.variant in ("original", "only_bg"):
                hab = self.scene_habitat(index)
                g = _generator(self.config, self.stream, index, "background")
            else:
                g = _generator(self.config, self.stream, index, "mixed")
                rand = int(torch.randint(self.num_classes, (1,), generator=g))
                hab = label if self.variant == "mixed_same" else rand
            background = render_habitat(hab, size, size, g)
        if self.variant == "only_bg":
            image = background
        else:
            image = composite(colour, mask, background)
        mask = mask.to(torch.uint8)
        return dict(image=image, label=label, box=mask_to_box(mask), mask=mask, index=index, habitat=hab)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._cache is None:
            return self.render(index)
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.split!r} with {self.num_images} images")
        image, mask, habitats = self._cache["image"][index], self._cache["mask"][index], self._cache["habitat"]
        return dict(image=image, label=self.label(index), box=mask_to_box(mask), mask=mask, index=index,
                    habitat=int(habitats[index]))

    def _load_cache(self, cache_dir: Path) -> dict[str, torch.Tensor]:
        """Render the whole split once into ``cache_dir`` (a file keyed by every parameter), or load it."""
        key = hashlib.blake2b(repr((asdict(self.config), self.split, self.num_images)).encode(), digest_size=8)
        path = cache_dir / f"synthetic-{self.split}-{key.hexdigest()}.pt"
        if path.exists():
            return torch.load(path)
        samples = [self.render(i) for i in range(self.num_images)]
        cache = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in ("image", "mask", "habitat")}
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(cache, tmp)
        tmp.replace(path)
        return cache


def load(root: str | None = None, split: str = "train", **options: Any) -> SyntheticBirds:
    """Registry entry (``load_dataset("synthetic", split=..., **options)``); ``root`` is ignored (nothing on disk).

    Options: ``image_size`` (64), ``num_classes`` (10), ``num_images`` (per split; 3000 / 500 / 1000 for train / val /
    test), ``rho`` (0.9), ``seed`` (0), ``cache_dir`` (render the split once and keep it there; default: no cache).
    """
    return SyntheticBirds(split=split, **options)

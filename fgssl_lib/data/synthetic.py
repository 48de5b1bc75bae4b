"""The synthetic background-bias benchmark: procedurally drawn "birds" on habitat textures.

Every bird has one basic shape (body ellipse, head, beak, wing, tail); classes differ only in three parts
(:data:`PARTS`): the wing colour, the head shape and the tail pattern. Nuisances are pose (rotation, flip), scale,
position and a modest body colour. Each class ``c`` has its own habitat ``c`` (:mod:`fgssl_lib.data.textures`);
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

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from fgssl_lib.config import check_choice
from fgssl_lib.data.rendered import RenderedSplit, WorldConfig, index_generator, split_options
from fgssl_lib.data.textures import grey_image, habitat, render_habitats

STREAMS = ("train", "val", "test")
VARIANTS = ("original", "only_fg", "only_bg", "mixed_same", "mixed_rand")
SPLITS = STREAMS + tuple(f"{s}_{v}" for s in STREAMS for v in VARIANTS)
DEFAULT_NUM_IMAGES = {"train": 3000, "val": 500, "test": 1000}
RENDER_VERSION = 3
"""Part of the disk-cache key: bump it whenever a change to the drawing code changes the pixels."""
ONLY_FG_GREY = 128
NO_HABITAT = -1
"""``habitat`` of an ``only_fg`` sample (no background texture)."""

PARTS = {
    "wing": ("red", "white", "black"),
    "head": ("round", "crest", "long_beak"),
    "tail": ("wedge", "forked", "white_tip"),
}
"""The part attributes that define a species; a class is one value of each."""
_WING_RGB = ((215, 35, 35), (245, 245, 245), (20, 20, 20))  # red / white / black differ in hue and luminance
_MAX_CLASSES = math.prod(len(v) for v in PARTS.values())


def class_parts(label: int) -> tuple[int, int, int]:
    """Part values ``(wing, head, tail)`` of class ``label``.

    Classes 0-8 form a Latin square (tail = wing + head mod 3), so any two of them differ in at least two parts;
    classes 9-17 and 18-26 shift the tail by 1 and 2, so every combination is used once.
    """
    if not 0 <= label < _MAX_CLASSES:
        raise ValueError(f"class label must be in [0, {_MAX_CLASSES}), got {label}")
    wing, head = label % 3, (label // 3) % 3
    return wing, head, (wing + head + label // 9) % 3


def class_name(label: int) -> str:
    """Readable species name, e.g. ``"red-wing crest forked"``."""
    w, h, t = class_parts(label)
    return f"{PARTS['wing'][w]}-wing {PARTS['head'][h]} {PARTS['tail'][t]}"


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
    """Draw the nuisances: rotation ±30°, flip 1/2, scale 1.0-1.3, centre so the bird stays inside, and a body colour
    near a brown-grey (each channel ±10 around (140, 115, 90), jointly shifted ±15)."""
    u = torch.rand(9, generator=generator).tolist()
    scale = 1.0 + 0.3 * u[0]
    margin = 0.36 * scale  # the bird's half-extent along its long axis, in image sides
    centre = (margin + (1 - 2 * margin) * u[1], 0.3 * scale + (1 - 0.6 * scale) * u[2])
    shift = 30 * (u[3] - 0.5)
    body = tuple(base + shift + 20 * (v - 0.5) for base, v in zip((140, 115, 90), u[4:7]))
    return Bird(label, centre, math.radians(60 * (u[7] - 0.5)), scale, u[8] < 0.5, body)


def ellipse(u: torch.Tensor, v: torch.Tensor, cu: float, cv: float, a: float, b: float) -> torch.Tensor:
    """Inside test for the axis-aligned ellipse of centre ``(cu, cv)`` and half-axes ``a``, ``b``."""
    return ((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 <= 1


def convex_polygon(u: torch.Tensor, v: torch.Tensor,
                   vertices: tuple[tuple[float | torch.Tensor, float], ...]) -> torch.Tensor:
    """Inside test for a convex polygon (vertices in either winding): on the same side of every edge."""
    inside_pos = inside_neg = None
    for (u0, v0), (u1, v1) in zip(vertices, vertices[1:] + vertices[:1]):
        cross = (u1 - u0) * (v - v0) - (v1 - v0) * (u - u0)
        pos, neg = cross >= 0, cross <= 0
        inside_pos = pos if inside_pos is None else inside_pos & pos
        inside_neg = neg if inside_neg is None else inside_neg & neg
    return inside_pos | inside_neg


def broadcast(values: list | tuple) -> torch.Tensor:
    """Per-image (or shared) values as a broadcastable ``(N x) C x 1 x 1`` float tensor."""
    return torch.tensor(values, dtype=torch.float32)[..., None, None]


def draw_birds(birds: list[Bird], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise ``birds``: ``(colour N x 3 x H x W float32 in [0, 255], mask N x H x W bool)``.

    Each part is an implicit region in the bird's own frame ``(u, v)`` (unit = image side, bird facing +u, v down);
    parts are painted in order, later ones on top, and the mask is the union of all regions, so it is exactly the set
    of pixels the bird covers. No anti-aliasing: every pixel is either bird or background. Only exactly rounded
    tensor operations are used, so bird ``k`` does not depend on the rest of the batch.
    """
    parts = torch.tensor([class_parts(b.label) for b in birds])  # N x 3: wing, head, tail
    u, v = object_frame([b.centre for b in birds], [b.angle for b in birds], [b.scale for b in birds],
                        [b.flip for b in birds], height, width)
    body = torch.tensor([b.body for b in birds]).clamp(0, 255)[:, :, None, None]  # N x 3 x 1 x 1
    head, tail = parts[:, 1, None, None], parts[:, 2, None, None]  # N x 1 x 1
    tail_region = convex_polygon(u, v, ((-0.15, -0.035), (-0.15, 0.045), (-0.34, 0.085), (-0.34, -0.075)))
    tail_region &= ~((tail == 1) & convex_polygon(u, v, ((-0.345, -0.06), (-0.345, 0.07), (-0.21, 0.005))))  # fork
    wing = ellipse(u, v, -0.02, -0.005, 0.13, 0.065)
    beak_tip = torch.where(head == 2, 0.42, 0.31)  # long beak
    layers = [
        (tail_region, 0.75 * body),
        (tail_region & (tail == 2) & (u < -0.25), broadcast((240, 240, 235))),  # white tip
        (ellipse(u, v, 0.0, 0.0, 0.2, 0.11), body),
        (wing, broadcast([_WING_RGB[w] for w in parts[:, 0].tolist()])),
        (ellipse(u, v, 0.19, -0.085, 0.075, 0.075), 1.1 * body),  # head
        (convex_polygon(u, v, ((0.25, -0.105), (0.25, -0.065), (beak_tip, -0.085))), broadcast((60, 50, 30))),  # beak
        (ellipse(u, v, 0.22, -0.095, 0.018, 0.018), broadcast((10, 10, 10))),  # eye
        ((head == 1) & convex_polygon(u, v, ((0.22, -0.15), (0.13, -0.14), (0.05, -0.27))), 0.45 * body),  # crest
    ]
    return paint_layers(layers, len(birds), height, width)


def object_frame(centres: list[tuple[float, float]], angles: list[float], scales: list[float], flips: list[bool],
                 height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each object's own frame ``(u, v)`` at the pixel centres, both ``N x H x W``: origin at ``centres[k]`` (in
    fractions of the image side), rotated by ``angles[k]`` (radians), in units of ``scales[k]`` image sides, ``u``
    mirrored where ``flips[k]``. Exactly rounded operations only (python's ``cos``/``sin`` per object)."""
    side = float(max(height, width))
    cy, cx = broadcast([c[1] for c in centres]), broadcast([c[0] for c in centres])  # N x 1 x 1
    ys = (torch.arange(height, dtype=torch.float32)[None, :, None] + 0.5) / side - cy  # N x H x 1
    xs = (torch.arange(width, dtype=torch.float32)[None, None, :] + 0.5) / side - cx  # N x 1 x W
    c, s = broadcast([math.cos(a) for a in angles]), broadcast([math.sin(a) for a in angles])
    scale = broadcast(scales)
    u = (c * xs + s * ys) / scale  # N x H x W
    v = (c * ys - s * xs) / scale
    return torch.where(torch.tensor(flips)[:, None, None], -u, u), v


def paint_layers(layers: list[tuple[torch.Tensor, torch.Tensor]], n: int, height: int,
                 width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint ``layers`` (``(region N x H x W bool, colour broadcastable to N x 3 x 1 x 1)``) in order, later ones on
    top: ``(colour N x 3 x H x W float32 in [0, 255], mask N x H x W bool)``, the mask the union of the regions."""
    top = torch.zeros(n, height, width, dtype=torch.long)  # index of the topmost layer covering a pixel, 0 = none
    for k, (region, _) in enumerate(layers, start=1):
        top.masked_fill_(region, k)
    palette = torch.stack([torch.zeros(n, 3)] + [value.expand(n, 3, 1, 1)[..., 0, 0] for _, value in layers], 1)
    colour = torch.gather(palette.clamp(0, 255), 1, top.flatten(1)[..., None].expand(-1, -1, 3))  # N x HW x 3
    return colour.transpose(1, 2).reshape(n, 3, height, width), top > 0


def draw_bird(bird: Bird, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One bird: ``(colour 3 x H x W float32, mask H x W bool)`` (see :func:`draw_birds`)."""
    colour, mask = draw_birds([bird], height, width)
    return colour[0], mask[0]


def composite(colour: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Paste birds (``colour`` (N x) 3 x H x W float, ``mask`` (N x) H x W bool) over ``background`` ((N x) 3 x H x W
    uint8) -> (N x) 3 x H x W uint8."""
    return torch.where(mask.unsqueeze(-3), colour.round().to(torch.uint8), background)


@dataclass(frozen=True)
class SyntheticConfig(WorldConfig):
    """Parameters of the benchmark (``image_size``, ``num_classes``, ``rho``, ``seed``); an image is a pure function
    of these, the stream and the index."""

    rho: float = 0.9
    seed: int = 0
    drawn: ClassVar[str] = "the parts"
    most_classes: ClassVar[int] = _MAX_CLASSES
    classes_from: ClassVar[str] = "3 parts x 3 values"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"rho is a probability, got {self.rho}")


def _generator(config: SyntheticConfig, stream: str, index: int, role: str) -> torch.Generator:
    """The generator of ``(seed, stream, index, role)``; roles: ``bird``, ``habitat``, ``background``, ``mixed``."""
    return index_generator(config.seed, stream, index, role)


class SyntheticBirds(RenderedSplit):
    """One split of the benchmark; ``dataset[i]`` is a sample dict with the contract keys
    ``image, label, box, mask, index`` plus ``habitat`` (the background's habitat id; ``-1`` for ``only_fg``)."""

    def __init__(self, split: str = "train", num_images: int | None = None, cache_dir: str | Path | None = None,
                 **options: Any) -> None:
        check_choice("synthetic split", split, SPLITS)
        self.stream, _, variant = split.partition("_")
        self.variant = variant or "original"
        self.split = split
        self.config, self.num_images = split_options("synthetic", SyntheticConfig, num_images,
                                                     DEFAULT_NUM_IMAGES[self.stream], options)
        self.num_classes = self.config.num_classes
        self.classes = [class_name(c) for c in range(self.num_classes)]
        self.habitats = [habitat(h).name for h in range(self.num_classes)]
        self.use_cache(cache_dir, "synthetic", (RENDER_VERSION, asdict(self.config), self.split, self.num_images))

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

    def render(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Render images ``indices`` as one batch: ``image`` N x 3 x S x S uint8, ``mask`` N x S x S uint8,
        ``habitat`` N int64. Each image depends only on its own index (per-index generators)."""
        self.check_indices(indices)
        size, labels = self.config.image_size, [self.label(i) for i in indices]
        birds = [sample_bird(c, _generator(self.config, self.stream, i, "bird")) for i, c in zip(indices, labels)]
        colour, mask = draw_birds(birds, size, size)  # N x 3 x S x S, N x S x S
        if self.variant == "only_fg":
            habitats = [NO_HABITAT] * len(indices)
            background = grey_image(size, size, ONLY_FG_GREY).expand(len(indices), -1, -1, -1)
        else:
            if self.variant in ("original", "only_bg"):
                habitats = [self.scene_habitat(i) for i in indices]
                generators = [_generator(self.config, self.stream, i, "background") for i in indices]
            else:
                generators = [_generator(self.config, self.stream, i, "mixed") for i in indices]
                drawn = [int(torch.randint(self.num_classes, (1,), generator=g)) for g in generators]
                habitats = labels if self.variant == "mixed_same" else drawn
            background = render_habitats(habitats, size, size, generators)
        image = background if self.variant == "only_bg" else composite(colour, mask, background)
        return dict(image=image, mask=mask.to(torch.uint8), habitat=torch.tensor(habitats))


def load(root: str | None = None, split: str = "train", **options: Any) -> SyntheticBirds:
    """Registry entry (``load_dataset("synthetic", split=..., **options)``); ``root`` is ignored (nothing on disk).

    Options: ``image_size`` (64), ``num_classes`` (10), ``num_images`` (per split; 3000 / 500 / 1000 for train / val /
    test), ``rho`` (0.9), ``seed`` (0), ``cache_dir`` (render the split once and keep it there; default
    ``<data home>/synthetic``, i.e. ``$FGSSL_DATA/synthetic``, so the many runs of a study render each split once;
    ``None``: no cache).
    """
    from fgssl_lib.data.downloads import data_home

    options.setdefault("cache_dir", data_home() / "synthetic")
    return SyntheticBirds(split=split, **options)

"""The coarse world: many generic object kinds on backgrounds that carry no label (the stand-in for ImageNet).

Stage-1 models (supervised, BYOL) are trained here before the synthetic benchmark (:mod:`fgssl_lib.data.synthetic`),
as the papers start from ImageNet or a coarse dataset (LCR Sec. 4; CVSA Sec. 4, dual stage). A kind is one value of
each attribute of :data:`ATTRIBUTES`: a shape family (disc, ring, square, triangle, star, cross, hexagon, crescent,
bar, arrow), a colour and a surface pattern (plain, striped, spotted); the first ``len(families) x len(colours)``
classes differ in family or colour. Nuisances: rotation (any angle), scale, position and a colour jitter. The
background is a texture drawn uniformly from ``num_backgrounds`` habitats (:mod:`fgssl_lib.data.textures`, numbered
after every habitat the benchmark uses) by its own generator, independently of the class, so it carries no label.

Splits are the streams ``train`` and ``val``. Each image is a pure function of ``(seed, stream, index)`` and of the
options; the mask is exactly the object's pixels and the box its tight box; ``background`` is the habitat drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from fgssl_lib.config import check_choice
from fgssl_lib.data.rendered import RenderedSplit, WorldConfig, index_generator, split_options
from fgssl_lib.data.synthetic import broadcast, composite, convex_polygon, ellipse, object_frame, paint_layers
from fgssl_lib.data.textures import render_habitats

STREAMS = ("train", "val")
DEFAULT_NUM_IMAGES = {"train": 5000, "val": 1000}
RENDER_VERSION = 1
"""Part of the disk-cache key and of the runs' key: bump it whenever a change to the drawing code changes the
pixels."""
FIRST_BACKGROUND = 32
"""Habitat number of the first background: after the benchmark's habitats (at most 27 classes, one habitat each)."""

Region = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(u, v) -> inside``: a shape in its own frame (unit = the object's radius), ``N x H x W`` bool."""


def _star(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Five convex kites (origin, inner corner, tip, inner corner) around the centre."""
    inside = torch.zeros_like(u, dtype=torch.bool)
    for k in range(5):
        tip, left, right = (math.radians(72 * k - 90 + d) for d in (0, -36, 36))
        kite = ((0.0, 0.0), (0.42 * math.cos(left), 0.42 * math.sin(left)), (math.cos(tip), math.sin(tip)),
                (0.42 * math.cos(right), 0.42 * math.sin(right)))
        inside |= convex_polygon(u, v, kite)
    return inside


def _regular(corners: int, radius: float) -> tuple[tuple[float, float], ...]:
    """Vertices of a regular polygon with ``corners`` corners at ``radius``, the first one up."""
    return tuple((radius * math.cos(a), radius * math.sin(a))
                 for a in (math.radians(360 * k / corners - 90) for k in range(corners)))


FAMILIES: dict[str, Region] = {
    "disc": lambda u, v: ellipse(u, v, 0.0, 0.0, 1.0, 1.0),
    "ring": lambda u, v: ellipse(u, v, 0.0, 0.0, 1.0, 1.0) & ~ellipse(u, v, 0.0, 0.0, 0.55, 0.55),
    "square": lambda u, v: (u.abs() <= 0.8) & (v.abs() <= 0.8),
    "triangle": lambda u, v: convex_polygon(u, v, _regular(3, 1.0)),
    "star": _star,
    "cross": lambda u, v: ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((v.abs() <= 0.3) & (u.abs() <= 0.95)),
    "hexagon": lambda u, v: convex_polygon(u, v, _regular(6, 0.95)),
    "crescent": lambda u, v: ellipse(u, v, 0.0, 0.0, 1.0, 1.0) & ~ellipse(u, v, 0.45, 0.0, 0.8, 0.8),
    "bar": lambda u, v: (u.abs() <= 1.0) & (v.abs() <= 0.33),
    "arrow": lambda u, v: (convex_polygon(u, v, ((1.0, 0.0), (0.15, -0.7), (0.15, 0.7)))
                           | ((u >= -1.0) & (u <= 0.2) & (v.abs() <= 0.25))),
}
"""The shape families, each a region in the object's frame; no two are rotations of each other."""
COLOURS = {"red": (205, 40, 40), "blue": (40, 75, 205), "yellow": (235, 205, 35), "green": (35, 165, 70),
           "purple": (150, 60, 175)}
PATTERNS = ("plain", "striped", "spotted")
ATTRIBUTES = {"family": tuple(FAMILIES), "colour": tuple(COLOURS), "pattern": PATTERNS}
"""The attributes of a kind; a class is one value of each."""
_MAX_CLASSES = math.prod(len(v) for v in ATTRIBUTES.values())


def kind_attributes(label: int) -> tuple[int, int, int]:
    """Attribute values ``(family, colour, pattern)`` of class ``label``: family and colour run through all their
    pairs first (so classes below ``len(FAMILIES) * len(COLOURS)`` differ in family or colour); each further round of
    pairs shifts the pattern by one, so every combination is used once."""
    if not 0 <= label < _MAX_CLASSES:
        raise ValueError(f"class label must be in [0, {_MAX_CLASSES}), got {label}")
    families, colours = len(FAMILIES), len(COLOURS)
    family, colour, rounds = label % families, (label // families) % colours, label // (families * colours)
    return family, colour, (family + colour + rounds) % len(PATTERNS)


def kind_name(label: int) -> str:
    """Readable kind name, e.g. ``"striped red star"``."""
    family, colour, pattern = kind_attributes(label)
    return f"{PATTERNS[pattern]} {ATTRIBUTES['colour'][colour]} {ATTRIBUTES['family'][family]}"


@dataclass(frozen=True)
class Thing:
    """Pose and colour of one drawn object: ``centre`` in fractions of the image side, ``angle`` in radians,
    ``radius`` in image sides, ``colour`` RGB in ``[0, 255]``."""

    label: int
    centre: tuple[float, float]
    angle: float
    radius: float
    colour: tuple[float, float, float]


def sample_thing(label: int, generator: torch.Generator) -> Thing:
    """Draw the nuisances: any rotation, radius 0.2-0.32 of the side, a centre that keeps the object inside, and the
    kind's colour with each channel jittered by ±15."""
    u = torch.rand(7, generator=generator).tolist()
    radius = 0.2 + 0.12 * u[0]
    centre = (radius + (1 - 2 * radius) * u[1], radius + (1 - 2 * radius) * u[2])
    base = COLOURS[ATTRIBUTES["colour"][kind_attributes(label)[1]]]
    colour = tuple(c + 30 * (w - 0.5) for c, w in zip(base, u[4:7]))
    return Thing(label, centre, 2 * math.pi * u[3], radius, colour)


def draw_things(things: list[Thing], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise ``things``: ``(colour N x 3 x H x W float32 in [0, 255], mask N x H x W bool)``; the mask is exactly
    the shape's pixels (the pattern only recolours them). Object ``k`` does not depend on the rest of the batch."""
    n = len(things)
    attributes = torch.tensor([kind_attributes(t.label) for t in things])  # N x 3: family, colour, pattern
    u, v = object_frame([t.centre for t in things], [t.angle for t in things], [t.radius for t in things],
                        [False] * n, height, width)
    shape = torch.zeros(n, height, width, dtype=torch.bool)
    for f, region in enumerate(FAMILIES.values()):
        rows = (attributes[:, 0] == f).nonzero()[:, 0]
        if len(rows):
            shape[rows] = region(u[rows], v[rows])
    pattern = attributes[:, 2, None, None]
    stripes = (pattern == 1) & (torch.frac(2.5 * (u + 2)) < 0.5)  # 2.5 cycles per radius across the object
    spots = (pattern == 2) & ((torch.frac(2 * (u + 2)) - 0.5) ** 2 + (torch.frac(2 * (v + 2)) - 0.5) ** 2 < 0.2**2)
    colour = broadcast([t.colour for t in things])  # N x 3 x 1 x 1
    return paint_layers([(shape, colour), (shape & stripes, 0.45 * colour),
                         (shape & spots, broadcast((240, 240, 240)))], n, height, width)


@dataclass(frozen=True)
class CoarseConfig(WorldConfig):
    """Parameters of the coarse world (``image_size``, ``num_classes``, ``num_backgrounds``, ``seed``); an image is
    a pure function of these, the stream and the index."""

    num_classes: int = 40
    num_backgrounds: int = 40
    seed: int = 0
    drawn: ClassVar[str] = "the shapes"
    most_classes: ClassVar[int] = _MAX_CLASSES
    classes_from: ClassVar[str] = f"{len(FAMILIES)} families x {len(COLOURS)} colours x {len(PATTERNS)} patterns"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_backgrounds < 1:
            raise ValueError(f"num_backgrounds must be >= 1, got {self.num_backgrounds}")


class CoarseObjects(RenderedSplit):
    """One stream of the coarse world; ``dataset[i]`` is a sample dict with the contract keys
    ``image, label, box, mask, index`` plus ``background`` (the habitat drawn, ``0 .. num_backgrounds - 1``)."""

    def __init__(self, split: str = "train", num_images: int | None = None, cache_dir: str | Path | None = None,
                 **options: Any) -> None:
        self.split = check_choice("coarse split", split, STREAMS)
        self.config, self.num_images = split_options("coarse", CoarseConfig, num_images, DEFAULT_NUM_IMAGES[split],
                                                     options)
        self.num_classes = self.config.num_classes
        self.classes = [kind_name(c) for c in range(self.num_classes)]
        self.use_cache(cache_dir, "coarse", (RENDER_VERSION, asdict(self.config), self.split, self.num_images))

    def label(self, index: int) -> int:
        """Class of image ``index``: balanced, ``index mod num_classes``."""
        return index % self.num_classes

    def _generator(self, index: int, role: str) -> torch.Generator:
        """Roles: ``object`` (pose, colour), ``background`` (which habitat and its texture)."""
        return index_generator("coarse", self.config.seed, self.split, index, role)

    def backgrounds(self, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
        """The backgrounds of images ``indices`` (``N x 3 x S x S`` uint8) and their habitat numbers, drawn without
        looking at the label."""
        self.check_indices(indices)
        generators = [self._generator(i, "background") for i in indices]
        drawn = [int(torch.randint(self.config.num_backgrounds, (1,), generator=g)) for g in generators]
        size = self.config.image_size
        return render_habitats([FIRST_BACKGROUND + b for b in drawn], size, size, generators), drawn

    def render(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Images ``indices`` as one batch: ``image`` N x 3 x S x S uint8, ``mask`` N x S x S uint8, ``background``
        N int64."""
        background, drawn = self.backgrounds(indices)
        things = [sample_thing(self.label(i), self._generator(i, "object")) for i in indices]
        colour, mask = draw_things(things, self.config.image_size, self.config.image_size)
        return dict(image=composite(colour, mask, background), mask=mask.to(torch.uint8),
                    background=torch.tensor(drawn))


def load(root: str | None = None, split: str = "train", **options: Any) -> CoarseObjects:
    """Registry entry (``load_dataset("coarse", split=..., **options)``); ``root`` is ignored (nothing on disk).

    Options: ``image_size`` (64), ``num_classes`` (40), ``num_backgrounds`` (40), ``num_images`` (per stream; 5000 /
    1000 for train / val), ``seed`` (0), ``cache_dir`` (default ``<data home>/coarse``; ``None``: no cache).
    """
    from fgssl_lib.data.downloads import data_home

    options.setdefault("cache_dir", data_home() / "coarse")
    return CoarseObjects(split=split, **options)

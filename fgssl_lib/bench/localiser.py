"""``python -m fgssl_lib.bench localiser``: choose the default label-free localiser on the synthetic benchmark's
``val`` stream, before any training.

Each classic saliency source of :data:`fgssl_lib.train.localiser.DETECTORS` maps every ``val`` image (variant
``original``, the benchmark's 500 images at 64 px) to a map ``S``; two MaxBoxAcc numbers against the drawn bird's box
(:func:`fgssl_lib.eval.max_box_acc`, IoU >= 0.5) score it:

- ``box_acc``: MaxBoxAcc of the indicator of ``best_box(S)`` (:func:`fgssl_lib.saliency.best_box`), i.e. the share
  of images whose box, the one SaliencySwap crops and whose map DiLo pastes, overlaps the bird's at IoU >= 0.5: the
  **criterion**;
- ``map_maxboxacc``: MaxBoxAcc of ``S`` itself (its best threshold), for reference.

The source with the highest ``box_acc`` is the default (:data:`fgssl_lib.train.localiser.DEFAULT_LOCALISER`);
``--write`` stores the numbers in ``fgssl_lib/results/localiser.json``, which a test checks against that default.

``--self METHOD ...`` checks self-saliency's schedule: each method trains the first epoch of its ``cpu`` run (seed 0,
the 8-epoch schedule stopped after one epoch) with ``localiser="self"``, i.e. on the detector's boxes, and its
``localisation_map()``, the map the next epoch would use, is scored the same way on the same ``val`` images.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import tempfile
from dataclasses import replace

import torch

from fgssl_lib.data.sample import box_to_mask
from fgssl_lib.eval.maxboxacc import max_box_acc
from fgssl_lib.results import RESULTS
from fgssl_lib.saliency import best_boxes, build_saliency

RESULT = RESULTS / "localiser.json"
"""Where ``--write`` stores the selection."""
VAL_IMAGES = 500
"""The synthetic benchmark's ``val`` stream at its default size."""


def box_scores(maps: torch.Tensor, drawn: list[torch.Tensor]) -> dict[str, float]:
    """``box_acc`` and ``map_maxboxacc`` (module docstring) of ``N x H x W`` maps against the drawn boxes."""
    boxes = best_boxes(maps)  # N x 4
    indicators = torch.stack([box_to_mask(b, *maps.shape[-2:]) for b in boxes]).float()
    return {"box_acc": round(max_box_acc(indicators, drawn)[0], 2),
            "map_maxboxacc": round(max_box_acc(maps, drawn)[0], 2)}


def val_images(num_images: int = VAL_IMAGES, image_size: int = 64) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The first ``num_images`` images (``3 x S x S`` uint8) of the synthetic benchmark's ``val`` stream and their drawn
    boxes."""
    from fgssl_lib.data import load_dataset

    val = load_dataset("synthetic", split="val", num_images=num_images, image_size=image_size)
    samples = [val[i] for i in range(len(val))]
    return [s["image"] for s in samples], [s["box"] for s in samples]


def self_after_first_epoch(method: str, num_images: int = VAL_IMAGES) -> dict[str, float]:
    """:func:`box_scores` of ``method``'s ``localisation_map()`` on ``val`` after the first epoch of its ``cpu`` run
    with ``localiser="self"`` (module docstring)."""
    from fgssl_lib.train import TrainConfig, fit

    images, drawn = val_images(num_images)
    config = TrainConfig.preset("cpu", method=method, localiser="self", progress_bar=False)
    with tempfile.TemporaryDirectory() as directory:
        config = replace(config, max_steps=config.num_images // config.batch_size, checkpoint_dir=directory)
        trained, _ = fit(config)
    source = trained.localisation_map()
    batch = torch.stack(images).float() / 255
    maps = torch.cat([source(part).cpu() for part in batch.split(100)])  # N x S x S
    return box_scores(maps, drawn)


def score_sources(sources: tuple[str, ...], num_images: int = VAL_IMAGES, image_size: int = 64) -> dict[str, Any]:
    """``box_acc`` and ``map_maxboxacc`` (percentages, module docstring) of each classic source in ``sources`` on the
    first ``num_images`` images of the synthetic benchmark's ``val`` stream, and the ``chosen`` one (highest
    ``box_acc``; ties go to the first of ``sources``)."""
    images, drawn = val_images(num_images, image_size)
    scores: dict[str, dict[str, float]] = {}
    for name in sources:
        source = build_saliency(name)
        scores[name] = box_scores(torch.stack([source(image) for image in images]), drawn)  # no annotation passed
    chosen = max(sources, key=lambda name: scores[name]["box_acc"])
    return {"stream": "val", "variant": "original", "images": len(images), "image_size": image_size,
            "criterion": "box_acc", "scores": scores, "chosen": chosen,
            "command": "python -m fgssl_lib.bench localiser --write"}


def main(argv: list[str] | None = None) -> int:
    from fgssl_lib.train.localiser import DETECTORS

    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench localiser", description=__doc__)
    parser.add_argument("--images", type=int, default=VAL_IMAGES, help="val images scored")
    parser.add_argument("--self", nargs="*", default=[], dest="methods", metavar="METHOD",
                        help="also score each method's own map after its first epoch with localiser='self'")
    parser.add_argument("--write", action="store_true", help=f"store the numbers in {RESULT}")
    args = parser.parse_args(argv)
    result = score_sources(DETECTORS, args.images)
    for name, score in result["scores"].items():
        print(f"localiser {name}: box_acc {score['box_acc']:.1f} %, map MaxBoxAcc {score['map_maxboxacc']:.1f} % "
              f"({result['images']} val images)")
    print(f"chosen: {result['chosen']}")
    if args.methods:
        result["self_after_first_epoch"] = {m: self_after_first_epoch(m, args.images) for m in args.methods}
        result["command"] += " --self " + " ".join(args.methods)
        for name, score in result["self_after_first_epoch"].items():
            print(f"self {name} after its first epoch: box_acc {score['box_acc']:.1f} %, map MaxBoxAcc "
                  f"{score['map_maxboxacc']:.1f} %")
    if args.write:
        tmp = RESULT.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, RESULT)
    return 0

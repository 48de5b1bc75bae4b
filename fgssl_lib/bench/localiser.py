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
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import torch

from fgssl_lib.data.sample import box_to_mask
from fgssl_lib.eval.maxboxacc import max_box_acc
from fgssl_lib.results import RESULTS
from fgssl_lib.saliency import best_boxes, build_saliency

RESULT = RESULTS / "localiser.json"
"""Where ``--write`` stores the selection."""
VAL_IMAGES = 500
"""The synthetic benchmark's ``val`` stream at its default size."""


def score_sources(sources: tuple[str, ...], num_images: int = VAL_IMAGES, image_size: int = 64) -> dict[str, Any]:
    """``box_acc`` and ``map_maxboxacc`` (percentages, module docstring) of each classic source in ``sources`` on the
    first ``num_images`` images of the synthetic benchmark's ``val`` stream, and the ``chosen`` one (highest
    ``box_acc``; ties go to the first of ``sources``)."""
    from fgssl_lib.data import load_dataset

    val = load_dataset("synthetic", split="val", num_images=num_images, image_size=image_size)
    samples = [val[i] for i in range(len(val))]
    drawn = [s["box"] for s in samples]
    scores: dict[str, dict[str, float]] = {}
    for name in sources:
        source = build_saliency(name)
        maps = torch.stack([source(s["image"]) for s in samples])  # N x H x W, no annotation passed
        boxes = best_boxes(maps)  # N x 4
        indicators = torch.stack([box_to_mask(b, *maps.shape[-2:]) for b in boxes]).float()
        scores[name] = {"box_acc": round(max_box_acc(indicators, drawn)[0], 2),
                        "map_maxboxacc": round(max_box_acc(maps, drawn)[0], 2)}
    chosen = max(sources, key=lambda name: scores[name]["box_acc"])
    return {"stream": "val", "variant": "original", "images": len(samples), "image_size": image_size,
            "criterion": "box_acc", "scores": scores, "chosen": chosen,
            "command": "python -m fgssl_lib.bench localiser --write"}


def main(argv: list[str] | None = None) -> int:
    from fgssl_lib.train.localiser import DETECTORS

    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench localiser", description=__doc__)
    parser.add_argument("--images", type=int, default=VAL_IMAGES, help="val images scored")
    parser.add_argument("--write", action="store_true", help=f"store the numbers in {RESULT}")
    args = parser.parse_args(argv)
    result = score_sources(DETECTORS, args.images)
    for name, score in result["scores"].items():
        print(f"localiser {name}: box_acc {score['box_acc']:.1f} %, map MaxBoxAcc {score['map_maxboxacc']:.1f} % "
              f"({result['images']} val images)")
    print(f"chosen: {result['chosen']}")
    if args.write:
        tmp = RESULT.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, RESULT)
    return 0

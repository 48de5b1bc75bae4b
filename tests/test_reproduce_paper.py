"""``reproduce --preset paper`` sized down runs every notebook to the end on a CUB-format dataset (ResNet-50 at
224 px on a CPU): the path a Colab user takes, with the papers' settings except epochs, batch size and images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from fgssl_lib.reproduce import main, toc_notebooks

ROOT = Path(__file__).resolve().parents[1]
CLASSES, TRAIN, TEST = 3, 10, 3  # images per class and split (the 20 % linear probe keeps 2 a class)


def build_cub_dataset(root: Path, seed: int = 0) -> Path:
    """A ``CUB_200_2011`` folder in the official format: 3 classes, 10 train + 3 test images each (64 x 48 px), a
    coloured bird-like square whose colour is the species on a noisy background, boxes and no segmentations."""
    rng = np.random.default_rng(seed)
    colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220)]
    images, labels, split, boxes = [], [], [], []
    for c in range(CLASSES):
        for i in range(TRAIN + TEST):
            rel = f"{c + 1:03d}.Bird_{c}/bird_{c}_{i}.jpg"
            array = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            x, y = int(rng.integers(4, 36)), int(rng.integers(4, 20))
            array[y:y + 20, x:x + 24] = colours[c]
            (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / "images" / rel)
            n = len(images) + 1
            images.append(f"{n} {rel}")
            labels.append(f"{n} {c + 1}")
            split.append(f"{n} {int(i < TRAIN)}")
            boxes.append(f"{n} {x}.0 {y}.0 24.0 20.0")
    for name, lines in (("classes.txt", [f"{c + 1} {c + 1:03d}.Bird_{c}" for c in range(CLASSES)]),
                        ("images.txt", images), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", split), ("bounding_boxes.txt", boxes)):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def offline_imagenet_weights(torch_home: Path) -> None:
    """Random ResNet-50 weights where torch.hub looks for the ImageNet file, so ``pretrained="imagenet"`` (LCR and
    its MoCo v2 baseline at ``paper``) loads without a network."""
    weights = torchvision.models.get_model_weights("resnet50").DEFAULT
    path = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet50().state_dict(), path)


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.xdist_group("paper")  # make test: one process for these (see the Makefile)
def test_every_notebook_runs_at_the_paper_preset_sized_down_on_a_cub_format_dataset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = build_cub_dataset(tmp_path / "CUB_200_2011")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # the notebook kernels inherit it
    offline_imagenet_weights(tmp_path / "torch")
    monkeypatch.setenv("FGSSL_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    out = tmp_path / "executed"
    code = main(["--preset", "paper", "--out", str(out), "-p", "dataset='cub'", "-p", f"data_root='{data}'",
                 "-p", "epochs=1", "-p", "batch_size=4", "-p", "num_images=8", "-p", "device='cpu'"])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-4000:]
    for notebook in toc_notebooks(ROOT / "_toc.yml"):
        assert json.loads((out / notebook.stem / "results.json").read_text()), f"{notebook.stem} recorded nothing"

"""Stale answers and unnamed errors: the data's identity keys every cache and run, damaged caches are rebuilt, and
every bad input file, bad setting and unusable directory is named with its fix."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgssl_lib import caches
from fgssl_lib.caches import COMPLETE, UnusableDirectoryError, temporary_name
from fgssl_lib.data import load_dataset
from fgssl_lib.data.annotated import decode_rgb
from fgssl_lib.data.identity import dataset_fingerprint
from fgssl_lib.eval import extract_features
from fgssl_lib.reproduce import main as reproduce_main
from fgssl_lib.runs import DONE, train_or_load
from fgssl_lib.saliency import SaliencyCache, build_saliency
from fgssl_lib.train import TrainConfig
from fgssl_lib.train import callbacks as train_callbacks
from fgssl_lib.train.store import TrainingStore
from fixtures_real import CUB_IMAGES, build_cub, build_folder, write_image


def _edit(path: Path, line: int, text: str) -> None:
    """Replace line ``line`` (1-based) of an annotation table."""
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _replace_image(root: Path, image_id: int, value: int) -> None:
    """Replace CUB image ``image_id`` by another image of the same size."""
    _, rel, *_, (width, height) = CUB_IMAGES[image_id - 1]
    write_image(root / "images" / rel, width, height, value=value)


# --- one data identity --------------------------------------------------------------------------------------------
def test_the_fingerprint_follows_labels_boxes_splits_and_images_not_the_folder(tmp_path):
    root = build_cub(tmp_path / "drive" / "CUB")
    before = dataset_fingerprint(load_dataset("cub", root=root))
    copy = shutil.copytree(root, tmp_path / "content" / "CUB")  # another folder, new modification times
    assert dataset_fingerprint(load_dataset("cub", root=copy)) == before
    changes = {
        "label": lambda r: _edit(r / "image_class_labels.txt", 3, "3 1"),
        "box": lambda r: _edit(r / "bounding_boxes.txt", 1, "1 2.0 3.0 11.0 20.0"),
        "split flag": lambda r: _edit(r / "train_test_split.txt", 2, "2 1"),
        "image": lambda r: _replace_image(r, 5, value=99),
        "segmentation": lambda r: Image.new("L", (40, 30), 255).save(r / "segmentations/003.Gamma_bird/c_1.png"),
    }
    for what, change in changes.items():
        changed = shutil.copytree(root, tmp_path / what.replace(" ", "_"))
        change(changed)
        assert dataset_fingerprint(load_dataset("cub", root=changed)) != before, what


def test_store_saliency_and_feature_caches_follow_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path / "cache"))
    root = build_cub(tmp_path / "cub", segmentations=False)
    source = build_saliency("centre")
    old = load_dataset("cub", root=root, split="test")
    store, maps = TrainingStore.load(old), SaliencyCache().load(old, source)
    features = extract_features(lambda x: x.flatten(1), old, image_size=16, cache_dir=tmp_path / "f", key="m")
    _edit(root / "image_class_labels.txt", 4, "4 3")  # image 4 (test) is relabelled
    _replace_image(root, 6, value=99)  # and image 6 (test) replaced by one of the same size
    new = load_dataset("cub", root=root, split="test")
    assert TrainingStore.load(new).path != store.path and SaliencyCache().load(new, source).path != maps.path
    assert TrainingStore.load(new).rows["label"].tolist() == new.labels
    fresh = extract_features(lambda x: x.flatten(1), new, image_size=16, cache_dir=tmp_path / "f", key="m")
    assert fresh.labels.tolist() == new.labels != features.labels.tolist()


def test_a_run_is_never_returned_for_other_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path / "cache"))
    a = build_cub(tmp_path / "a", segmentations=False)
    b = shutil.copytree(a, tmp_path / "b")
    _replace_image(b, 3, value=50)  # same size, other pixels
    config = TrainConfig.preset("smoke", dataset="cub", data_root=str(a), dataset_options={}, batch_size=2,
                                num_images=None)
    run_a = train_or_load(config, root=tmp_path / "runs")
    assert json.loads((run_a.path / DONE).read_text())["data"]
    run_b = train_or_load(dataclasses.replace(config, data_root=str(b)), root=tmp_path / "runs")
    assert run_b.path != run_a.path
    moved = shutil.copytree(a, tmp_path / "moved")
    assert train_or_load(dataclasses.replace(config, data_root=str(moved)), root=tmp_path / "runs").path == run_a.path
    done = json.loads((run_a.path / DONE).read_text())
    (run_a.path / DONE).write_text(json.dumps({**done, "data": "0123456789abcdef"}))
    with pytest.raises(ValueError, match=r"trained on other data .* retrain=True"):
        train_or_load(config, root=tmp_path / "runs")


# --- bad input files ----------------------------------------------------------------------------------------------
def test_a_table_not_in_utf8_is_named_with_its_line(tmp_path):
    root = build_cub(tmp_path / "cub", segmentations=False)
    (root / "classes.txt").write_bytes("1 001.Alpha_bird\n2 002.Beta_bird\n3 003.Gämma\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"classes.txt, line 3: not UTF-8 text .*iconv"):
        load_dataset("cub", root=root)
    (root / "classes.txt").write_bytes("\ufeff1 001.Alpha_bird\n2 002.Beta_bird\n3 003.Gämma\n".encode())
    assert load_dataset("cub", root=root).classes[2] == "Gämma"  # a UTF-8 BOM stays fine


def test_a_folder_table_not_in_utf8_is_named(tmp_path):
    root = build_folder(tmp_path / "f")
    (root / "boxes.csv").write_bytes("path,x0,y0,x1,y1\nduck/d1.png,1,2,3,4 # \xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"boxes.csv, line 2: not UTF-8"):
        load_dataset("folder", root=root)


def test_16_bit_and_animated_images_are_converted_to_8_bit_rgb(tmp_path):
    grey16 = (np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    image = decode_rgb(tmp_path / "g16.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 48)
    assert int(image[0, -1, -1]) == round(int(grey16[-1, -1]) / 257)
    frames = [Image.fromarray(np.full((32, 48, 3), v, np.uint8)) for v in (10, 200)]
    for suffix in ("gif", "webp"):
        frames[0].save(tmp_path / f"a.{suffix}", save_all=True, append_images=frames[1:], duration=50, loop=0)
        image = decode_rgb(tmp_path / f"a.{suffix}")
        assert image.shape == (3, 32, 48) and abs(int(image.float().mean()) - 10) <= 2  # the first frame


def test_hidden_folders_at_a_folder_root_are_not_classes(tmp_path):
    root = build_folder(tmp_path / "f")
    write_image(root / ".thumbnails" / "x.jpg")
    write_image(root / "__MACOSX" / "duck" / "y.jpg")
    (root / "duck" / "._d3.jpg").write_bytes(b"AppleDouble")
    dataset = load_dataset("folder", root=root, split="all")
    assert dataset.classes == ["duck", "sparrow"] and len(dataset) == 8


def test_a_folder_root_split_into_train_and_test_folders_is_recognised(tmp_path):
    root = tmp_path / "f"
    for split, names in (("train", ("a1", "a2", "b1")), ("test", ("a3", "b2"))):
        for name in names:
            write_image(root / split / {"a": "ant", "b": "bee"}[name[0]] / f"{name}.jpg")
    train, test = (load_dataset("folder", root=root, split=s) for s in ("train", "test"))
    assert train.classes == test.classes == ["ant", "bee"]
    assert sorted(train.labels) == [0, 0, 1] and sorted(test.labels) == [0, 1]
    (root / "test" / "ant" / "a3.jpg").unlink()
    (root / "test" / "ant" / "deeper").mkdir()
    write_image(root / "test" / "ant" / "deeper" / "z.jpg")
    with pytest.raises(FileNotFoundError, match="holds no images .* a root split by folders"):
        load_dataset("folder", root=root)


@pytest.mark.parametrize("path", ["../../outside.jpg", "/etc/outside.jpg"])
def test_an_image_path_outside_the_dataset_root_is_refused_naming_the_line(tmp_path, path):
    root = build_cub(tmp_path / "cub", segmentations=False)
    write_image(tmp_path / "outside.jpg")
    lines = (root / "images.txt").read_text().splitlines()
    lines[2] = f"3 {path}"
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"images.txt, line 3: the image path .* points outside"):
        load_dataset("cub", root=root)


# --- bad settings -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, allowed", [("lr", 0.0, "> 0"), ("lr", -0.1, "> 0"),
                                                   ("batch_size", 1, ">= 2"), ("max_steps", 0, ">= 1, or -1"),
                                                   ("weight_decay", -1.0, ">= 0")])
def test_a_bad_setting_is_refused_before_training_naming_field_and_range(field, value, allowed):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be {allowed}"):
        TrainConfig.preset("smoke", **{field: value})


def test_an_empty_split_at_evaluation_is_named(tmp_path):
    root = build_folder(tmp_path / "f", split={p: "train" for p in (
        "duck/d1.png", "duck/d2.png", "duck/d3.jpg", "sparrow/s1.jpg", "sparrow/s2.jpg", "sparrow/s3.jpg",
        "sparrow/s4.jpg", "sparrow/s5.jpg")})
    dataset = load_dataset("folder", root=root, split="train")
    empty = torch.utils.data.Subset(dataset, [])
    with pytest.raises(ValueError, match="holds no images"):
        extract_features(lambda x: x.flatten(1), empty, image_size=16)


# --- derived caches are never trusted blindly ---------------------------------------------------------------------
def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_or_partial_training_store_is_rebuilt_with_a_warning(tmp_path):
    dataset = load_dataset("synthetic", split="train", image_size=16, num_images=6)
    store = TrainingStore.load(dataset, root=tmp_path)
    expected = store.batch(torch.arange(6))["image"].clone()
    for damage in (lambda p: _cut(p / "image.u8"), lambda p: (p / "rows.npz").unlink(),
                   lambda p: (p / COMPLETE).unlink()):
        damage(store.path)
        with pytest.warns(RuntimeWarning, match=rf"rebuilding the training store {store.path}"):
            again = TrainingStore.load(dataset, root=tmp_path)
        assert torch.equal(again.batch(torch.arange(6))["image"], expected)
    killed = tmp_path / f"{temporary_name(store.path.name)}abcd1234".replace(str(os.getpid()), str(_dead_pid()))
    killed.mkdir()
    shutil.rmtree(store.path)
    TrainingStore.load(dataset, root=tmp_path)
    assert not killed.exists() and [p.name for p in tmp_path.iterdir()] == [store.path.name]


def test_damaged_saliency_feature_and_render_caches_are_rebuilt_with_a_warning(tmp_path):
    dataset = load_dataset("synthetic", split="train", image_size=16, num_images=4, cache_dir=tmp_path / "r")
    maps = SaliencyCache(tmp_path / "s").load(dataset, build_saliency("centre"))
    _cut(maps.path / "maps.u8")
    with pytest.warns(RuntimeWarning, match="rebuilding the saliency cache of centre"):
        assert SaliencyCache(tmp_path / "s").load(dataset, build_saliency("centre"))[3].shape == (16, 16)
    (maps.path / COMPLETE).unlink()  # as an entry written by an older fgssl
    with pytest.warns(RuntimeWarning, match="no completeness marker"):
        SaliencyCache(tmp_path / "s").load(dataset, build_saliency("centre"))
    embed = dict(image_size=16, cache_dir=tmp_path / "f", key="m")
    first = extract_features(lambda x: x.flatten(1), dataset, **embed)
    (feature_file,) = (tmp_path / "f").iterdir()
    _cut(feature_file)
    with pytest.warns(RuntimeWarning, match=rf"rebuilding the feature cache {feature_file}"):
        assert torch.equal(extract_features(lambda x: x.flatten(1), dataset, **embed).feats, first.feats)
    (render_file,) = (tmp_path / "r").iterdir()
    _cut(render_file)
    with pytest.warns(RuntimeWarning, match="rebuilding the rendered synthetic split"):
        again = load_dataset("synthetic", split="train", image_size=16, num_images=4, cache_dir=tmp_path / "r")
    assert torch.equal(again[3]["image"], dataset[3]["image"])
    torch.save({"format": 0, "payload": {}}, render_file)  # another format
    with pytest.warns(RuntimeWarning, match="format 0, this fgssl reads format 1"):
        load_dataset("synthetic", split="train", image_size=16, num_images=4, cache_dir=tmp_path / "r")


# --- unusable directories -----------------------------------------------------------------------------------------
def test_a_file_or_read_only_folder_of_runs_caches_or_out_is_named_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("FGSSL_RUNS", str(tmp_path / "file"))
    config = TrainConfig.preset("smoke")
    with pytest.raises(UnusableDirectoryError, match=r"file is a file, not a folder\. It is set by FGSSL_RUNS"):
        train_or_load(config)
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path / "file"))
    dataset = load_dataset("synthetic", split="train", image_size=16, num_images=2)
    with pytest.raises(UnusableDirectoryError, match=r"file/store: .* a folder\. It is set by FGSSL_CACHE"):
        TrainingStore.load(dataset)
    with pytest.raises(SystemExit):
        reproduce_main(["--preset", "smoke", "--out", str(tmp_path / "file")])
    assert "file is a file, not a folder. It is set by --out" in capsys.readouterr().err
    monkeypatch.setattr(caches.os, "access", lambda path, mode: False)  # a read-only folder (root may write anyway)
    with pytest.raises(UnusableDirectoryError, match=r"read-only\)\. It is set by the parameter cache_dir"):
        extract_features(lambda x: x.flatten(1), dataset, image_size=16, cache_dir=tmp_path / "f", key="m")


def test_a_full_disk_at_a_checkpoint_names_the_run_folder_and_leaves_no_partial_file(tmp_path, monkeypatch):
    def full(obj, f):  # noqa: ANN001 - torch.save's signature
        f.write(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(train_callbacks.torch, "save", full)
    with pytest.raises(UnusableDirectoryError, match=r"run: the write failed \(is the disk full\?\).*FGSSL_RUNS"):
        train_callbacks.AtomicCheckpointIO().save_checkpoint({"epoch": 1}, tmp_path / "run" / "last.ckpt")
    assert list((tmp_path / "run").iterdir()) == []
    monkeypatch.setattr(train_callbacks.torch, "save", lambda obj, f: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(UnusableDirectoryError, match="no space left on the device"):
        train_callbacks.AtomicCheckpointIO().save_checkpoint({"epoch": 1}, tmp_path / "run" / "last.ckpt")
    assert list((tmp_path / "run").iterdir()) == []

"""Readers of the real datasets on fixture directories in their official formats, and the download helpers.

Expected values are computed by hand from the constants in ``fixtures_real``: boxes in fgssl's convention
(0-based, exclusive ends, clipped to the image), masks from segmentations or boxes.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import FGVCAircraft, StanfordCars

import fixtures_real as fx
from fgssl_lib.data import load_dataset
from fgssl_lib.data import downloads as dl
from fgssl_lib.data.annotated import BadBoxError, CorruptImageError
from fgssl_lib.data.sample import box_to_mask


def boxes(dataset) -> list[list[float]]:
    return [dataset[i]["box"].tolist() for i in range(len(dataset))]


def check_sample_contract(dataset) -> None:
    for i in range(len(dataset)):
        s = dataset[i]
        assert s["image"].dtype == torch.uint8 and s["image"].ndim == 3 and s["image"].shape[0] == 3
        assert s["mask"].dtype == torch.uint8 and s["mask"].shape == s["image"].shape[1:]
        assert set(s["mask"].unique().tolist()) <= {0, 1}
        assert s["box"].dtype == torch.float32 and s["index"] == i and 0 <= s["label"] < dataset.num_classes


# --- CUB-200-2011 ---------------------------------------------------------------------------------------------------
@pytest.fixture
def cub_root(tmp_path: Path) -> Path:
    return fx.build_cub(tmp_path / "CUB_200_2011")


def test_cub_splits_labels_classes_and_boxes(cub_root: Path) -> None:
    train = load_dataset("cub", root=str(cub_root), split="train")
    test = load_dataset("cub", root=str(cub_root), split="test")
    assert train.classes == ["Alpha_bird", "Beta_bird", "Gamma_bird"] and train.num_classes == 3
    assert (len(train), len(test)) == (3, 3)
    assert train.labels == [0, 1, 2] and test.labels == [0, 1, 2]
    assert boxes(train) == [[2, 3, 12, 23], [40.5, 20, 48, 32], [1, 1, 5, 5]]
    assert boxes(test) == [[0, 0, 48, 32], [5, 6, 12, 14], [0, 0, 7, 8]]
    assert train[2]["image"].shape == (3, 30, 40)
    check_sample_contract(train)
    check_sample_contract(test)


def test_cub_masks_threshold_soft_segmentations(cub_root: Path) -> None:
    train = load_dataset("cub", root=cub_root, split="train")
    for i in range(len(train)):
        h, w = train[i]["image"].shape[1:]
        expected = torch.from_numpy((fx.cub_segmentation(w, h) >= 153).astype(np.uint8))
        assert torch.equal(train[i]["mask"], expected)  # 153 (3 of 5 annotators) is in, 102 is out
    strict = load_dataset("cub", root=cub_root, split="train", mask_threshold=0.61)
    assert strict[0]["mask"].sum() == 0  # 153 / 255 = 0.6 is below 0.61


def test_cub_without_segmentations_mask_is_box(cub_root: Path) -> None:
    ignored = load_dataset("cub", root=cub_root, split="train", segmentations=False)
    shutil.rmtree(cub_root / "segmentations")
    auto = load_dataset("cub", root=cub_root, split="train")
    for dataset in (ignored, auto):
        s = dataset[0]
        assert torch.equal(s["mask"], box_to_mask(s["box"], 32, 48)) and s["mask"].sum() == 10 * 20
    with pytest.raises(FileNotFoundError, match="segmentations"):
        load_dataset("cub", root=cub_root, split="train", segmentations=True)


def test_cub_missing_root_lists_every_file_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cub", root=tmp_path / "nowhere")
    message = str(error.value)
    for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt",
                 "classes.txt", "images"):
        assert name in message
    assert "download('cub'" in message and "data.caltech.edu" in message


def test_cub_incomplete_root_lists_only_missing(cub_root: Path) -> None:
    (cub_root / "bounding_boxes.txt").unlink()
    (cub_root / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cub", root=cub_root)
    missing = [line.strip() for line in str(error.value).splitlines() if line.startswith("  ")]
    assert missing == ["bounding_boxes.txt", "classes.txt"]


def test_cub_missing_image_and_unmatched_tables(cub_root: Path) -> None:
    (cub_root / "images" / fx.CUB_IMAGES[2][1]).unlink()
    with pytest.raises(FileNotFoundError, match="b_1.jpg"):
        load_dataset("cub", root=cub_root, split="train")
    fx.build_cub(cub_root)
    lines = (cub_root / "image_class_labels.txt").read_text().splitlines()
    (cub_root / "image_class_labels.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="no entry for 1 image id"):
        load_dataset("cub", root=cub_root)


def test_cub_segmentation_of_the_wrong_size_is_an_error(cub_root: Path) -> None:
    seg = (cub_root / "segmentations" / fx.CUB_IMAGES[0][1]).with_suffix(".png")
    fx.write_image(seg, 10, 10, mode="L", value=255)
    with pytest.raises(CorruptImageError, match=str(seg)):
        load_dataset("cub", root=cub_root, split="train")[0]


def test_cub_unknown_split_lists_valid(cub_root: Path) -> None:
    with pytest.raises(ValueError, match="valid splits: test, train"):
        load_dataset("cub", root=cub_root, split="val")


def test_corrupt_image_raises_naming_file_or_is_skipped_with_one_warning(cub_root: Path) -> None:
    bad = fx.corrupt(cub_root / "images" / fx.CUB_IMAGES[2][1])
    train = load_dataset("cub", root=cub_root, split="train")  # lazy: construction does not decode
    train[0]
    with pytest.raises(CorruptImageError, match=str(bad)):
        train[1]
    with pytest.warns(UserWarning, match="skipped 1 corrupt image") as record:
        skipped = load_dataset("cub", root=cub_root, split="train", on_corrupt="skip")
    ours = [w for w in record if issubclass(w.category, UserWarning)]  # torchvision adds DeprecationWarnings
    assert len(ours) == 1 and str(bad) in str(ours[0].message)
    assert len(skipped) == 2 and skipped.labels == [0, 2] and skipped[1]["index"] == 1
    with pytest.raises(ValueError, match="valid on_corrupts: raise, skip"):
        load_dataset("cub", root=cub_root, on_corrupt="ignore")


# --- bad annotations ----------------------------------------------------------------------------------------------
def edit_line(path: Path, number: int, text: str | None) -> Path:
    """Replace line ``number`` (1-based) of ``path`` by ``text``; ``number`` past the end appends it."""
    lines = path.read_text().splitlines()
    lines[number - 1:number] = [text]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("table", "number", "text", "message"), [
    ("train_test_split.txt", 3, "3 2",
     "train_test_split.txt, line 3: the split flag of image 3 is '2'; write 1 (train) or 0 (test)"),
    ("image_class_labels.txt", 7, "1 2", "image_class_labels.txt, line 7: id 1 is listed again (first at line 1)"),
    ("images.txt", 7, "3 002.Beta_bird/b_2.jpg", "images.txt, line 7: id 3 is listed again (first at line 3)"),
    ("bounding_boxes.txt", 2, "2 nan 0.0 48.0 32.0", "bounding_boxes.txt, line 2: a box needs 4 finite numbers, got "
                                                     "['nan', '0.0', '48.0', '32.0']; fix or remove the line"),
    ("bounding_boxes.txt", 4, "4 5.0 six 7.0 8.0", "bounding_boxes.txt, line 4: a box needs 4 finite numbers"),
])
def test_cub_table_errors_name_the_file_and_line(cub_root: Path, table: str, number: int, text: str,
                                                 message: str) -> None:
    edit_line(cub_root / table, number, text)
    with pytest.raises(ValueError) as error:
        load_dataset("cub", root=cub_root)
    assert f"{cub_root / message}" in str(error.value)


def test_cub_images_txt_with_a_byte_order_mark_is_read(cub_root: Path) -> None:
    expected = load_dataset("cub", root=cub_root)
    images = cub_root / "images.txt"
    images.write_bytes(b"\xef\xbb\xbf" + images.read_bytes())  # Windows Notepad's UTF-8
    read = load_dataset("cub", root=cub_root)
    assert read.labels == expected.labels and [r.path for r in read.records] == [r.path for r in expected.records]


@pytest.mark.parametrize(("number", "text", "why"), [(1, "1 2.0 3.0 -10.0 20.0", "width -10 and height 20"),
                                                     (5, "5 1.0 1.0 4.0 0.0", "width 4 and height 0")])
def test_cub_boxes_without_area_are_an_error_or_skipped_and_counted(cub_root: Path, number: int, text: str,
                                                                    why: str) -> None:
    table = edit_line(cub_root / "bounding_boxes.txt", number, text)
    with pytest.raises(BadBoxError, match=f"(?s){table}, line {number}: the box .* has {why}.*on_bad_box='skip'"):
        load_dataset("cub", root=cub_root)
    with pytest.warns(UserWarning, match="skipped 1 image\\(s\\) with an empty box of 3") as record:
        train = load_dataset("cub", root=cub_root, on_bad_box="skip")
    assert len(train) == 2 and len(train.skipped_boxes) == 1 and f"line {number}" in train.skipped_boxes[0]
    assert sum(issubclass(w.category, UserWarning) for w in record) == 1


def test_a_box_outside_its_image_is_an_error_when_read_or_skipped(cub_root: Path) -> None:
    table = edit_line(cub_root / "bounding_boxes.txt", 3, "3 60.0 40.0 10.0 10.0")  # the image is 40 x 30
    edit_line(table, 5, "5 10.2 1.0 0.2 4.0")  # a fifth of a pixel wide: no whole pixel
    train = load_dataset("cub", root=cub_root)
    with pytest.raises(BadBoxError, match=f"{table}, line 3: the box .* holds no pixel of its 48 x 32 image"):
        train[1]
    with pytest.warns(UserWarning, match="skipped 2 image"):
        kept = load_dataset("cub", root=cub_root, on_bad_box="skip", segmentations=False)
    assert kept.labels == [0] and [w.split(": ")[0] for w in kept.skipped_boxes] == [f"{table}, line 3",
                                                                                      f"{table}, line 5"]
    for dataset in (kept, load_dataset("cub", root=cub_root, split="test", segmentations=False)):
        assert all(dataset[i]["mask"].sum() > 0 for i in range(len(dataset)))  # no view sees an all-zero box mask


def test_bad_boxes_of_every_reader_name_their_file_and_line(tmp_path: Path) -> None:
    aircraft = fx.build_aircraft(tmp_path / "aircraft")
    table = edit_line(aircraft / "data" / "images_box.txt", 2, "0000002 20 3 5 10")
    with pytest.raises(BadBoxError, match=f"{table}, line 2: the box .* has width -14"):
        load_dataset("aircraft", root=aircraft)
    folder = fx.build_folder(tmp_path / "folder")
    (folder / "boxes.csv").write_text("path,x0,y0,x1,y1\nduck/d1.png,1,2,30,40\nsparrow/s2.jpg,4,5,10\n")
    with pytest.raises(ValueError, match=f"{folder / 'boxes.csv'}, line 3: expected 5 values \\(path,x0,y0,x1,y1\\), "
                                         "got 4"):
        load_dataset("folder", root=folder)
    (folder / "boxes.csv").write_text("path,x0,y0,x1,y1\nduck/d1.png,1,2,30,40\nduck/d1.png,9,2,3,40\n")
    with pytest.raises(ValueError, match="line 3: duck/d1.png is listed again"):
        load_dataset("folder", root=folder)
    (folder / "boxes.csv").write_text("path,x0,y0,x1,y1\nduck/d1.png,9,2,3,40\n")
    with pytest.raises(BadBoxError, match=f"{folder / 'boxes.csv'}, line 2: the box .* has width -6"):
        load_dataset("folder", root=folder, split="all")


# --- NABirds ------------------------------------------------------------------------------------------------------
def test_nabirds_leaf_labels_remapped_with_parents(tmp_path: Path) -> None:
    root = fx.build_nabirds(tmp_path / "nabirds")
    train = load_dataset("nabirds", root=root, split="train")
    test = load_dataset("nabirds", root=root, split="test")
    assert train.classes == ["Song Sparrow", "House Sparrow (Female)", "Mallard"]  # leaf 21 has no image
    assert train.class_ids == ["10", "11", "20"] and test.classes == train.classes
    assert train.parents == ["Perching Birds", "Perching Birds", "Waterbirds"]
    assert train.labels == [0, 1, 2] and test.labels == [0, 2]
    assert boxes(train) == [[1, 2, 21, 12], [30, 5, 48, 32], [4, 4, 12, 12]]
    assert boxes(test) == [[0, 0, 48, 32], [10, 10, 15, 15]]
    check_sample_contract(train)


def test_nabirds_hierarchy_levels(tmp_path: Path) -> None:
    root = fx.build_nabirds(tmp_path / "nabirds")
    level1 = load_dataset("nabirds", root=root, split="train", level=1)
    assert level1.classes == ["Perching Birds", "Waterbirds"] and level1.labels == [0, 0, 1]
    assert load_dataset("nabirds", root=root, split="test", level=0).classes == ["Birds"]
    deeper_than_tree = load_dataset("nabirds", root=root, split="train", level=5)
    assert deeper_than_tree.classes == ["Song Sparrow", "House Sparrow (Female)", "Mallard"]
    with pytest.raises(ValueError, match="level must be >= 0"):
        load_dataset("nabirds", root=root, level=-1)


def test_nabirds_missing_hierarchy_is_listed(tmp_path: Path) -> None:
    root = fx.build_nabirds(tmp_path / "nabirds")
    (root / "hierarchy.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)hierarchy\.txt.*dl\.allaboutbirds\.org"):
        load_dataset("nabirds", root=root)


# --- FGVC-Aircraft ------------------------------------------------------------------------------------------------
@pytest.fixture
def aircraft_root(tmp_path: Path) -> Path:
    return fx.build_aircraft(tmp_path / "fgvc-aircraft-2013b")


def test_aircraft_splits_boxes_and_banner(aircraft_root: Path) -> None:
    trainval = load_dataset("aircraft", root=aircraft_root, split="trainval")
    assert trainval.classes == fx.AIRCRAFT_LEVELS["variant"] and trainval.labels == [0, 1, 2, 0]
    assert trainval[0]["image"].shape == (3, fx.H, fx.W)  # 20-px banner cropped
    assert boxes(trainval) == [[0, 0, 48, 32], [4, 2, 20, 10], [9, 9, 30, 31], [1, 1, 3, 3]]
    test = load_dataset("aircraft", root=aircraft_root, split="test")
    assert boxes(test) == [[0, 29, 48, 32], [11, 4, 40, 25]] and test[0]["mask"].sum() == 48 * 3
    full = load_dataset("aircraft", root=aircraft_root, split="test", crop_banner=False)
    assert full[0]["image"].shape == (3, fx.AIRCRAFT_HEIGHT, fx.W) and full[0]["box"].tolist() == [0, 29, 48, 40]
    assert [len(load_dataset("aircraft", root=aircraft_root, split=s)) for s in ("train", "val")] == [2, 2]
    check_sample_contract(trainval)


@pytest.mark.parametrize("level", ["variant", "family", "manufacturer"])
def test_aircraft_levels_match_torchvision_reader(aircraft_root: Path, level: str) -> None:
    ours = load_dataset("aircraft", root=aircraft_root, split="trainval", annotation_level=level)
    theirs = FGVCAircraft(aircraft_root.parent, split="trainval", annotation_level=level, loader=str)
    assert ours.classes == theirs.classes == fx.AIRCRAFT_LEVELS[level]
    assert [(str(r.path), r.label) for r in ours.records] == [theirs[i] for i in range(len(theirs))]


def test_aircraft_bad_options_and_missing_files(aircraft_root: Path) -> None:
    with pytest.raises(ValueError, match="valid splits: test, train, trainval, val"):
        load_dataset("aircraft", root=aircraft_root, split="all")
    with pytest.raises(ValueError, match="valid annotation_levels: family, manufacturer, variant"):
        load_dataset("aircraft", root=aircraft_root, annotation_level="model")
    (aircraft_root / "data" / "images_box.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)data/images_box\.txt.*robots\.ox\.ac\.uk"):
        load_dataset("aircraft", root=aircraft_root)


# --- Stanford Cars ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_devkit", [False, True])
def test_cars_devkit_labels_and_boxes(tmp_path: Path, in_devkit: bool) -> None:
    root = fx.build_cars(tmp_path / "stanford_cars", test_annotations_in_devkit=in_devkit)
    train = load_dataset("cars", root=root, split="train")
    test = load_dataset("cars", root=root, split="test")
    assert train.classes == fx.CARS_CLASSES and train.num_classes == 2
    assert train.labels == [0, 1, 1] and test.labels == [1, 0]
    assert boxes(train) == [[0, 1, 30, 20], [9, 4, 48, 32], [0, 0, 48, 32]]
    assert boxes(test) == [[2, 3, 10, 12], [4, 4, 6, 6]]
    assert test[1]["mask"].sum() == 4
    check_sample_contract(train)


def test_cars_matches_torchvision_reader(tmp_path: Path) -> None:
    root = fx.build_cars(tmp_path / "stanford_cars")
    for split in ("train", "test"):
        ours = load_dataset("cars", root=root, split=split)
        theirs = StanfordCars(tmp_path, split=split, loader=str)
        assert ours.classes == theirs.classes
        assert [(str(r.path), r.label) for r in ours.records] == [theirs[i] for i in range(len(theirs))]


def test_cars_missing_root_says_where_to_put_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cars", root=tmp_path / "stanford_cars", split="test")
    message = str(error.value)
    for name in ("devkit/cars_meta.mat", "cars_test_annos_withlabels.mat", "cars_test", "cars_train/*.jpg"):
        assert name in message


# --- folder -------------------------------------------------------------------------------------------------------
def test_folder_classes_boxes_and_colour_conversion(tmp_path: Path) -> None:
    root = fx.build_folder(tmp_path / "mine")
    everything = load_dataset("folder", root=root, split="all")
    assert everything.classes == ["duck", "sparrow"] and len(everything) == 8
    assert everything.labels == [0, 0, 0, 1, 1, 1, 1, 1]
    grey, rgba = everything[0]["image"], everything[1]["image"]
    assert grey.shape == rgba.shape == (3, fx.H, fx.W) and bool((grey == fx.FOLDER_GREY).all())
    assert torch.equal(rgba[2], torch.full((fx.H, fx.W), fx.FOLDER_GREY, dtype=torch.uint8))
    assert boxes(everything)[0] == [1, 2, 30, 32] and boxes(everything)[4] == [0, 4, 10, 12]
    assert boxes(everything)[2] == [0, 0, fx.W, fx.H] and everything[2]["mask"].sum() == fx.W * fx.H
    check_sample_contract(everything)


def test_folder_seeded_stratified_split(tmp_path: Path) -> None:
    root = fx.build_folder(tmp_path / "mine", boxes=False)
    train = load_dataset("folder", root=root, split="train", seed=3)
    test = load_dataset("folder", root=root, split="test", seed=3)
    assert (len(train), len(test)) == (6, 2) and sorted(test.labels) == [0, 1]
    train_paths, test_paths = {r.path for r in train.records}, {r.path for r in test.records}
    assert not train_paths & test_paths and len(train_paths | test_paths) == 8
    assert [r.path for r in load_dataset("folder", root=root, split="test", seed=3).records] == \
        [r.path for r in test.records]
    draws = {tuple(r.path.name for r in load_dataset("folder", root=root, split="test", seed=s).records)
             for s in range(8)}
    assert len(draws) > 1
    assert len(load_dataset("folder", root=root, split="test", test_fraction=0.5)) == 2 + 2


def test_folder_split_csv(tmp_path: Path) -> None:
    assigned = {rel: ("query" if i % 4 == 0 else "gallery") for i, (rel, _) in enumerate(fx.FOLDER_IMAGES)}
    root = fx.build_folder(tmp_path / "mine", split=assigned)
    query = load_dataset("folder", root=root, split="query")
    assert [r.path.relative_to(root).as_posix() for r in query.records] == ["duck/d1.png", "sparrow/s2.jpg"]
    with pytest.raises(ValueError, match="valid splits: all, gallery, query"):
        load_dataset("folder", root=root, split="train")
    del assigned["sparrow/s5.jpg"]
    fx.build_folder(root, split=assigned)
    with pytest.raises(ValueError, match="assigns no split to 1 image"):
        load_dataset("folder", root=root, split="query")


def test_folder_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("folder")
    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_dataset("folder", root=tmp_path)
    root = fx.build_folder(tmp_path / "mine")
    (root / "boxes.csv").write_text("path,x0,y0,x1,y1\nduck/missing.jpg,0,0,1,1\n")
    with pytest.raises(ValueError, match="missing.jpg"):
        load_dataset("folder", root=root)
    (root / "boxes.csv").write_text("file,x,y,w,h\n")
    with pytest.raises(ValueError, match="expected the header path,x0,y0,x1,y1"):
        load_dataset("folder", root=root)
    (root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        load_dataset("folder", root=root)


# --- download -----------------------------------------------------------------------------------------------------
class _RangeServer(http.server.BaseHTTPRequestHandler):
    """Serves ``payload`` at every path; honours ``Range: bytes=N-`` when ``honour_range``; records requests."""

    payload = b""
    honour_range = True
    requests: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        asked = self.headers.get("Range")
        type(self).requests.append(asked)
        start = int(asked.split("=")[1].rstrip("-")) if asked and self.honour_range else 0
        if start >= len(self.payload) > 0:
            self.send_response(416)
            self.end_headers()
            return
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[type[_RangeServer], str]]:
    handler = type("Handler", (_RangeServer,), {"requests": []})
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tiny_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("CUB_200_2011/images.txt", b"1 a/b.jpg\n"), ("CUB_200_2011/README", b"x" * 5000)):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def _use_server(monkeypatch: pytest.MonkeyPatch, url: str, payload: bytes, md5: str | None = None) -> None:
    spec = dl.Archive(url=f"{url}/CUB_200_2011.tgz?download=1", top="CUB_200_2011", marker="images.txt",
                      md5=md5 or hashlib.md5(payload).hexdigest())
    monkeypatch.setitem(dl.ARCHIVES, "cub", spec)


@pytest.mark.parametrize("honour_range", [True, False])
def test_download_resumes_verifies_and_extracts(tmp_path: Path, server, monkeypatch, honour_range: bool) -> None:
    handler, url = server
    payload = _tiny_archive()
    handler.payload, handler.honour_range = payload, honour_range
    _use_server(monkeypatch, url, payload)
    part = tmp_path / "CUB_200_2011.tgz.part"
    part.write_bytes(payload[:100] if honour_range else b"stale bytes from another file")
    root = dl.download("cub", tmp_path / "birds")
    assert handler.requests == ["bytes=100-" if honour_range else "bytes=29-"]
    assert (root / "images.txt").read_text() == "1 a/b.jpg\n" and root == tmp_path / "birds"
    assert not part.exists() and not (tmp_path / "CUB_200_2011.tgz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["birds"]  # no staging folder left behind
    dl.download("cub", root)
    assert len(handler.requests) == 1  # already extracted: nothing fetched
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="does not hold images.txt"):
        dl.download("cub", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").exists() and len(handler.requests) == 1


def test_download_of_a_complete_part_file_is_not_refetched(tmp_path: Path, server, monkeypatch) -> None:
    handler, url = server
    handler.payload = _tiny_archive()
    _use_server(monkeypatch, url, handler.payload)
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(handler.payload)
    root = dl.download("cub", tmp_path / "CUB_200_2011")
    assert handler.requests == [f"bytes={len(handler.payload)}-"]  # answered 416: nothing left to fetch
    assert (root / "images.txt").exists()


def test_download_checksum_mismatch_deletes_partial(tmp_path: Path, server, monkeypatch) -> None:
    handler, url = server
    handler.payload = _tiny_archive()
    _use_server(monkeypatch, url, handler.payload, md5="0" * 32)
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        dl.download("cub", tmp_path / "birds")
    assert not any(tmp_path.iterdir())


def test_published_md5_is_read_from_the_checksum_page(server) -> None:
    handler, url = server
    handler.payload = b"<html><body>MD5 (fgvc-aircraft-2013b.tar.gz) = 0123456789abcdef0123456789ABCDEF</body></html>"
    assert dl.published_md5(f"{url}/page.html") == "0123456789abcdef0123456789abcdef"
    handler.payload = b"<html>no checksum here</html>"
    with pytest.raises(RuntimeError, match="no MD5 checksum"):
        dl.published_md5(f"{url}/page.html")


@pytest.mark.parametrize("name, needle", [("cars", "cars_train_annos.mat"), ("nabirds", "hierarchy.txt")])
def test_manual_datasets_say_where_to_put_files(tmp_path: Path, name: str, needle: str) -> None:
    with pytest.raises(dl.ManualDownloadRequired, match=needle) as error:
        dl.download(name, tmp_path / name)
    assert str(tmp_path / name) in str(error.value)


def test_data_home_and_default_roots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FGSSL_DATA", raising=False)
    assert dl.data_home() == Path.home() / ".cache" / "fgssl"
    monkeypatch.setenv("FGSSL_DATA", str(tmp_path))
    assert dl.default_root("cub") == tmp_path / "CUB_200_2011"
    assert dl.default_root("aircraft") == tmp_path / "fgvc-aircraft-2013b"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "stanford_cars")):
        load_dataset("cars")
    with pytest.raises(ValueError, match="valid datasets"):
        dl.download("imagenet")

"""Where datasets live and how to get them: the cache directory, resumable checksummed downloads, manual steps.

``data_home()`` is ``$FGSSL_DATA`` (default ``~/.cache/fgssl``); each dataset's default root is a folder in it
(:data:`DEFAULT_DIRS`). ``download(name)`` fetches the publisher's archive for CUB-200-2011 and FGVC-Aircraft: the
bytes go to ``<archive>.part`` next to the root and an interrupted download resumes with an HTTP ``Range`` request;
the finished file is verified against the archive's MD5 before it is extracted. Stanford Cars and NABirds have no
stable public archive: ``download`` raises :class:`ManualDownloadRequired` saying which files to put where.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from fgssl_lib.caches import usable_directory
from fgssl_lib.config import check_choice

DEFAULT_DIRS = {
    "cub": "CUB_200_2011",
    "nabirds": "nabirds",
    "aircraft": "fgvc-aircraft-2013b",
    "cars": "stanford_cars",
    "folder": "folder",
}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """A publisher's archive: its URL, the folder it extracts to, and its MD5 (or the page that publishes it)."""

    url: str
    top: str
    marker: str
    md5: str | None = None
    md5_url: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1].split("?", 1)[0]


ARCHIVES = {
    "cub": Archive(
        url="https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
        top="CUB_200_2011",
        marker="images.txt",
        md5="97eceeb196236b17998738112f37df78",
    ),
    "aircraft": Archive(
        url="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
        top="fgvc-aircraft-2013b",
        marker="data/images_box.txt",
        md5_url="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.html",
    ),
}

MANUAL = {
    "cub": (
        "Get it with fgssl_lib.data.download('cub', root) or by hand from https://data.caltech.edu/records/"
        "65de6-vp158 (CUB_200_2011.tgz; extract it so that {root} holds images.txt and images/). The optional "
        "segmentation masks are segmentations.tgz on the same page: extract it to {root}/segmentations/."
    ),
    "aircraft": (
        "Get it with fgssl_lib.data.download('aircraft', root) or by hand from "
        "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (fgvc-aircraft-2013b.tar.gz; extract it so that "
        "{root} holds data/images/ and data/images_box.txt)."
    ),
    "cars": (
        "Stanford Cars has no stable public archive. Download the images and devkit (e.g. the Kaggle mirror "
        "'jessicali9530/stanford-cars-dataset' plus car_devkit.tgz and cars_test_annos_withlabels.mat) and arrange "
        "them as {root}/devkit/cars_meta.mat, {root}/devkit/cars_train_annos.mat, "
        "{root}/cars_test_annos_withlabels.mat (or in devkit/), {root}/cars_train/*.jpg, {root}/cars_test/*.jpg "
        "(the layout of torchvision.datasets.StanfordCars)."
    ),
    "nabirds": (
        "NABirds is distributed by the Cornell Lab of Ornithology after accepting its terms: request it at "
        "https://dl.allaboutbirds.org/nabirds, then extract nabirds.tar.gz so that {root} holds images.txt, "
        "image_class_labels.txt, train_test_split.txt, bounding_boxes.txt, classes.txt, hierarchy.txt and images/."
    ),
    "folder": (
        "The folder format is your own data: put one sub-folder of images per class in {root} "
        "(optionally boxes.csv and split.csv; see fgssl_lib.data.folder)."
    ),
}


class ManualDownloadRequired(RuntimeError):
    """The dataset cannot be downloaded automatically; the message says where to get it and where to put it."""


def data_home() -> Path:
    """The dataset cache directory: ``$FGSSL_DATA`` if set, else ``~/.cache/fgssl``."""
    return Path(os.environ.get("FGSSL_DATA") or Path.home() / ".cache" / "fgssl").expanduser()


def default_root(name: str) -> Path:
    """Default root of dataset ``name`` under :func:`data_home`."""
    return data_home() / DEFAULT_DIRS[check_choice("dataset", name, DEFAULT_DIRS)]


def how_to_get(name: str, root: Path) -> str:
    """The instructions to obtain dataset ``name`` at ``root`` (used in the readers' ``FileNotFoundError``)."""
    return MANUAL[check_choice("dataset", name, MANUAL)].format(root=root)


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def published_md5(url: str) -> str:
    """The first 32-hex-digit token of the page at ``url`` (a publisher's checksum page)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        match = re.search(r"\b[0-9a-fA-F]{32}\b", response.read().decode("utf-8", "replace"))
    if match is None:
        raise RuntimeError(f"no MD5 checksum found at {url}; verify the archive by hand and extract it yourself")
    return match.group(0).lower()


def fetch(url: str, dest: Path, md5: str, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with an HTTP Range request; verify its MD5.

    A server that ignores the Range header (status 200) restarts the file from the beginning. On a checksum
    mismatch the partial file is deleted (so the next call starts afresh) and a ``RuntimeError`` is raised.
    ``progress`` shows a byte counter (tqdm).
    """
    if dest.exists() and file_md5(dest) == md5:
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: the .part already holds every byte
            raise
    else:
        with response:
            start = offset if response.status == 206 else 0
            total = int(response.headers.get("Content-Length") or 0) + start
            with open(part, "ab" if start else "wb") as f, tqdm(
                total=total or None, initial=start, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    got = file_md5(part)
    if got != md5:
        part.unlink()
        raise RuntimeError(f"checksum mismatch for {url}: expected MD5 {md5}, got {got}; the partial file was "
                           "deleted, run the download again")
    part.replace(dest)
    return dest


def extract(archive: Path, top: str, root: Path) -> Path:
    """Extract a tar archive whose top folder is ``top`` and move that folder to ``root``."""
    staging = root.parent / f".extract-{root.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    if not (staging / top).is_dir():
        raise RuntimeError(f"{archive} does not contain the folder {top!r}; is it the right archive?")
    if root.is_dir():
        root.rmdir()  # download() only extracts into a missing or empty root
    (staging / top).replace(root)
    shutil.rmtree(staging)
    return root


def download(name: str, root: str | Path | None = None, keep_archive: bool = False, progress: bool = True) -> Path:
    """Download, verify and extract dataset ``name`` into ``root`` (default :func:`default_root`); return ``root``.

    Nothing is fetched when ``root`` already holds the extracted dataset. Only ``cub`` and ``aircraft`` have a
    stable archive; the others raise :class:`ManualDownloadRequired`.
    """
    given = root is not None
    root = Path(root).expanduser() if root is not None else default_root(name)
    if name not in ARCHIVES:
        raise ManualDownloadRequired(f"{name} cannot be downloaded automatically. {how_to_get(name, root)}")
    spec = ARCHIVES[name]
    if (root / spec.marker).exists():
        return root
    if root.is_dir() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists but does not hold {spec.marker}; nothing was downloaded. Remove it "
                              f"or pass another root (an empty or missing folder)")
    usable_directory(root.parent, "the parameter root of download" if given else "FGSSL_DATA")
    md5 = spec.md5 or published_md5(str(spec.md5_url))
    archive = fetch(spec.url, root.parent / spec.filename, md5, progress)
    extract(archive, spec.top, root)
    if not keep_archive:
        archive.unlink()
    return root

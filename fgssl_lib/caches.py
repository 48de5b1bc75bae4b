"""The folders fgssl writes to, and derived data on disk that is never trusted blindly.

Folders: :func:`usable_directory` creates a folder or raises one :class:`UnusableDirectoryError` that names it and
the setting that chose it (``FGSSL_RUNS``, ``FGSSL_CACHE``, ``FGSSL_DATA``, a parameter); :func:`writing` turns a
write that fails (a full disk, a read-only folder) into the same message and removes the partial file.

Derived data (the training store, saliency maps, features, rendered splits) is rebuilt from the data whenever it
cannot be trusted, with a one-line warning that names it:

- a directory entry (:func:`atomic_directory`) is built in a temporary folder whose completeness marker
  :data:`COMPLETE` (the format version and every file's size) is written last, then renamed into place;
  :func:`entry_problem` says why an entry is partial, damaged or of another format;
- a single file (:func:`save_file` / :func:`load_file`) holds its format version next to its payload and is
  renamed into place once written whole (torch's zip archive ends with its directory, so a cut file is refused);
- temporary folders and files carry their writer's host and process id (:func:`temporary_name`), so the leftovers
  of a killed write are removed by the next writer (:func:`remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

COMPLETE = "complete.json"
"""The completeness marker of a directory entry: ``{"format": version, "files": {name: bytes}}``, written last."""
_SEP = "~"
"""Separates the parts of a temporary name: ``.<name>~<host>~<pid>~<random>``."""
STALE_SECONDS = 24 * 3600
"""A temporary entry of another host (a shared Drive folder) is a leftover once it is this old."""
_LEGACY = re.compile(r"^\..+-[0-9a-f]{20}-[a-z0-9_]{8}$"  # store and saliency folders
                     r"|^features-[0-9a-f]{20}\.pt[a-z0-9_]{8}\.tmp$"  # feature files
                     r"|^(synthetic|coarse)-.+-[0-9a-f]{16}\.\d+\.tmp$")  # rendered splits
"""Temporary entries of fgssl before :func:`temporary_name`: store and saliency folders, feature and render files."""


class UnusableDirectoryError(OSError):
    """A folder fgssl must write to is a file, cannot be created or written, or is full."""


def cache_root(kind: str = "saliency") -> Path:
    """``$FGSSL_CACHE/<kind>`` if the variable is set, else ``~/.cache/fgssl/<kind>``."""
    base = os.environ.get("FGSSL_CACHE")
    return Path(base).expanduser() / kind if base else Path("~/.cache/fgssl").expanduser() / kind


def cache_folder(kind: str, root: str | os.PathLike | None, parameter: str) -> tuple[Path, str]:
    """The folder of a cache of ``kind`` and the setting that chose it: ``root`` (given as ``parameter``), else
    :func:`cache_root`, chosen by ``FGSSL_CACHE``."""
    if root is not None:
        return Path(root).expanduser(), f"the parameter {parameter}"
    return cache_root(kind), "FGSSL_CACHE" if os.environ.get("FGSSL_CACHE") else "FGSSL_CACHE (unset: ~/.cache/fgssl)"


def _reason(error: BaseException) -> str:
    """What went wrong with a folder, in a user's words."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if code == errno.EROFS:
        return "the file system is read-only"
    if isinstance(error, PermissionError):
        return "no permission to write there"
    if isinstance(error, RuntimeError):  # torch's zip writer (_is_write_error)
        return "the write failed (is the disk full?)"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def unusable(folder: Path, setting: str, reason: str) -> UnusableDirectoryError:
    """The one message for a folder fgssl cannot use: which, why, and what chose it."""
    return UnusableDirectoryError(f"cannot write to {folder}: {reason}. It is set by {setting}: point it at a "
                                  "writable folder with free space, or free some space")


def usable_directory(folder: str | os.PathLike, setting: str, create: bool = True) -> Path:
    """``folder``, created if missing (``create``; else only its nearest existing parent is checked);
    :class:`UnusableDirectoryError` naming it and ``setting`` if it is a file, cannot be created or is not
    writable."""
    folder = Path(folder).expanduser()
    existing = folder if create else next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not existing.is_dir():
            raise NotADirectoryError(existing)
    except (FileExistsError, NotADirectoryError) as error:
        in_way = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise unusable(folder, setting, f"{in_way} is a file, not a folder") from error
    except OSError as error:
        raise unusable(folder, setting, _reason(error)) from error
    if not os.access(existing, os.W_OK | os.X_OK):
        raise unusable(folder, setting, "it is not writable (read-only)")
    return folder


def _is_write_error(error: BaseException) -> bool:
    """Whether ``error`` is a failed write: an ``OSError``, or torch's zip writer failing (``inline_container``)."""
    return isinstance(error, OSError) or (isinstance(error, RuntimeError) and any(
        text in str(error) for text in ("inline_container", "PytorchStreamWriter", "file write failed")))


@contextlib.contextmanager
def writing(folder: Path, setting: str, *partial: Path) -> Iterator[None]:
    """Run a write into ``folder``; if it fails as a write (full disk, read-only), remove the ``partial`` files
    and raise :class:`UnusableDirectoryError` naming ``folder`` and ``setting``."""
    try:
        yield
    except BaseException as error:
        for path in partial:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if isinstance(error, UnusableDirectoryError) or not _is_write_error(error):
            raise
        raise unusable(folder, setting, _reason(error)) from error


def temporary_name(name: str) -> str:
    """The prefix of a temporary sibling of ``name``: ``.<name>~<host>~<pid>~`` (:func:`remove_leftovers`)."""
    return _SEP.join((f".{name}", socket.gethostname().replace(_SEP, "-"), str(os.getpid()), ""))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary entries in ``folder`` of writers that were killed: of this host whose process is gone,
    of another host (or of an older fgssl, :data:`_LEGACY`) once :data:`STALE_SECONDS` old."""
    if not folder.is_dir():
        return
    host = socket.gethostname().replace(_SEP, "-")
    for path in folder.iterdir():
        parts = path.name.split(_SEP)
        ours = path.name.startswith(".") and len(parts) == 4
        try:
            if ours and parts[1] == host:
                stale = not _alive(int(parts[2]))
            else:
                stale = (ours or _LEGACY.match(path.name) is not None) and (
                    time.time() - path.stat().st_mtime > STALE_SECONDS)
        except (OSError, ValueError):
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def entry_problem(path: Path, version: int) -> str | None:
    """Why the directory entry ``path`` cannot be trusted (no :data:`COMPLETE` marker, another format, a file of
    another size than written), or ``None`` when it is whole."""
    try:
        info = json.loads((path / COMPLETE).read_text())
        files, written = info["files"], info["format"]
    except FileNotFoundError:
        return "it has no completeness marker: its write did not finish, or an older fgssl wrote it"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {COMPLETE} is damaged"
    if written != version:
        return f"it has format {written}, this fgssl reads format {version}"
    for name, size in files.items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            return f"{name} is {'missing' if actual is None else f'{actual} bytes'}, {size} bytes were written"
    return None


def trusted(path: Path, version: int, what: str) -> bool:
    """Whether the entry ``path`` exists and is whole; a partial, damaged or old-format one is removed with a
    one-line warning naming it (``what``: e.g. "training store"), to be rebuilt."""
    if not path.exists():
        return False
    problem = entry_problem(path, version)
    if problem is None:
        return True
    warnings.warn(f"rebuilding the {what} {path}: {problem}", RuntimeWarning, stacklevel=3)
    shutil.rmtree(path, ignore_errors=True)
    return False


@contextlib.contextmanager
def atomic_directory(path: Path, version: int, setting: str) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``path``; when the block succeeds, write the :data:`COMPLETE` marker
    (format ``version``, every file's size) and rename the folder to ``path``.

    Readers never see a half-written entry. A concurrent writer that finished first wins; the temporary folder is
    removed in every case, and a write that fails for want of space or permission raises
    :class:`UnusableDirectoryError` naming the cache folder and ``setting``.
    """
    usable_directory(path.parent, setting)
    remove_leftovers(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_name(path.name), dir=path.parent))
    try:
        with writing(path.parent, setting, tmp):
            yield tmp
            sizes = {p.name: p.stat().st_size for p in tmp.iterdir()}
            (tmp / COMPLETE).write_text(json.dumps({"format": version, "files": sizes}, sort_keys=True))
            try:
                os.rename(tmp, path)
            except OSError:
                if entry_problem(path, version) is None:  # a concurrent writer that finished first
                    return
                shutil.rmtree(path, ignore_errors=True)  # a damaged entry in the way
                os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_file(payload: Any, path: Path, version: int, setting: str) -> None:
    """``torch.save`` ``payload`` with its format ``version`` to ``path``: written to a temporary sibling, then
    renamed; a failed write leaves no file behind and names the folder and ``setting``."""
    usable_directory(path.parent, setting)
    remove_leftovers(path.parent)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path.name), suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        with writing(path.parent, setting, tmp):
            torch.save({"format": version, "payload": payload}, tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_file(path: Path, version: int, what: str) -> Any:
    """The payload :func:`save_file` wrote to ``path`` (read with ``weights_only=True``), or ``None`` when there is
    none; a cut, damaged or old-format file is removed with a one-line warning naming it, to be rebuilt."""
    if not path.is_file():
        return None
    problem = None
    if not zipfile.is_zipfile(path):
        problem = "it is cut short or not a torch file"
    else:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file is rebuilt; it holds derived data only
            problem = f"it cannot be read ({type(error).__name__})"
        else:
            if isinstance(saved, dict) and saved.get("format") == version and "payload" in saved:
                return saved["payload"]
            found = saved.get("format") if isinstance(saved, dict) else None
            problem = f"it has format {found}, this fgssl reads format {version}"
    warnings.warn(f"rebuilding the {what} {path}: {problem}", RuntimeWarning, stacklevel=3)
    path.unlink(missing_ok=True)
    return None

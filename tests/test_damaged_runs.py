"""A damaged or incomplete run on disk is named with what to do: a 0-byte or random-bytes checkpoint, a damaged
``done.json``, a finished run without its ``last.ckpt``, ``reproduce --out`` at a file."""

from __future__ import annotations

import io
import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from fgssl_lib.runs import train_or_load
from fgssl_lib.reproduce import main as reproduce
from fgssl_lib.train import TrainConfig, load_method
from fgssl_lib.train.fit import DamagedCheckpointError


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, Path]:
    config = TrainConfig.preset("smoke", method="byol", max_steps=1, collapse_every=1)
    root = tmp_path_factory.mktemp("runs")
    return config, train_or_load(config, root=root).path


@pytest.fixture
def run(finished: tuple[TrainConfig, Path], tmp_path: Path) -> tuple[TrainConfig, Path]:
    """A copy of the finished run, free to damage."""
    config, path = finished
    shutil.copytree(path.parent, tmp_path / "runs")
    return config, tmp_path / "runs" / path.name


def _zip_without_records(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/version", "3")
    return buffer.getvalue()


NOT_ZIP = "not the zip archive torch.save writes"


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda data: b"", f"0 bytes; {NOT_ZIP}"),
    *[(lambda data, seed=seed: random.Random(seed).randbytes(4096), f"4096 bytes; {NOT_ZIP}") for seed in range(3)],
    (lambda data: data[: len(data) // 2], rf"\d+ bytes; {NOT_ZIP}"),
    (_zip_without_records, r"\d+ bytes; RuntimeError: PytorchStreamReader failed locating file data.pkl"),
])
def test_a_damaged_checkpoint_says_delete_or_retrain(run: tuple[TrainConfig, Path], damage: Callable[[bytes], bytes],
                                                     reason: str) -> None:
    config, path = run
    (path / "last.ckpt").write_bytes(damage((path / "last.ckpt").read_bytes()))
    for load in (lambda: load_method(path / "last.ckpt"), lambda: train_or_load(config, root=path.parent)):
        with pytest.raises(DamagedCheckpointError, match=f"is damaged \\({reason}.*retrain=True") as error:
            load()
        assert "weights_only=False" not in str(error.value)
    (path / "done.json").unlink()  # killed before done.json: the resume reads it too
    with pytest.raises(DamagedCheckpointError, match="delete it and train again"):
        train_or_load(config, root=path.parent)
    assert train_or_load(config, root=path.parent, retrain=True).train_seconds > 0


@pytest.mark.parametrize("content", ["{not json", '{"config": {}}', '["a list"]'])
def test_a_damaged_done_json_says_retrain(run: tuple[TrainConfig, Path], content: str) -> None:
    config, path = run
    (path / "done.json").write_text(content)
    with pytest.raises(ValueError, match=r"done.json is damaged .*retrain=True"):
        train_or_load(config, root=path.parent)


def test_a_finished_run_without_its_checkpoint_says_retrain(run: tuple[TrainConfig, Path]) -> None:
    config, path = run
    (path / "last.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"finished run .* has no last.ckpt .*retrain=True"):
        train_or_load(config, root=path.parent)


@pytest.mark.parametrize("below", ["", "sub"])
def test_reproduce_out_at_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], below: str) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_:
        reproduce(["--preset", "smoke", "--out", str(tmp_path / "file" / below)])
    assert exit_.value.code != 0
    assert f"{tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


def test_a_checkpoint_of_another_fgssl_version_says_retrain(run: tuple[TrainConfig, Path]) -> None:
    import torch

    _, path = run
    checkpoint = torch.load(path / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["detach_gradcam"] = True  # an option an older LCR had
    torch.save(checkpoint, path / "last.ckpt")
    with pytest.raises(ValueError, match="written by another version of fgssl.*retrain=True"):
        load_method(path / "last.ckpt")

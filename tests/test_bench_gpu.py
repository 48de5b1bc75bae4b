"""``python -m fgssl_lib.bench gpu --tiny``: every default method trains through ``fit`` on a CPU and is measured;
a failing method makes the command exit non-zero and is named, the others are still measured."""

from __future__ import annotations

import re

import pytest

from fgssl_lib.bench import gpu
from fgssl_lib.bench.__main__ import main as bench_main

LINE = re.compile(r"method (\S+) \S+ batch 8 32-true: step [\d.]+ ms, [\d.]+ images/s, peak -?\d+ MiB, "
                  r"waiting for data (\d+) % \(\d+ workers, (batched|per_sample) views\)")


@pytest.mark.slow
def test_tiny_measures_every_method_through_fit(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["gpu", "--tiny"]) == 0
    printed = capsys.readouterr().out
    lines = [LINE.fullmatch(line) for line in printed.splitlines() if line.startswith("method ")]
    assert all(lines), printed
    assert [m.group(1) for m in lines] == list(gpu.METHODS)
    assert all(0 <= int(m.group(2)) <= 100 for m in lines)


def test_a_method_that_fails_in_its_process_is_named_and_the_exit_is_non_zero(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main(["--tiny", "--methods", "byol", "--precision", "fp8"]) == 1
    printed = capsys.readouterr()
    assert "method byol FAILED" in printed.out
    assert "FAILED: byol" in printed.err and "precision" in printed.err


def test_the_other_methods_are_still_measured_after_a_failure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def fake(name: str, args: object) -> dict[str, object]:
        if name == "cvsa":
            raise RuntimeError("exit 1: RuntimeError: CUDA out of memory")
        return {"backbone": "resnet50", "batch": 8, "precision": "bf16-mixed", "step_ms": 1.0, "images_per_s": 2.0,
                "peak_mib": 3.0, "data_wait": 0.5, "workers": 2, "views": "batched"}

    monkeypatch.setattr(gpu, "run_method", fake)
    assert gpu.main(["--tiny", "--methods", "byol", "cvsa", "lcr"]) == 1
    printed = capsys.readouterr()
    assert [line.split()[1] for line in printed.out.splitlines() if line.startswith("method")] == ["byol", "cvsa",
                                                                                                    "lcr"]
    assert "method cvsa FAILED: exit 1: RuntimeError: CUDA out of memory" in printed.out
    assert "bench gpu: FAILED: cvsa" in printed.err

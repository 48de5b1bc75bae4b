"""``python -m fgssl_lib.bench layout --tiny``: the channels_last and NCHW backbones take the same step."""

from __future__ import annotations

import re

import pytest
import torch

from fgssl_lib.bench import layout
from fgssl_lib.bench.__main__ import main as bench_main
from fgssl_lib.models.backbones import Backbone

LINE = re.compile(r"layout (\S+) contiguous_ms=([\d.]+) channels_last_ms=([\d.]+) speedup=([\d.]+) "
                  r"first_loss_gap=([\d.e+-]+)")


@pytest.mark.slow
def test_tiny_prints_one_line_per_method_with_equal_losses(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["layout", "--tiny"]) == 0
    lines = [LINE.fullmatch(line) for line in capsys.readouterr().out.splitlines() if line.startswith("layout ")]
    assert all(lines) and [m.group(1) for m in lines] == list(layout.METHODS)
    for m in lines:
        contiguous, channels_last, speedup, gap = (float(v) for v in m.groups()[1:])
        # the printed times carry 0.05 ms of rounding each and the speedup 0.005: the ratio of the printed times
        # lies within those bounds of the speedup printed
        low, high = (contiguous - 0.05) / (channels_last + 0.05), (contiguous + 0.05) / (channels_last - 0.05)
        assert low - 0.005 <= speedup <= high + 0.005
        assert gap < 1e-4


def test_the_nchw_runner_switches_every_backbone_of_a_momentum_method() -> None:
    parser_args = layout.argparse.Namespace(preset="smoke", backbone=None, size=None, batch=4)
    pair = layout.runners("byol", parser_args, torch.device("cpu"))
    formats = {name: {m.memory_format for m in runner.method.modules() if isinstance(m, Backbone)}
               for name, runner in pair.items()}
    assert formats == {"contiguous": {torch.contiguous_format}, "channels_last": {torch.channels_last}}
    assert sum(isinstance(m, Backbone) for m in pair["contiguous"].method.modules()) == 2

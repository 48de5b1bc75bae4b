"""``python -m fgssl_lib.bench methods``: training-step time and peak memory of BYOL, BYOL+SS, CVSA, MoCo v2 and LCR.

Every method is built as the trainer builds it for ``--preset`` (default ``cpu``: its backbone, image size, stem and
head sizes), on the same backbone, input size and batch (default 64; ``--backbone resnet18 --size 224`` for the
papers' input), with random views and box masks. One training
step is what Lightning runs: the EMA update, :meth:`~fgssl_lib.methods.base.SSLMethod.losses`, ``backward`` and an
SGD step. Time: all methods are built in one process and, after ``--warmup`` steps each, timed step by step in
rotating order (the machine is shared and noisy: interleaving exposes every method to the same load), median over
``--steps`` steps. Memory: each method in a fresh subprocess (so nothing is shared or reused), over
``--memory-steps`` steps:

- CUDA: ``torch.cuda.max_memory_allocated`` during the steps, minus what was allocated before the first step;
- CPU: the growth of the process's peak resident set size (``resource.getrusage(...).ru_maxrss``) from just before the
  first step to the end (activations, gradients, optimizer state). ``tracemalloc`` does not see torch's allocations.

Prints ``method <name> <ms/step> ms <peak> MiB time_ratio=<x.xx> mem_ratio=<y.yy>`` per method, the ratio
taken against the family's base (BYOL for BYOL+SS and CVSA, MoCo v2 for LCR). Targets: CVSA/BYOL <= 1.15 and
LCR/MoCo v2 <= 1.10 in time and memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

from fgssl_lib.config import PRESETS, resolve_device
from fgssl_lib.methods import MomentumMethod
from fgssl_lib.models import small_input_stem
from fgssl_lib.train import TrainConfig, build_method

BASES = {"byol": "byol", "byol_ss": "byol", "cvsa": "byol", "mocov2": "mocov2", "lcr": "mocov2"}
"""Benchmarked methods and the base each ratio is taken against."""
TARGETS = {"cvsa": 1.15, "lcr": 1.10}


def _batch(batch: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random views in [0, 1] and a centred box mask covering a quarter of each view."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(batch, size, size)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    cpu = dict(
        view1=torch.rand(batch, 3, size, size, generator=generator),
        view2=torch.rand(batch, 3, size, size, generator=generator),
        mask1=mask,
        mask2=mask.clone(),
        label=torch.zeros(batch, dtype=torch.long),
        index=torch.arange(batch),
    )
    return {name: value.to(device) for name, value in cpu.items()}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def bench_config(name: str, args: argparse.Namespace) -> TrainConfig:
    """The preset's configuration of method ``name`` with the command line's backbone, size and batch (default the
    preset's whole batch, also where a GPU would accumulate it)."""
    overrides = {key: value for key, value in
                 (("backbone", args.backbone), ("image_size", args.size), ("batch_size", args.batch)) if value}
    config = TrainConfig.preset(args.preset, method=name, **overrides)
    return config if config.batch_size != "auto" else replace(config, batch_size=config.effective_batch())


class StepRunner:
    """One method (built as the trainer builds it) with an SGD optimizer and a fixed batch; a call is one step."""

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        torch.manual_seed(0)
        self.method = build_method(config).to(device).train()
        params = [p for p in self.method.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        self.data = _batch(config.batch_size, config.image_size, device)
        self.device = device

    def __call__(self) -> None:
        if isinstance(self.method, MomentumMethod):
            self.method.update_momentum()
        loss = self.method.losses(self.data)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def step_times(runners: dict[str, StepRunner], steps: int, warmup: int) -> dict[str, float]:
    """Median ms per step of every runner, the runners interleaved step by step (their order rotates every step)."""
    for runner in runners.values():
        for _ in range(warmup):
            runner()
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(steps):
        for name in names[index % len(names):] + names[: index % len(names)]:
            start = time.perf_counter()
            runners[name]()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory(runner: StepRunner, steps: int) -> float:
    """Extra memory (MiB) at the peak of ``steps`` training steps over what was in use before the first."""
    device = runner.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = peak_rss_mib()
    for _ in range(steps):
        runner()
    after = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()
    return after - before


def _memory_in_subprocess(name: str, args: argparse.Namespace) -> float:
    command = [sys.executable, "-m", "fgssl_lib.bench", "methods", "--one", name, "--preset", args.preset,
               "--device", args.device, "--memory-steps", str(args.memory_steps)]
    for option, value in (("--backbone", args.backbone), ("--size", args.size), ("--batch", args.batch)):
        if value:
            command += [option, str(value)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"measuring the memory of {name} failed:\n{result.stderr[-3000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["mib"])


def step_parser(area: str, doc: str | None, steps: int) -> argparse.ArgumentParser:
    """The options of a :class:`StepRunner` benchmark (``bench <area>``): preset, backbone, size, batch, timed and
    warm-up steps, device; each area adds its own."""
    parser = argparse.ArgumentParser(prog=f"python -m fgssl_lib.bench {area}", description=(doc or "").splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=PRESETS, help="heads, backbone and size (default cpu)")
    parser.add_argument("--backbone", default=None, help="backbone name (default: the preset's)")
    parser.add_argument("--size", type=int, default=None, help="view size in px (default: the preset's)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per runner (median), interleaved")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per runner before them")
    parser.add_argument("--device", default="auto")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("methods", __doc__, steps=15)
    parser.add_argument("--memory-steps", type=int, default=2, help="training steps of each memory measurement")
    parser.add_argument("--methods", nargs="+", default=list(BASES), choices=list(BASES))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: memory of one method, as JSON
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    args.device = str(device)
    if args.one is not None:
        runner = StepRunner(bench_config(args.one, args), device)
        print(json.dumps({"mib": peak_memory(runner, args.memory_steps)}))
        return 0

    names = list(dict.fromkeys([BASES[name] for name in args.methods] + args.methods))  # bases first
    mib = {name: _memory_in_subprocess(name, args) for name in names}  # each in a fresh process
    configs = {name: bench_config(name, args) for name in names}
    runners = {name: StepRunner(config, device) for name, config in configs.items()}
    ms = step_times(runners, args.steps, args.warmup)
    config = configs[names[0]]
    stem = small_input_stem(config.image_size)
    print(f"# preset={args.preset} backbone={config.backbone} size={config.image_size} small_input={stem['small_input']} "
          f"batch={config.batch_size} device={device} steps={args.steps}; targets (time and memory): "
          + ", ".join(f"{name}/{BASES[name]} <= {limit:.2f}" for name, limit in TARGETS.items()))
    for name in args.methods:
        base = BASES[name]
        time_ratio, mem_ratio = ms[name] / ms[base], mib[name] / max(mib[base], 1e-9)
        print(f"method {name} {ms[name]:.1f} ms {mib[name]:.1f} MiB time_ratio={time_ratio:.2f} "
              f"mem_ratio={mem_ratio:.2f}")
    return 0

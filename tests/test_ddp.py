"""DDP on a CPU (two gloo processes, Lightning's subprocess launcher): ``train_or_load`` must finish (its run lock
used to deadlock: rank 1 re-runs the script, waits for the lock that rank 0 holds while rank 0 waits for rank 1), and
MoCo's queue must hold the keys of both ranks, the same on both (it used to hold each rank's own keys, and DDP's
buffer broadcast overwrote rank 1's with rank 0's)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import os, sys
    from fgssl_lib.runs import train_or_load
    from fgssl_lib.train import TrainConfig

    config = TrainConfig.preset("smoke", method=sys.argv[2], device="cpu", devices=2, strategy="ddp", max_steps=2,
                                num_images=64, batch_size=16)
    run = train_or_load(config, root=sys.argv[1])
    # one write of under PIPE_BUF bytes: both ranks share the pipe, and separate writes would interleave
    os.write(1, f"rank {os.environ.get('LOCAL_RANK', '0')} finished {run.path.name}\\n".encode())
""")


def launch(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as Lightning's DDP launcher runs it (rank 0 here, rank 1 spawned), with no rank variables
    inherited and a free port of its own (two DDP tests at once under ``pytest -n 2`` must not meet on Lightning's
    default port); fails the test if it hangs."""
    path = tmp_path / "train.py"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        env["MASTER_ADDR"], env["MASTER_PORT"] = "127.0.0.1", str(free.getsockname()[1])
    try:
        done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=180,
                              env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"DDP run hung (deadlock?): {error.stdout}{error.stderr}")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.parametrize("method", ["byol", "lcr"])
def test_train_or_load_finishes_under_ddp_on_two_gloo_processes(tmp_path: Path, method: str) -> None:
    done = launch(tmp_path, SCRIPT, str(tmp_path / "runs"), method)
    finished = sorted(line.split()[1] for line in done.stdout.splitlines() if line.startswith("rank"))
    assert finished == ["0", "1"], done.stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "done.json").read_text())["train_seconds"] > 0  # written once, by rank 0
    assert (run / "last.ckpt").is_file() and not (run / "last.ckpt.tmp").exists()


QUEUE_SCRIPT = textwrap.dedent("""
    import sys
    import pytorch_lightning as pl
    import torch
    from fgssl_lib.train import TrainConfig, fit

    class RecordQueue(pl.Callback):
        \"\"\"Each rank saves, after every step, its queue and the (normalised) keys it enqueued.\"\"\"
        def __init__(self):
            self.keys, self.states = [], []

        def on_train_start(self, trainer, method):
            bank = method.criterion.memory_bank
            forward = bank.forward
            def recording(output, *args, **kwargs):
                self.keys.append(output.detach().clone())
                return forward(output, *args, **kwargs)
            bank.forward = recording

        def on_train_batch_end(self, trainer, method, *args):
            bank = method.criterion.memory_bank
            self.states.append({"bank": bank.bank.detach().clone(), "ptr": int(bank.bank_ptr)})

        def on_train_end(self, trainer, method):
            torch.save({"keys": self.keys, "states": self.states}, f"{sys.argv[1]}/queue_rank{trainer.global_rank}.pt")

    config = TrainConfig.preset("smoke", method=sys.argv[2], device="cpu", devices=2, strategy="ddp", max_steps=2,
                                num_images=64, batch_size=8, checkpoint_dir=sys.argv[1] + "/run",
                                method_options={"queue_size": 64})
    fit(config, callbacks=[RecordQueue()])
""")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mocov2", "lcr"])
def test_moco_queue_holds_the_keys_of_both_ranks_and_is_the_same_on_both(tmp_path: Path, method: str) -> None:
    launch(tmp_path, QUEUE_SCRIPT, str(tmp_path), method)
    ranks = [torch.load(tmp_path / f"queue_rank{r}.pt", weights_only=True) for r in (0, 1)]
    steps = len(ranks[0]["states"])
    assert steps == 2 and len(ranks[0]["keys"]) == len(ranks[1]["keys"]) == steps
    per_rank = ranks[0]["keys"][0].shape[0]  # 8
    for step in range(steps):
        state0, state1 = (rank["states"][step] for rank in ranks)
        torch.testing.assert_close(state0["bank"], state1["bank"], rtol=0, atol=0)
        assert state0["ptr"] == state1["ptr"] == 2 * per_rank * (step + 1)
        start = 2 * per_rank * step  # this step's keys: rank 0's, then rank 1's
        for r, rank in enumerate(ranks):
            rows = slice(start + r * per_rank, start + (r + 1) * per_rank)
            torch.testing.assert_close(state0["bank"][rows], rank["keys"][step])


DEVICES_SCRIPT = textwrap.dedent("""
    import json, sys
    import pytorch_lightning as pl
    import torch
    from fgssl_lib.train import TrainConfig, fit

    class Record(pl.Callback):
        \"\"\"Each rank writes what it trained with: micro-batch sizes, the learning rate of the first step, optimizer
        steps, and the per-channel mean of the stem's BatchNorm output over its own micro-batch in the first step.\"\"\"
        def __init__(self):
            self.sizes, self.lr, self.bn_means = [], None, []

        def on_train_start(self, trainer, method):
            bn = method.backbone.bn1 if hasattr(method.backbone, "bn1") else next(
                m for m in method.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
            self.bn_type = type(bn).__name__
            bn.register_forward_hook(lambda module, inputs, output: self.bn_means.append(
                output.detach().float().mean(dim=(0, 2, 3)).abs().max().item()))

        def on_train_batch_start(self, trainer, method, batch, batch_idx):
            self.sizes.append(batch["view1"].shape[0])
            if self.lr is None:
                self.lr = trainer.optimizers[0].param_groups[0]["lr"]

        def on_train_end(self, trainer, method):
            out = {"sizes": self.sizes, "lr": self.lr, "steps": trainer.global_step, "bn_type": self.bn_type,
                   "bn_mean": self.bn_means[0], "world": trainer.world_size,
                   "accumulate": trainer.accumulate_grad_batches}
            with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
                json.dump(out, f)

    config = TrainConfig.preset("smoke", method=sys.argv[2], device="cpu", devices=2, strategy="ddp", num_images=64,
                                batch_size=8, effective_batch_size=16, lr=0.05, checkpoint_dir=sys.argv[1] + "/run",
                                view_pipeline="per_sample")
    fit(config, callbacks=[Record()])
""")


@pytest.mark.slow
def test_batch_size_is_per_device_the_lr_is_not_scaled_and_batchnorm_normalises_each_devices_batch(
        tmp_path: Path) -> None:
    """Two gloo processes, micro-batches of 8 accumulated to 16 on each: every rank trains on its own micro-batches of
    8 (32 of the 64 images: 4 micro-batches, 2 optimizer steps), at the configured lr for a global batch of 32, and
    its BatchNorm normalises its own micro-batch (per channel, the stem's output averages to 0 over it)."""
    launch(tmp_path, DEVICES_SCRIPT, str(tmp_path), "byol")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["world"] == 2 and rank["sizes"] == [8, 8, 8, 8] and rank["accumulate"] == 2
        assert rank["steps"] == 2 and rank["lr"] == pytest.approx(0.05)
        assert rank["bn_type"] == "BatchNorm2d" and rank["bn_mean"] < 1e-4

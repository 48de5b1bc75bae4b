"""DDP on a CPU (two gloo processes, Lightning's subprocess launcher): ``train_or_load`` must finish. Its run lock
used to deadlock: rank 1 re-runs the script, waits for the lock that rank 0 holds while rank 0 waits for rank 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import os, sys
    from fgssl_lib.experiment import train_or_load
    from fgssl_lib.train import TrainConfig

    config = TrainConfig.preset("smoke", method=sys.argv[2], device="cpu", devices=2, strategy="ddp", max_steps=2,
                                num_images=64, batch_size=16)
    run = train_or_load(config, root=sys.argv[1])
    print("rank", os.environ.get("LOCAL_RANK", "0"), "finished", run.path.name, flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["byol", "lcr"])
def test_train_or_load_finishes_under_ddp_on_two_gloo_processes(tmp_path: Path, method: str) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    try:
        done = subprocess.run([sys.executable, str(script), str(tmp_path / "runs"), method], capture_output=True,
                              text=True, timeout=180, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"DDP train_or_load hung (deadlock?): {error.stdout}{error.stderr}")
    assert done.returncode == 0, done.stderr[-3000:]
    finished = sorted(line.split()[1] for line in done.stdout.splitlines() if line.startswith("rank"))
    assert finished == ["0", "1"], done.stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "done.json").read_text())["train_seconds"] > 0  # written once, by rank 0
    assert (run / "last.ckpt").is_file() and not (run / "last.ckpt.tmp").exists()

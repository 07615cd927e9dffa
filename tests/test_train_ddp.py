"""DDP: ``torchrun --nproc-per-node 2`` (gloo, CPU) trains to the same weights as one process with the same
global batch (within float tolerance: only the gradient summation order differs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from clipscore_sr.baselines.trainer import Trainer, load_train_state

from .train_support import make_config, make_s2naip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLIPSCORE_SR_OFFLINE", "1")
    data = make_s2naip(tmp_path / "data", n=6)
    extra = dict(data={"val_fraction": 0.3}, train={"steps": 4, "batch_size": 4, "checkpoint_interval": 2,
                                                     "grad_clip": 1.0},
                 validation={"interval": 2, "metrics": ["psnr"]})
    # 6 tiles: 2 held out, 4 for training, global batch 4 (2 per process)
    dist_cfg = make_config(tmp_path / "ddp", data, "esrgan", **extra)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(dist_cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLIPSCORE_SR_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "clipscore_sr", "train", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 4" in proc.stdout and proc.stdout.count("step 4;") == 1  # only rank 0 reports

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(make_config(tmp_path / "single", data, "esrgan", **extra)).run()
    finally:
        torch.set_num_threads(threads)
    a = load_train_state(tmp_path / "ddp" / "checkpoints" / "step_00000004.pt")
    b = load_train_state(single.checkpoint)
    assert a["world_size"] == 2 and len(a["rng"]) == 2 and b["world_size"] == 1
    for key in ("generator", "ema", "discriminator"):
        for name in b[key]:
            torch.testing.assert_close(a[key][name], b[key][name], atol=2e-5, rtol=1e-4, msg=f"{key}.{name}")
    # the weights moved far more than the tolerance between steps 2 and 4, so the comparison is not trivial
    mid = load_train_state(tmp_path / "ddp" / "checkpoints" / "step_00000002.pt")
    assert max(float((mid["generator"][k] - a["generator"][k]).abs().max()) for k in a["generator"]) > 1e-3
    la, lb = pd.read_csv(tmp_path / "ddp" / "log.csv"), pd.read_csv(single.log_path)
    assert la["step"].tolist() == lb["step"].tolist() == [0, 1, 2, 3, 4]
    for col in ("loss", "l1", "gan", "d_real", "d_fake", "val_psnr"):
        pd.testing.assert_series_equal(la[col], lb[col], check_exact=False, atol=1e-4, rtol=1e-4)

"""``torchrun -m fastnmf.distributed.demo``: launched as a user would (2 gloo ranks on 127.0.0.1), it fits
the generated X and prints the loss of a single-process run of the same X (the data do not depend on the
grid)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastnmf.distributed.local import free_port

pytestmark = pytest.mark.slow

ARGS = ["--shape", "300", "200", "--k", "4", "--beta", "1", "--max-iter", "30", "--tol", "0"]


def printed_loss(command):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    match = re.search(r"(\d+) iterations in [\d.]+ s, loss ([\d.e+-]+)", done.stdout)
    assert match, done.stdout
    return int(match.group(1)), float(match.group(2)), done.stdout


def test_torchrun_demo_on_two_ranks_matches_one_process():
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun is installed with torch"
    two = printed_loss([torchrun, "--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                        "--master-port", str(free_port()), "-m", "fastnmf.distributed.demo", *ARGS, "--grid", "1", "2"])
    one = printed_loss([sys.executable, "-m", "fastnmf.distributed.demo", *ARGS])
    assert "1×2 grid (2 ranks, gloo" in two[2] and "1×1 grid (1 ranks" in one[2]
    assert two[0] == one[0] == 30
    assert two[1] == pytest.approx(one[1], rel=1e-5)

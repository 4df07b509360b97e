"""The shipped example workloads run and say what they promise: the training loss falls and a
checkpoint is saved; the throughput run prints the renter's figure beside the listing's."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(script: Path, tmp_path: Path, **env) -> str:
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_training_example_lowers_its_loss_and_saves_a_checkpoint(tmp_path):
    out = _run(EXAMPLES / "train" / "train.py", tmp_path, EPOCHS="200")
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)\n", out)]
    assert len(losses) >= 10 and losses[-1] < losses[0] / 2
    checkpoint = np.load(tmp_path / "out" / "model.npz")
    assert checkpoint["w1"].shape == (2, 64)
    assert round(float(checkpoint["loss"]), 5) == losses[-1]


def test_the_matmul_example_prints_its_figure_beside_the_listings(tmp_path):
    out = _run(EXAMPLES / "matmul" / "matmul.py", tmp_path, N="256", VERIFIED_TFLOPS="2.5")
    measured = float(re.search(r"measured\s+([\d.]+) TFLOP/s", out).group(1))
    ratio = float(re.search(r"ratio\s+([\d.]+)", out).group(1))
    assert measured > 0 and abs(ratio - measured / 2.5) < 0.01

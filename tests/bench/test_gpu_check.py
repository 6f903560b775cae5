"""benchmarks/gpu_check.py is prepared for a GPU this machine does not have: its code paths run here
on tiny shapes in Triton's interpreter, so the one GPU run a session gets is not spent on a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, run benchmarks/gpu_check.py itself")
def test_gpu_check_runs_its_code_paths_on_tiny_shapes(tmp_path: Path) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--tiny", "--skip-correctness"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [row["shape"] for row in data["timing"]] == ["vit-tiny", "sagan-tiny"]
    for row in data["timing"]:
        assert row["kernel"]["default"]["ms"] > 0
        assert row["sampled_rel_max_error"] < 2e-3  # fp16 against float64
        assert any("ms" in r for r in row["sdpa"].values())
    assert "| vit-tiny |" in (tmp_path / "gpu_check.md").read_text() and "| sagan-tiny |" in proc.stdout


def test_gpu_check_without_a_gpu_says_so(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr

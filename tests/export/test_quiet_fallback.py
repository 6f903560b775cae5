"""A model torch.export cannot trace: the FX graphs and guard warnings it prints stay off the
terminal, and the fallback to TorchScript is one clean note line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import RunCli


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.export refuses it, TorchScript tracing does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 0:
            return y.relu()
        return y.sigmoid()


def data_dependent() -> nn.Module:
    torch.manual_seed(0)
    return DataDependent().eval()


def test_dynamo_failure_is_one_clean_line(run_cli: RunCli, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    code, stdout, stderr = run_cli("export", f"{__name__}:data_dependent", "--input-shape", "1x3x16x16", "-o", out)
    printed = capfd.readouterr()
    assert code == 0, stderr
    assert json.loads(out.with_suffix(".json").read_text())["exporter"] == "torchscript"
    notes = [line for line in stderr.splitlines() if "dynamo exporter failed" in line]
    assert len(notes) == 1 and "data-dependent" in notes[0] and "\x1b" not in notes[0], stderr
    assert "def forward" not in stderr + printed.err + printed.out  # no FX graph dump anywhere
    assert len(stderr) + len(printed.err) + len(printed.out) < 2000, (stderr, printed)


def test_failure_reason_is_the_innermost_cause() -> None:
    from attn_deploy.export.exporter import _failure_reason

    try:
        try:
            raise ValueError("Could not guard on data-dependent expression u0\nmore lines")
        except ValueError as inner:
            raise RuntimeError("Failed to export. \x1b[96mThis is step 1/3\x1b[0m\nadvice") from inner
    except RuntimeError as outer:
        assert _failure_reason(outer) == "ValueError: Could not guard on data-dependent expression u0"
    assert _failure_reason(RuntimeError("\x1b[96mplain\x1b[0m")) == "plain"

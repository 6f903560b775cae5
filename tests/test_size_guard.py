"""The size guard (#17 item 6): memory is estimated before a model runs; what cannot fit is refused in one line.

``available_memory`` is pinned in each test, so the verdicts do not depend on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import attn_deploy.api as ad
from attn_deploy.runtime import size_guard
from tests.conftest import RunCli

MiB, GiB = 1 << 20, 1 << 30


def _available(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(size_guard, "available_memory", lambda: size)


def test_a_huge_export_is_refused_before_it_runs(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _available(monkeypatch, 16 * GiB)
    out = tmp_path / "out" / "big.onnx"
    result = run_cli("export", "zoo:sagan-256", "--input-shape", "1x256x2000x2000", "-o", str(out))
    result.assert_error("1x256x2000x2000")
    line = result.error_lines()[0]
    assert "needs about 42.0 GiB" in line and "16.0 GiB available" in line and "smaller --input-shape" in line, line
    assert result.stdout == "" and not out.parent.exists()


def test_an_export_says_when_its_score_matrix_would_not_fit(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _available(monkeypatch, 200 * MiB)  # the eager run (tiled attention) fits; 8 heads of 2048² floats (128 MiB) do not
    out = tmp_path / "mha.onnx"
    code, stdout, stderr = run_cli("export", "zoo:mha-encoder", "--input-shape", "1x2048x256", "-o", str(out))
    assert code == 0 and stdout == "", stderr
    assert "128.0 MiB score matrix" in stderr and "attn-deploy lower" in stderr, stderr
    notes = json.loads(out.with_suffix(".json").read_text())["notes"]
    assert any("128.0 MiB score matrix" in n for n in notes), notes


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = ad.export("zoo:sagan-256", input_shapes=[(1, 256, 16, 16)]).save(tmp_path_factory.mktemp("guard") / "s.onnx")
    return path


def test_check_refuses_a_run_that_cannot_fit(run_cli: RunCli, small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _available(monkeypatch, 256 << 10)
    result = run_cli("check", str(small), str(small), "--backends", "ort", "--json")
    result.assert_error("in ONNX Runtime needs about")
    assert "attn-deploy lower" in result.stderr and result.stdout == ""
    result = run_cli("check", "zoo:sagan-256", str(small), "--backends", "torch,ort")
    result.assert_error("in PyTorch at 1x256x16x16 needs about")


def test_check_warns_near_the_limit(run_cli: RunCli, small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    estimate = size_guard.ort_peak_bytes(ad.load(small))
    assert estimate is not None and estimate > 0
    _available(monkeypatch, int(estimate * 1.5))
    code, stdout, stderr = run_cli("check", str(small), str(small), "--backends", "ort", "--json")
    assert code == 0, stderr
    assert any("needs about" in n for n in json.loads(stdout)["notes"])
    _available(monkeypatch, estimate * 3)
    code, stdout, stderr = run_cli("check", str(small), str(small), "--backends", "ort", "--json")
    assert code == 0 and json.loads(stdout)["notes"] == [], stderr


def test_the_body_is_blocked_the_eager_matrix_is_not() -> None:
    """SAGAN at 2000x2000: the score matrix is 58 TiB; the FusedAttention body holds Q, K, V, O and a few blocks."""
    from attn_deploy.artifact.sites import AttentionSite
    from attn_deploy.fuse.render import format_bytes
    from attn_deploy.ops.contract import DOMAIN, OP_TYPE

    n = 2000 * 2000
    site = AttentionSite(name="a", inputs=("q", "k", "v"), output="o", B=1, H=1, Nq=n, Nk=n, dk=32, dv=256, scale=1.0,
                         has_bias=False, index=0, op_type=OP_TYPE, domain=DOMAIN, dtype="float32", bias_is_zero=False)
    assert format_bytes(size_guard.materialised_bytes(site)) == "58.2 TiB"
    body = size_guard.body_bytes(site)
    qkvo = 4 * n * (32 + 32 + 256 + 256)
    assert body is not None and qkvo < body < qkvo + 6 * 4 * 64 * n  # blocks of 2 rows: 8 Mi elements / 4e6 keys

"""Killed at any point (SIGKILL or SIGTERM), ``export`` and ``quantize`` leave whole pairs: every
model beside the manifest that describes it (sha256), and nothing in $TMPDIR (#17 kill test).

Each child gets a fresh $TMPDIR and an output folder that already holds an older pair, so a kill
during the write must leave the old pair or the new one, never a mix. Kill times are drawn
(seeded) over the length of a whole run, measured first; children run two at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import attn_deploy.api as ad

REPO = Path(__file__).resolve().parents[1]
KILLS_PER_SIGNAL = 20  # per signal, over both commands


def _pairs_are_whole(folder: Path, after: signal.Signals) -> None:
    names = [p.name for p in folder.iterdir()]
    visible = sorted(n for n in names if not n.startswith("."))
    models = [n for n in visible if n.endswith(".onnx")]
    assert sorted(visible) == sorted([*models, *(m.removesuffix(".onnx") + ".json" for m in models)]), names
    for model in models:
        manifest = json.loads((folder / model).with_suffix(".json").read_text())
        assert manifest["output_sha256"] == hashlib.sha256((folder / model).read_bytes()).hexdigest(), f"{model}: manifest of another model"
    if after == signal.SIGTERM:  # SIGTERM unwinds: not even a hidden temporary file stays
        assert visible == sorted(names), names


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kill-sources")
    ad.export("zoo:sagan-256", input_shapes=[(1, 256, 8, 8)]).save(folder / "src.onnx")
    ad.export("zoo:sagan-256", input_shapes=[(1, 256, 12, 12)]).save(folder / "old.onnx")  # what the outputs held before
    return folder


def _child(tmp: Path, sources: Path, command: str, index: int) -> tuple[list[str], dict[str, str], Path, Path]:
    out, scratch = tmp / f"{command}-{index}" / "out", tmp / f"{command}-{index}" / "tmp"
    out.mkdir(parents=True)
    scratch.mkdir()
    name = "m" if command == "export" else "q"
    for suffix in (".onnx", ".json"):
        shutil.copy(sources / f"old{suffix}", out / f"{name}{suffix}")
    cli = [sys.executable, "-m", "attn_deploy.cli"]
    if command == "export":
        cmd = [*cli, "export", "zoo:sagan-256", "--input-shape", "1x256x8x8", "-o", str(out / "m.onnx")]
    else:
        cmd = [*cli, "quantize", str(sources / "src.onnx"), "-o", str(out / "q.onnx"), "--iterations", "0"]
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # as a user runs it
    return cmd, env, out, scratch


def _run(cmd: list[str], env: dict[str, str], delay: float | None, sig: signal.Signals) -> tuple[int, float, str]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if delay is not None:
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, time.monotonic() - started, stderr


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_kills_leave_whole_pairs_and_no_temporary_files(tmp_path: Path, sources: Path, command: str) -> None:
    cmd, env, out, scratch = _child(tmp_path, sources, command, 0)
    code, length, _ = _run(cmd, env, None, signal.SIGTERM)
    assert code == 0
    _pairs_are_whole(out, signal.SIGTERM)
    assert not list(scratch.iterdir())

    rng = random.Random(f"{command}-17")
    plan = [(sig, rng.uniform(0.0, length)) for sig in (signal.SIGKILL, signal.SIGTERM) for _ in range(KILLS_PER_SIGNAL // 2)]
    children = [(*_child(tmp_path, sources, command, i + 1), sig, delay) for i, (sig, delay) in enumerate(plan)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda c: _run(c[0], c[1], c[5], c[4]), children))
    for (_, _, out, scratch, sig, delay), (code, _, stderr) in zip(children, runs):
        where = f"{sig.name} at {delay:.2f} s of {length:.2f} s (exit {code}; stderr {stderr.strip()[-300:]!r})"
        if code == 1 and sig == signal.SIGTERM:
            # Seen once in CI-like runs: the interruption surfaced as a library's own error. Then it must
            # be reported as one error line, and what it leaves must still be whole (checked below).
            assert stderr.strip().splitlines()[-1:] and stderr.strip().splitlines()[-1].startswith("error:"), where
            code = 128 + sig
        # SIGABRT: a SIGTERM landing while ONNX Runtime's threads wind down can abort the process (seen
        # near the end of quantize); what it leaves must still be whole, which is what is checked below.
        assert code in (0, -sig, 128 + sig, -signal.SIGABRT), where
        _pairs_are_whole(out, sig)
        assert not list(scratch.iterdir()), f"{where}: left {sorted(p.name for p in scratch.iterdir())} in $TMPDIR"

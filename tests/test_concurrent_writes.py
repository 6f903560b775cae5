"""Two processes writing one output leave one run's model and manifest, never a mix (#17 item 3)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[1]

#: Loads a model, waits for the start file, then saves it to the shared path. ``os.replace`` is
#: slowed after the manifest's rename by ``delay`` seconds, so without a lock the slow writer's
#: model lands after the fast writer's manifest.
_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import attn_deploy.api as ad

    out, src, delay, start, offset = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    result = ad.load(src)
    open(f"{start}.{os.path.basename(src)}", "w").close()  # ready
    real_replace = os.replace

    def slow_replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith(".json"):
            time.sleep(delay)

    os.replace = slow_replace
    while not os.path.exists(start):
        time.sleep(0.01)
    time.sleep(offset)
    result.save(out)
    """
)


def test_two_concurrent_writes_leave_one_runs_pair(tmp_path: Path) -> None:
    import attn_deploy.api as ad

    sources = tmp_path / "sources"
    for size in (8, 12):
        ad.export("zoo:sagan-256", input_shapes=[(1, 256, size, size)]).save(sources / f"{size}.onnx")
    out, start = tmp_path / "out" / "m.onnx", tmp_path / "start"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "TMPDIR": str(tmp_path),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "torch-cache")}
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(out), str(sources / name), delay, str(start), offset],
                         env=env, stderr=subprocess.PIPE, text=True)
        for name, delay, offset in (("8.onnx", "2.0", "0"), ("12.onnx", "0", "0.5"))
    ]
    deadline = time.monotonic() + 120
    ready = [tmp_path / "start.8.onnx", tmp_path / "start.12.onnx"]
    while not all(r.exists() for r in ready) and time.monotonic() < deadline and all(p.poll() is None for p in writers):
        time.sleep(0.05)
    start.touch()  # both have exported: the saves start together
    for p in writers:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["output_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    dims = [d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim]
    assert manifest["export_input_shapes"] == [dims]
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.json", "m.onnx"]  # no lock or temporary file left
    assert {p.name for p in tmp_path.iterdir()} - {"torch-cache"} == {"out", "sources", "start", "start.12.onnx", "start.8.onnx"}

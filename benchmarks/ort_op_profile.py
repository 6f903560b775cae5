"""Where an ONNX model's time goes in ONNX Runtime (CPU): kernel time per op type, from ORT's profiler.

Each model gets its own session with profiling on and runs once more than ``--runs``: the first
(warm-up) run's kernels are dropped by their time stamps, and the report is the kernel time of the
other runs divided by their number. Models run one after the other
on the same random input (uniform [0, 1) images, the graph's own shapes with symbolic dimensions
set to 1), so compare shares within a run, not absolute times across machines.

    python benchmarks/ort_op_profile.py MODEL.onnx [MODEL.onnx ...] [--runs N] [--top K] [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _measure import write_json  # noqa: E402

from attn_deploy.artifact.manifest import library_versions  # noqa: E402


def profile(path: Path, runs: int, folder: Path) -> dict[str, Any]:
    """Kernel milliseconds per op type, per run, over ``runs`` profiled runs after one warm-up run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / path.stem)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.random([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32) for i in session.get_inputs()}
    for _ in range(runs + 1):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_end = runs_seen[0]["ts"] + runs_seen[0]["dur"] if runs_seen else 0  # drop the warm-up run's kernels
    by_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_end:
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values())
    return {
        "model": str(path),
        "runs": runs,
        "kernel_ms_per_run": total / runs / 1e3,
        "by_op_type": [{"op_type": op, "ms_per_run": us / runs / 1e3, "share": us / total} for op, us in by_op.most_common()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=10, help="op types printed per model (all are in the JSON)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ort_op_profile.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="attn_deploy_prof_") as folder:
        for path in args.models:
            row = profile(path, args.runs, Path(folder))
            results.append(row)
            print(f"{path}: {row['kernel_ms_per_run']:.1f} ms of kernels per run", flush=True)
            for op in row["by_op_type"][: args.top]:
                print(f"  {op['op_type']:<24} {op['ms_per_run']:9.1f} ms  {100 * op['share']:5.1f}%", flush=True)
    write_json(args.out, {"machine": platform.processor() or platform.machine(), "libraries": library_versions(), "results": results})


if __name__ == "__main__":
    main()

"""What ``fuse`` buys a plain export: the seed's SAGAN block (C=256, N=16,800) in ONNX Runtime.

The block is exported as its author would (``torch.onnx.export``, no attn-deploy), then ``fuse``d;
each ONNX Runtime run is its own process (peak RSS of the whole process, median time). Also
records how long ``fuse`` took and the fused-vs-plain output error on the benchmark input.
Writes JSON (default benchmarks/results/fuse_seed_sagan.json) and prints a summary.

    python benchmarks/fuse_seed_sagan.py [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import measure_call, write_json  # noqa: E402
from memory_sagan import SHAPE, _seed_module  # noqa: E402

CASES = ("ort-plain", "ort-fused")


def prepare(work: Path) -> tuple[dict[str, str], dict[str, object]]:
    import torch

    from attn_deploy.fuse import fuse_file

    work.mkdir(parents=True, exist_ok=True)
    plain = work / "sagan-256-seed-plain.onnx"
    with torch.no_grad():
        torch.onnx.export(_seed_module(), (torch.randn(SHAPE),), str(plain), dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["output"])
    fused = work / "sagan-256-seed-fused.onnx"
    start = time.perf_counter()
    result = fuse_file(plain, fused)
    seconds = time.perf_counter() - start
    return {"ort-plain": str(plain), "ort-fused": str(fused)}, {"fuse_s": seconds, "fused": result.outcome.fused}


def run_case(model_path: str, repeats: int, save: str | None) -> dict[str, float]:
    import numpy as np
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    result = measure_call(lambda: session.run(None, {"input": x}), repeats)
    if save:
        np.save(save, session.run(None, {"input": x})[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fuse_seed_sagan.json")
    parser.add_argument("--work", type=Path, default=Path("build/bench"))
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model:  # child
        print(json.dumps(run_case(args.model, args.repeats, args.save)))
        return

    import numpy as np

    models, fuse_info = prepare(args.work)
    results = {}
    for case in CASES:
        save = str(args.work / f"{case}.npy")
        cmd = [sys.executable, __file__, "--model", models[case], "--repeats", str(args.repeats), "--save", save]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{case:10s} median {results[case]['median_s']:.3f} s  process peak {results[case]['process_peak_rss_mb']:.0f} MB", flush=True)
    plain, fused = (np.load(args.work / f"{c}.npy") for c in CASES)
    import onnxruntime

    report = {
        "benchmark": "fuse_seed_sagan",
        "input_shape": list(SHAPE),
        "N": SHAPE[2] * SHAPE[3],
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": __import__("os").cpu_count()},
        "versions": {"onnxruntime": onnxruntime.__version__},
        "fuse_s": fuse_info["fuse_s"],
        "patterns": [r["pattern"] for r in fuse_info["fused"]],  # type: ignore[attr-defined]
        "results": results,
        "max_abs_error_over_max_abs": float(np.max(np.abs(plain - fused)) / np.max(np.abs(plain))),
        "ratios": {
            "fused_vs_plain_time": results["ort-fused"]["median_s"] / results["ort-plain"]["median_s"],
            "fused_vs_plain_peak_rss": results["ort-fused"]["process_peak_rss_mb"] / results["ort-plain"]["process_peak_rss_mb"],
        },
    }
    write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("fuse_s", "patterns", "max_abs_error_over_max_abs", "ratios")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

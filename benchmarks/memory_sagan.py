"""Memory and time of SAGAN C=256 at N=16,800 (input 1x256x120x140): PyTorch and ONNX Runtime.

Issue #2's bound: ONNX Runtime under 400 MB peak RSS for the whole process; PyTorch under 300 MB
of extra memory during the call (peak RSS minus RSS just before it). For scale, the same block
written the seed's way (bmm, softmax, bmm) is measured too, in both runtimes.

Each case runs in its own process (``--case``), so one case's peak never hides in another's.
The ONNX Runtime children import onnxruntime and numpy only. Writes JSON (default
benchmarks/results/memory_sagan.json) and prints a table.

    python benchmarks/memory_sagan.py [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import measure_call, write_json  # noqa: E402

SHAPE = (1, 256, 120, 140)
CASES = ("ort-fused", "ort-seed", "torch-op", "torch-seed")


def _seed_module():  # noqa: ANN202 - torch is imported lazily so ORT children never load it
    """The article's SelfAttention, as written: bmm -> softmax -> bmm over the full N x N map."""
    from _seed import seed_copy_of

    from attn_deploy.zoo.registry import get_entry

    return seed_copy_of(get_entry("sagan-256").build())


def prepare(work: Path) -> dict[str, str]:
    """Export both ONNX models (in this parent process, which is not measured)."""
    import torch

    from attn_deploy.export import ExportOptions, export_model
    from attn_deploy.export.loading import load_model

    work.mkdir(parents=True, exist_ok=True)
    fused = work / "sagan-256-n16800.onnx"
    export_model(load_model("zoo:sagan-256"), fused, ExportOptions(input_shapes=(SHAPE,)))
    seed = work / "sagan-256-seed-n16800.onnx"
    with torch.no_grad():
        torch.onnx.export(_seed_module(), (torch.randn(SHAPE),), str(seed), dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["output"])
    return {"ort-fused": str(fused), "ort-seed": str(seed)}


def run_case(case: str, model_path: str | None, repeats: int) -> dict[str, float]:
    """Runs inside the child process."""
    if case.startswith("ort"):
        import numpy as np
        import onnxruntime as ort

        x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
        session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        call = lambda: session.run(None, {"input": x})  # noqa: E731
    else:
        import torch

        from attn_deploy.zoo.registry import get_entry

        module = get_entry("sagan-256").build() if case == "torch-op" else _seed_module()
        x = torch.randn(SHAPE)
        torch.set_grad_enabled(False)
        call = lambda: module(x)  # noqa: E731
    return measure_call(call, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "memory_sagan.json")
    parser.add_argument("--work", type=Path, default=Path("build/bench"))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child
        print(json.dumps(run_case(args.case, args.model, args.repeats)))
        return

    models = prepare(args.work)
    results = {}
    for case in CASES:
        cmd = [sys.executable, __file__, "--case", case, "--repeats", str(args.repeats)]
        if case in models:
            cmd += ["--model", models[case]]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{case:11s} median {results[case]['median_s']:.3f} s  process peak {results[case]['process_peak_rss_mb']:.0f} MB"
              f"  extra during call {results[case]['extra_mb']:.0f} MB", flush=True)
    import onnxruntime
    import torch

    report = {
        "benchmark": "memory_sagan",
        "input_shape": list(SHAPE),
        "N": SHAPE[2] * SHAPE[3],
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": __import__("os").cpu_count()},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "results": results,
        "bounds": {
            "ort_process_peak_mb_max": 400,
            "torch_extra_mb_max": 300,
            "ort_fused_process_peak_mb": results["ort-fused"]["process_peak_rss_mb"],
            "torch_op_extra_mb": results["torch-op"]["extra_mb"],
            "pass": results["ort-fused"]["process_peak_rss_mb"] < 400 and results["torch-op"]["extra_mb"] < 300,
        },
        "ratios": {
            "ort_fused_vs_seed_time": results["ort-fused"]["median_s"] / results["ort-seed"]["median_s"],
            "torch_op_vs_seed_time": results["torch-op"]["median_s"] / results["torch-seed"]["median_s"],
            "torch_op_vs_seed_extra_mem": results["torch-op"]["extra_mb"] / results["torch-seed"]["extra_mb"],
        },
    }
    write_json(args.out, report)
    print(json.dumps(report["bounds"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

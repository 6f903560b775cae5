"""Speed and parity of ``attn-deploy quantize`` in ONNX Runtime (CPU), ratios from one run.

Cases (issue #4's acceptance):
- sagan-2048 (input 1x2048x25x42): fp32 as exported (three 1x1 Conv) vs int8 (V in int8, Q/K
  float: the default) vs ``--int8-qk`` (Q/K/V as one MatMulInteger), each also with
  ``--quantize-attention``; cosine of the attention branch (output minus input) against fp32.
  Also fp32 with Q/K/V as one MatMul.
- mha-encoder: fp32 vs int8, cosine of the outputs.
- frcnn-r50-fpn-layer4 (slow: exports a detector): fp32 vs int8, detections matched at IoU >= 0.5.

``int8`` is what ``attn-deploy quantize`` writes by default: attention lowered for ONNX Runtime.
``int8-no-lower`` keeps the FusedAttention nodes (``--no-lower``), and ``fp32-lowered`` is the
float model lowered the same way, so the report separates the two gains. ``plain`` is what a user
has without attn-deploy: the same module exported with plain ``torch.onnx.export`` (attention
written out as MatMul/Softmax/MatMul) in fp32. Every variant reports its speed-up against both
``plain`` (``speedup_vs_plain``, the figure to quote) and fp32 as exported (``speedup_vs_fp32``).
SAGAN's branch cosine is the lowest over ``--inputs`` random inputs (default 5).

Within a case every model runs in the same process, in turns of a few runs with a pause between
turns (``attn_deploy.bench.timing.interleaved``), so load changes hit all alike and one
session's spinning threads do not slow another; compare ratios, on a quiet machine.

    python benchmarks/quantize_speed.py [--cases sagan-2048,mha-encoder,frcnn-r50-fpn-layer4] [--iterations N] [--inputs N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _measure import write_json  # noqa: E402
from quantize_static import plain_export  # noqa: E402

from attn_deploy.api import quantize_model  # noqa: E402
from attn_deploy.artifact.manifest import library_versions  # noqa: E402
from attn_deploy.bench.compare import TimingRunner, detection_parity  # noqa: E402
from attn_deploy.bench.timing import interleaved  # noqa: E402
from attn_deploy.check.stats import error_stats  # noqa: E402
from attn_deploy.export import ExportOptions, export_model  # noqa: E402
from attn_deploy.export.loading import load_model  # noqa: E402
from attn_deploy.lower import lower_file  # noqa: E402
from attn_deploy.quantize import QuantizeOptions  # noqa: E402
from attn_deploy.quantize.prepare import prepare  # noqa: E402
from attn_deploy.runtime import OrtRunner  # noqa: E402

CASES = ("sagan-2048", "mha-encoder", "frcnn-r50-fpn-layer4")
#: Timed runs per model: enough for a stable median at each case's run time (mha-encoder: ~3 ms).
ITERATIONS = {"sagan-2048": 30, "mha-encoder": 100, "frcnn-r50-fpn-layer4": 9}


def _variants(name: str, tmp: Path, inputs: int) -> tuple[dict[str, Path], list[dict[str, np.ndarray]], dict[str, Any]]:
    loaded = load_model(f"zoo:{name}")
    start = time.perf_counter()
    fp32 = export_model(loaded, tmp / f"{name}.onnx", ExportOptions()).onnx_path
    export_s = time.perf_counter() - start
    paths = {"fp32": fp32}
    if name == "sagan-2048":
        prepared, _ = prepare(onnx.load(fp32))
        paths["fp32-qkv-matmul"] = tmp / f"{name}-matmul.onnx"
        onnx.save(prepared, paths["fp32-qkv-matmul"])
    info: dict[str, Any] = {"export_s": export_s}
    variants = {
        "int8": QuantizeOptions(iterations=0),
        "int8-no-lower": QuantizeOptions(iterations=0, lower=False),
        "int8-attention": QuantizeOptions(iterations=0, quantize_attention=True),
        "int8-qk": QuantizeOptions(iterations=0, float_qk=False),
        "int8-qk-attention": QuantizeOptions(iterations=0, float_qk=False, quantize_attention=True),
    }
    for variant, options in variants.items():
        if variant.startswith("int8-qk") and name != "sagan-2048":
            continue  # --int8-qk changes only 1x1-Conv Q/K projections; SAGAN is the case that shows it
        paths[variant] = tmp / f"{name}-{variant}.onnx"
        result = quantize_model(str(fp32), paths[variant], options)
        info[variant] = {
            "quantized_nodes": result.report["nodes"]["quantized"],
            "size_bytes": result.report["size_bytes"],
        }
    paths["fp32-lowered"] = lower_file(fp32, tmp / f"{name}-fp32-lowered.onnx").onnx_path
    runner = OrtRunner(fp32, ["CPUExecutionProvider"])
    paths = {"plain": tmp / f"{name}-plain.onnx", **paths}
    plain_export(name, paths["plain"], (runner.input_names, runner.output_names))
    feeds = [{n: t.numpy() for n, t in zip(runner.input_names, loaded.example_inputs(loaded.input_shapes, seed=seed))}
             for seed in range(1, inputs + 1)]
    return paths, feeds, info


def run_case(name: str, iterations: int, inputs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="quantize_speed_") as tmp_dir:
        paths, feeds, info = _variants(name, Path(tmp_dir), inputs if name == "sagan-2048" else 1)
        runners = {k: TimingRunner(p) for k, p in paths.items()}
        outputs = {k: [r.infer(f) for f in feeds] for k, r in runners.items()}
        samples = dict(zip(runners, interleaved([lambda r=r: r.infer(feeds[0]) for r in runners.values()], iterations)))
    ms = {k: statistics.median(t) * 1e3 for k, t in samples.items()}
    best = {k: min(t) * 1e3 for k, t in samples.items()}
    result: dict[str, Any] = {"case": name, "iterations": iterations, "inputs": len(feeds),
                              "input_shapes": {k: list(v.shape) for k, v in feeds[0].items()}, **info, "variants": {}}
    for variant, outs in outputs.items():
        entry: dict[str, Any] = {
            "median_ms": ms[variant],
            "speedup_vs_plain": ms["plain"] / ms[variant],
            "speedup_vs_fp32": ms["fp32"] / ms[variant],
            "min_ms": best[variant],
            "speedup_vs_plain_of_min": best["plain"] / best[variant],
            "samples_ms": [t * 1e3 for t in samples[variant]],
        }
        references = outputs["plain"]
        if name == "sagan-2048":
            entry["branch_cosine"] = min(
                error_stats("branch", ref["output"] - f["input"], out["output"] - f["input"]).cosine
                for f, ref, out in zip(feeds, references, outs)
            )
        elif name == "frcnn-r50-fpn-layer4":
            entry["detection"] = detection_parity(references[0], outs[0])
        else:
            entry["cosine"] = {k: error_stats(k, references[0][k], outs[0][k]).cosine for k in references[0]}
        result["variants"][variant] = entry
    return result


def acceptance(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue #4's acceptance figures from this run (cases that were run)."""
    by_case = {r["case"]: r["variants"] for r in results}
    out: dict[str, Any] = {}
    if "sagan-2048" in by_case:
        v = by_case["sagan-2048"]
        for variant in ("fp32", "int8", "int8-no-lower", "int8-qk", "int8-attention", "int8-qk-attention"):
            out[f"sagan2048_{variant}_speedup_vs_plain"] = v[variant]["speedup_vs_plain"]
            out[f"sagan2048_{variant}_branch_cosine"] = v[variant]["branch_cosine"]
        # issue #18: default int8 >= 1.6x the plain export at branch cosine >= 0.999 over every input;
        # fp32 as exported within 1.05x of the plain export
        out["sagan2048_int8_ok"] = v["int8"]["speedup_vs_plain"] >= 1.6 and v["int8"]["branch_cosine"] >= 0.999
        out["sagan2048_as_exported_ok"] = v["fp32"]["median_ms"] <= 1.05 * v["plain"]["median_ms"]
    if "mha-encoder" in by_case:
        v = by_case["mha-encoder"]
        for variant in ("int8", "int8-no-lower"):
            out[f"mha_{variant}_speedup_vs_plain"] = v[variant]["speedup_vs_plain"]
            out[f"mha_{variant}_cosine"] = min(v[variant]["cosine"].values())
        out["mha_int8_speedup_vs_fp32_lowered"] = v["fp32-lowered"]["median_ms"] / v["int8"]["median_ms"]
        out["mha_int8_ok"] = v["int8"]["speedup_vs_plain"] >= 1.5 and out["mha_int8_cosine"] >= 0.99
    if "frcnn-r50-fpn-layer4" in by_case:
        v = by_case["frcnn-r50-fpn-layer4"]
        out["frcnn_int8_speedup_vs_plain"] = v["int8"]["speedup_vs_plain"]
        out["frcnn_int8_no_lower_speedup_vs_plain"] = v["int8-no-lower"]["speedup_vs_plain"]
        out["frcnn_int8_matched_fraction"] = v["int8"]["detection"]["matched_fraction"]
        out["frcnn_int8_ok"] = v["int8"]["speedup_vs_plain"] >= 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--iterations", type=int, default=None, help=f"timed runs per model (default per case: {ITERATIONS})")
    parser.add_argument("--inputs", type=int, default=5, help="random inputs SAGAN's branch cosine is the minimum over")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "quantize_speed.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = []
    for case in args.cases.split(","):
        print(f"{case} ...", file=sys.stderr, flush=True)
        results.append(run_case(case, args.iterations or ITERATIONS.get(case, 7), args.inputs))
        for variant, v in results[-1]["variants"].items():
            extra = {k: v[k] for k in ("branch_cosine", "cosine") if k in v}
            if "detection" in v:
                extra = {"matched_fraction": v["detection"]["matched_fraction"]}
            print(
                f"  {variant:18s} median {v['median_ms']:8.1f} ms x{v['speedup_vs_plain']:.2f} vs plain"
                f" (x{v['speedup_vs_fp32']:.2f} vs as exported)   min {v['min_ms']:8.1f} ms x{v['speedup_vs_plain_of_min']:.2f}  {extra}",
                file=sys.stderr,
            )
    report = {
        "benchmark": "quantize_speed",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "versions": library_versions(),
        "cases": results,
        "acceptance": acceptance(results),
    }
    for key, value in report["acceptance"].items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}", file=sys.stderr)
    write_json(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

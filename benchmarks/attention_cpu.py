"""Attention on CPU: time, peak memory and GFLOP/s of every way to run a SAGAN block, against N.

Cases (issue #5): SAGAN C=256 at N in {1,050; 4,200; 16,800; 66,800} and C=2048 at N=1,050. For each,
the whole block (1x1 conv projections, attention, residual) runs as:

    torch-seed      the seed's eager module (bmm, softmax, bmm over the full N x N map)
    torch-op        our block in PyTorch (torch.ops.attn_deploy.fused_attention, memory-bounded)
    ort-decomposed  the seed's module exported as is (MatMul/Softmax/MatMul)
    ort-body        our export as is (the FusedAttention function body)
    ort-mha         our export lowered with --impl mha (com.microsoft.MultiHeadAttention)
    ort-blocked     our export lowered with --impl blocked (query-blocked Loop)
    ort-attention23 our export with FusedAttention rewritten to ONNX Attention (opset 23)
    ort-lowered     our export lowered with `lower --target ort` (auto: the shipped choice)

Each case runs in its own process, so peak RSS is honest; ORT children import onnxruntime and numpy
only. Up to N=16,800 the variants take turns for ``--rounds`` rounds (default 3) and each reports
the median over its rounds, so a drift in the machine's load does not favour one variant. A variant that materialises the N x N matrix is not run where its estimated peak exceeds the
memory available; its time and memory are estimated from its largest measured N (time ~ N², the
score matrix's bytes added) and marked as estimates. GFLOP/s is the block's FLOPs (attention
2·N²·(dk+dv) plus the projections) over the median time, next to the best matrix-multiply rate
measured here (ORT's MLAS and PyTorch's BLAS, float32).

Writes JSON (default benchmarks/results/attention_cpu.json), a Markdown table beside it, and a plot
(matplotlib, from the `bench` extra; skipped with a note if missing).

    python benchmarks/attention_cpu.py                      # all cases, ~5-10 minutes on 2 cores
    python benchmarks/attention_cpu.py --n 1050 16800       # C=256 at these N only
    python benchmarks/attention_cpu.py --variants ort-mha ort-lowered --no-c2048
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import measure_call, write_json  # noqa: E402

VARIANTS = ("torch-seed", "torch-op", "ort-decomposed", "ort-body", "ort-mha", "ort-blocked", "ort-attention23", "ort-lowered")
#: Variants that hold the full N x N score matrix (and a softmax of it): estimated where they cannot fit.
MATERIALISING = {"torch-seed": 2, "ort-decomposed": 1, "ort-attention23": 1}
#: (channels, H, W) per N: feature maps of the sizes the issue names.
GRIDS = {1050: (25, 42), 4200: (50, 84), 16800: (120, 140), 66800: (200, 334)}
DEFAULT_NS = (1050, 4200, 16800, 66800)


def _seed_module(channels: int):  # noqa: ANN202 - torch is imported lazily so ORT children never load it
    """The article's SelfAttention as written (bmm -> softmax -> bmm), with our block's weights."""
    from _seed import seed_copy_of

    return seed_copy_of(_our_module(channels))


def _our_module(channels: int):  # noqa: ANN202
    import torch

    from attn_deploy.zoo.blocks import SelfAttention

    torch.manual_seed(0)
    block = SelfAttention(channels)
    with torch.no_grad():
        block.gamma.fill_(0.5)  # a trained block's gate is not 0; keep the attention branch in the output
    return block.eval()


def _shape(channels: int, n: int) -> tuple[int, int, int, int]:
    return (1, channels, *GRIDS[n])


def _attention23(model):  # noqa: ANN001, ANN202
    """FusedAttention -> ONNX Attention (opset 23, 4-D Q/K/V, same scale); the rest of the graph is unchanged."""
    import onnx
    from onnx import helper

    from attn_deploy.ops.contract import DOMAIN, OP_TYPE

    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type == OP_TYPE:
            scale = next(a.f for a in node.attribute if a.name == "scale")
            node.domain, node.op_type = "", "Attention"
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("scale", scale))
    del model.functions[:]
    imports = [i for i in model.opset_import if i.domain not in ("", "ai.onnx", DOMAIN)]
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", 23), *imports])
    onnx.checker.check_model(model)
    return model


def prepare(work: Path, channels: int, n: int, variants: list[str]) -> dict[str, str]:
    """Export the ONNX variants for one case (in the parent process, which is not measured)."""
    import onnx
    import torch

    from attn_deploy.export import ExportOptions, export_model
    from attn_deploy.export.loading import LoadedModel
    from attn_deploy.lower import lower_model

    work.mkdir(parents=True, exist_ok=True)
    shape = _shape(channels, n)
    tag = f"c{channels}-n{n}"
    paths: dict[str, str] = {}
    if "ort-decomposed" in variants:
        seed = work / f"seed-{tag}.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(_seed_module(channels), (torch.randn(shape),), str(seed), dynamo=False, opset_version=18,
                              input_names=["input"], output_names=["output"])
        paths["ort-decomposed"] = str(seed)
    ours = work / f"ours-{tag}.onnx"
    export_model(LoadedModel(_our_module(channels), f"sagan-{channels}", (shape,), ("input",), ("output",)), ours, ExportOptions(input_shapes=(shape,)))
    exported = onnx.load(str(ours))
    for variant in variants:
        path = work / f"{variant}-{tag}.onnx"
        if variant == "ort-body":
            paths[variant] = str(ours)
            continue
        if variant == "ort-attention23":
            copy = onnx.ModelProto()
            copy.CopyFrom(exported)
            onnx.save(_attention23(copy), str(path))
        elif variant in ("ort-mha", "ort-blocked", "ort-lowered"):
            prefer = {"ort-mha": "mha", "ort-blocked": "blocked", "ort-lowered": "auto"}[variant]
            lowered, choices = lower_model(exported, "ort", prefer=prefer)  # type: ignore[arg-type]
            if variant == "ort-lowered":
                paths["lowered-choice"] = ",".join(c.implementation for c in choices)
            onnx.save(lowered, str(path))
        else:
            continue
        paths[variant] = str(path)
    return paths


def run_case(variant: str, channels: int, n: int, model_path: str | None, repeats: int, warmup: int) -> dict[str, Any]:
    """Runs inside the child process."""
    shape = _shape(channels, n)
    if variant.startswith("ort"):
        import numpy as np
        import onnxruntime as ort

        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        call = lambda: session.run(None, {"input": x})  # noqa: E731
    else:
        import torch

        torch.set_grad_enabled(False)
        module = _our_module(channels) if variant == "torch-op" else _seed_module(channels)
        x = torch.randn(shape)
        call = lambda: module(x)  # noqa: E731
    return {**measure_call(call, repeats, warmup), "estimated": False}


def matmul_rates() -> dict[str, float]:
    """Best float32 matrix-product rate (GFLOP/s) of ORT (MLAS) and PyTorch here (child process)."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    rates: dict[str, float] = {}
    for m, k, n in [(2048, 2048, 2048), (448, 16800, 256)]:
        a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
                                   helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n])],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        for name, fn in (("ort", lambda: session.run(None, {"a": a, "b": b})), ("torch", lambda: ta @ tb)):
            fn()
            best = min(_timed(fn) for _ in range(5))
            rates[name] = max(rates.get(name, 0.0), 2 * m * k * n / best / 1e9)
    return rates


def _timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def block_flops(channels: int, n: int) -> int:
    inner = channels // 8
    attention = 2 * n * n * (inner + channels)
    projections = 2 * n * channels * (2 * inner + channels)
    return attention + projections


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def _estimate(variant: str, channels: int, n: int, measured: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Scale the variant's largest measured N to ``n``: time ~ N², memory + the extra score matrices."""
    if not measured:
        return None
    n0 = max(measured)
    ref = measured[n0]
    matrices = MATERIALISING.get(variant, 0)
    extra = ref["extra_mb"] + matrices * 4 * (n * n - n0 * n0) / 2**20
    return {"median_s": ref["median_s"] * (n / n0) ** 2, "times_s": [], "extra_mb": extra,
            "process_peak_rss_mb": ref["rss_before_mb"] + extra, "rss_before_mb": ref["rss_before_mb"],
            "estimated": True, "estimated_from_n": n0}


def _needs_estimate(variant: str, channels: int, n: int) -> bool:
    matrices = MATERIALISING.get(variant, 0)
    need_mb = matrices * 4 * n * n / 2**20 * 1.2 + 1500
    return matrices > 0 and need_mb > 0.8 * _available_mb()


def _child(args: argparse.Namespace) -> None:
    if args.case == "matmul":
        print(json.dumps(matmul_rates()))
        return
    print(json.dumps(run_case(args.case, args.channels, args.n[0], args.model, args.repeats, args.warmup)))


def _spawn(*extra: str, timeout: float | None = None) -> dict[str, Any]:
    try:
        proc = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS), choices=sorted(GRIDS),
                        help="N values for SAGAN C=256 (default: all four)")
    parser.add_argument("--no-c2048", action="store_true", help="skip SAGAN C=2048 at N=1,050")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (1 above N=16,800)")
    parser.add_argument("--rounds", type=lambda s: max(1, int(s)), default=3, help="processes per case, variants taking turns (1 above N=16,800)")
    parser.add_argument("--case-timeout", type=float, default=300, help="seconds before a case is abandoned (reported as an error)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "attention_cpu.json")
    parser.add_argument("--work", type=Path, default=Path("build/bench/attention_cpu"))
    for hidden in ("--case", "--model"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        _child(args)
        return

    started = time.time()
    load_before = os.getloadavg()
    rates = _spawn("--case", "matmul")
    print(f"matmul float32: ORT {rates.get('ort', 0):.0f} GFLOP/s, PyTorch {rates.get('torch', 0):.0f} GFLOP/s", flush=True)
    configs = [(256, n) for n in sorted(args.n)] + ([] if args.no_c2048 else [(2048, 1050)])
    results: list[dict[str, Any]] = []
    measured: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for channels, n in configs:
        estimate_only = [v for v in args.variants if _needs_estimate(v, channels, n)]
        paths = prepare(args.work, channels, n, [v for v in args.variants if v not in estimate_only])
        big = n > 16800
        rounds: dict[str, list[dict[str, Any]]] = {}
        # Variants take turns, one fresh process each, for --rounds rounds: slow drifts in the
        # machine's load then hit every variant alike instead of whichever ran last.
        for _ in range(1 if big else args.rounds):
            for variant in args.variants:
                if variant in estimate_only:
                    continue
                cmd = ["--case", variant, "--channels", str(channels), "--n", str(n),
                       "--repeats", str(1 if big else args.repeats), "--warmup", "0" if big else "1"]
                if variant in paths:
                    cmd += ["--model", paths[variant]]
                rounds.setdefault(variant, []).append(_spawn(*cmd, timeout=args.case_timeout))
        for variant in args.variants:
            if variant in estimate_only:
                res = _estimate(variant, channels, n, measured.get((variant, channels), {}))
                if res is None:
                    res = {"error": "cannot fit in memory and no smaller N was measured to estimate from"}
            else:
                res = _combine_rounds(rounds[variant])
                if "error" not in res:
                    measured.setdefault((variant, channels), {})[n] = res
            flops = block_flops(channels, n)
            if "median_s" in res:
                res["gflops"] = flops / res["median_s"] / 1e9
            row = {"channels": channels, "N": n, "input_shape": list(_shape(channels, n)), "variant": variant,
                   "flops": flops, **res}
            if variant == "ort-lowered":
                row["lowered_choice"] = paths.get("lowered-choice")
            results.append(row)
            _print_row(row)
    report = {
        "benchmark": "attention_cpu",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "note": "shared machines give noisy absolute figures; compare ratios from one run",
                    "load_average_1m_before_after": [load_before[0], os.getloadavg()[0]]},
        "versions": _versions(),
        "matmul_gflops": rates,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "wall_s": time.time() - started,
        "results": results,
        "acceptance": acceptance(results),
    }
    write_json(args.out, report)
    md = args.out.with_suffix(".md")
    md.write_text(markdown(report))
    print(markdown(report))
    plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out}, {md} ({report['wall_s']:.0f} s)")


def _combine_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from a variant's rounds: the median of the round medians, the largest memory figures."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[0]
    combined = dict(ok[0])
    combined.update({
        "median_s": statistics.median(r["median_s"] for r in ok),
        "round_medians_s": [r["median_s"] for r in ok],
        "times_s": [t for r in ok for t in r["times_s"]],
        "extra_mb": max(r["extra_mb"] for r in ok),
        "process_peak_rss_mb": max(r["process_peak_rss_mb"] for r in ok),
    })
    return combined


def _print_row(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"C={row['channels']:<4} N={row['N']:<6} {row['variant']:16s} ERROR {row['error']}", flush=True)
        return
    est = " (estimate)" if row.get("estimated") else ""
    print(f"C={row['channels']:<4} N={row['N']:<6} {row['variant']:16s} {row['median_s']:8.3f} s  peak {row['process_peak_rss_mb']:7.0f} MB"
          f"  extra {row['extra_mb']:7.0f} MB  {row['gflops']:6.1f} GFLOP/s{est}", flush=True)


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for lib in ("torch", "onnxruntime", "onnx"):
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _get(results: list[dict[str, Any]], channels: int, n: int, variant: str) -> dict[str, Any] | None:
    for r in results:
        if (r["channels"], r["N"], r["variant"]) == (channels, n, variant) and "median_s" in r:
            return r
    return None


def acceptance(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue #5's ratios, from this run only (None where a needed case was not run)."""
    low, dec, mha, seed, op = (_get(results, 256, 16800, v) for v in ("ort-lowered", "ort-decomposed", "ort-mha", "torch-seed", "torch-op"))
    big = _get(results, 256, 66800, "ort-lowered")
    out: dict[str, Any] = {}
    if low and dec:
        out["n16800_lowered_vs_decomposed_time"] = low["median_s"] / dec["median_s"]
        out["n16800_lowered_vs_decomposed_peak_rss"] = low["process_peak_rss_mb"] / dec["process_peak_rss_mb"]
    if low and mha:
        out["n16800_lowered_vs_mha_time"] = low["median_s"] / mha["median_s"]
    if low and seed:
        out["n16800_seed_eager_vs_lowered_time"] = seed["median_s"] / low["median_s"]
    if low and op:
        out["n16800_torch_op_vs_lowered_time"] = op["median_s"] / low["median_s"]
    if op and dec:
        out["n16800_torch_op_extra_vs_decomposed_extra"] = op["extra_mb"] / dec["extra_mb"]
    if big and not big.get("estimated"):
        out["n66800_lowered_process_peak_rss_mb"] = big["process_peak_rss_mb"]
    checks = {
        "lowered <= decomposed time": out.get("n16800_lowered_vs_decomposed_time", 9) <= 1.0,
        "lowered <= mha time (5% noise)": out.get("n16800_lowered_vs_mha_time", 9) <= 1.05,
        "lowered peak <= 25% decomposed": out.get("n16800_lowered_vs_decomposed_peak_rss", 9) <= 0.25,
        "lowered >= 2x faster than seed eager": out.get("n16800_seed_eager_vs_lowered_time", 0) >= 2.0,
        "N=66,800 in ORT < 1.5 GB": out.get("n66800_lowered_process_peak_rss_mb", 1e9) < 1536,
        "torch op <= 1.2x lowered": out.get("n16800_torch_op_vs_lowered_time", 9) <= 1.2,
        "torch op extra < 25% of decomposed extra": out.get("n16800_torch_op_extra_vs_decomposed_extra", 9) < 0.25,
    }
    out["checks"] = checks
    return out


def markdown(report: dict[str, Any]) -> str:
    rates = report["matmul_gflops"]
    lines = [
        "# Attention on CPU: SAGAN block, fp32, batch 1",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']}, load average "
        f"{' -> '.join(f'{x:.1f}' for x in report['machine'].get('load_average_1m_before_after', []))} "
        "(above the CPU count, figures are noisy). "
        f"Best float32 matmul measured: ORT {rates.get('ort', 0):.0f} GFLOP/s, PyTorch {rates.get('torch', 0):.0f} GFLOP/s. "
        "Each cell: median time (median over rounds of variants taking turns, one process each) / largest process peak RSS / GFLOP/s (block FLOPs over time); *est.* = estimated, not run "
        "(would not fit in memory).",
        "",
    ]
    variants = list(dict.fromkeys(r["variant"] for r in report["results"]))
    lines.append("| C | N | " + " | ".join(variants) + " |")
    lines.append("|---|---|" + "---|" * len(variants))
    cases = list(dict.fromkeys((r["channels"], r["N"]) for r in report["results"]))
    for channels, n in cases:
        cells = []
        for v in variants:
            r = next((r for r in report["results"] if (r["channels"], r["N"], r["variant"]) == (channels, n, v)), None)
            if r is None:
                cells.append("")
            elif "error" in r:
                cells.append("error")
            else:
                est = " *est.*" if r.get("estimated") else ""
                cells.append(f"{r['median_s']:.3f} s / {r['process_peak_rss_mb']:.0f} MB / {r['gflops']:.0f}{est}")
        lines.append(f"| {channels} | {n:,} | " + " | ".join(cells) + " |")
    choices = {(r["channels"], r["N"]): r.get("lowered_choice") for r in report["results"] if r["variant"] == "ort-lowered"}
    if choices:
        lines += ["", "Lowered choice per case: " + "; ".join(f"C={c} N={n:,}: {v}" for (c, n), v in choices.items())]
    lines += ["", "## Acceptance (issue #5), ratios from this run", ""]
    for name, value in report["acceptance"].items():
        if name != "checks":
            lines.append(f"- {name}: {value:.3f}" if isinstance(value, float) else f"- {name}: {value}")
    for name, ok in report["acceptance"].get("checks", {}).items():
        lines.append(f"- [{'x' if ok else ' '}] {name}")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed (pip install -e '.[bench]'); no plot written")
        return
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = [r for r in report["results"] if r["channels"] == 256 and "median_s" in r]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        pts = sorted((r["N"], r["median_s"], r["process_peak_rss_mb"], r.get("estimated", False)) for r in rows if r["variant"] == variant)
        ns = [p[0] for p in pts]
        line = ax_t.plot(ns, [p[1] for p in pts], marker="o", label=variant)[0]
        ax_m.plot(ns, [p[2] for p in pts], marker="o", color=line.get_color(), label=variant)
        for ax, k in ((ax_t, 1), (ax_m, 2)):
            est = [p for p in pts if p[3]]
            if est:
                ax.scatter([p[0] for p in est], [p[k] for p in est], facecolors="white", edgecolors=line.get_color(), zorder=3, s=60)
    for ax, label in ((ax_t, "median time (s)"), (ax_m, "process peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N = H·W")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_title("SAGAN C=256, fp32, CPU (hollow: estimated)")
    ax_m.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

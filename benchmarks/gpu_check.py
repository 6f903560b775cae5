"""One prepared GPU check for the FusedAttention Triton kernel (issue #14). Needs an NVIDIA GPU and PyTorch.

    python benchmarks/gpu_check.py OUT_DIR [--budget-s 420] [--kernel-check PROGRAM]

In one run, on the device:
1. the machine: GPU, capability, torch/triton versions, and the bf16 matrix-product rate as a ceiling;
2. correctness: the same grid the CPU tests interpret (attn_deploy/ops/kernel_cases.py), compiled,
   on small tiles and on the device's own tiles, float32 TF32 too, and sampled query rows of every
   timed shape against float64; ``torch.ops.attn_deploy.fused_attention`` on CUDA must give the
   kernel's output bit for bit;
3. speed at the zoo's shapes — ViT (N=197, d=64, 12 heads, batch 32), SAGAN C=256 at N=16,800 (dk 32,
   dv 256), SAGAN C=2048 at N=1,050 (dk 256, dv 2048), an FPN level at N=66,800 (dk 32, dv 256) —
   against ``torch.nn.functional.scaled_dot_product_attention`` with each backend that accepts the
   shape (flash, efficient, cuDNN, math) and PyTorch's own choice, in fp16: median of
   ``triton.testing.do_bench``, TFLOP/s = 2·B·H·Nq·Nk·(dk+dv)/t, ratio to the fastest SDPA;
4. optionally the plugin's own check (``--kernel-check build/kernel/fused_attention_kernel_check``,
   built by ``attn-deploy build-plugin --kernel-only``): the cubins compiled ahead of time and
   embedded in the plugin, launched through the CUDA driver against a float64 reference.

Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md after each part (a run cut short still
leaves what it measured) and prints the Markdown last. Imports only torch, triton and the kernel.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attn_deploy.ops import torch_op  # noqa: E402, F401 - registers torch.ops.attn_deploy.fused_attention
from attn_deploy.ops.kernel_cases import KernelCase, cases, device_sweep, run_case  # noqa: E402
from attn_deploy.ops.triton_kernel import TileConfig, tile_config, triton_attention  # noqa: E402

#: name -> (B, H, Nq, Nk, dk, dv)
SHAPES = {
    "vit-n197-d64-h12-b32": (32, 12, 197, 197, 64, 64),
    "sagan-c256-n16800": (1, 1, 16800, 16800, 32, 256),
    "sagan-c2048-n1050": (1, 1, 1050, 1050, 256, 2048),
    "fpn-c256-n66800": (1, 1, 66800, 66800, 32, 256),
}
#: Tile variants timed beside ``tile_config``'s choice: (block_m, block_n, block_dk, block_dv, warps, stages).
CANDIDATES = {
    "vit-n197-d64-h12-b32": [(128, 64, 64, 64, 4, 3)],
    "sagan-c256-n16800": [(128, 64, 32, 128, 8, 3)],
    "sagan-c2048-n1050": [(128, 32, 256, 256, 8, 2)],
}
#: ``--tiny``: the same code paths on shapes the CPU interpreter runs in seconds (a smoke test, not a figure).
TINY_SHAPES = {"vit-tiny": (1, 2, 20, 20, 16, 16), "sagan-tiny": (1, 1, 40, 40, 16, 48)}
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
SAMPLED_ROWS = 256
DEVICE = "cuda"


class Report:
    """Results so far, written to OUT_DIR after every part."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.data: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        out.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(self.data))


def machine() -> dict[str, Any]:
    import triton

    props = torch.cuda.get_device_properties(0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = bench(lambda: a @ b)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return {
        "gpu": props.name, "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1), "nvidia_smi": smi,
        "torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__,
        "python": platform.python_version(),
        "bf16_matmul_8192_tflops": round(2 * 8192**3 / (ms * 1e-3) / 1e12, 1),
    }


def bench(fn: Any) -> float:
    """Median milliseconds of CUDA-graph replays (triton.testing.do_bench_cudagraph, 200 ms of repeats)."""
    if DEVICE == "cpu":
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    from triton.testing import do_bench_cudagraph

    # Replayed from a CUDA graph: a launch from Python costs tens of microseconds, as long as the
    # whole ViT-sized kernel, and TensorRT launches the plugin from C++ anyway.
    return float(do_bench_cudagraph(fn, rep=200, return_mode="median"))


def correctness_groups() -> dict[str, list[KernelCase]]:
    """The grid in groups (one process each): small tiles, the device's own tiles, float32 as TF32."""
    groups: dict[str, list[KernelCase]] = {}
    for dtype in ("float32", "float16", "bfloat16"):
        grid = cases((dtype,))
        groups[f"{dtype}-small-tiles"] = [c for c in grid if c.tiles == "small"]
        groups[f"{dtype}-device-tiles"] = [replace(c, name=f"{c.name}-device-tiles", tiles="device") if c.tiles == "small" else c
                                           for c in grid if c.pad_heads]
    groups["float32-tf32"] = [replace(c, name=f"{c.name}-tf32", tiles="device", fp32_precision="tf32")
                              for c in cases(("float32",)) if c.tiles == "small" and c.pad_heads]
    for dtype in ("float16", "bfloat16"):
        groups[f"{dtype}-sweep"] = device_sweep((dtype,))
    extra = [c for c in cases() if c.bias in ("gathered", "strided")]
    groups["bias-views"] = extra + [replace(c, name=f"{c.name}-device-tiles", tiles="device") for c in extra]
    # Last, in a process of its own: unaligned dk and dv without padding on the device's tiles, the
    # combination that read out of bounds under Triton 3.6 (why triton_attention pads by default).
    groups["unpadded-device-tiles"] = [replace(c, name=f"{c.name}-device-tiles", tiles="device")
                                       for c in cases(("float16",)) if not c.pad_heads]
    return groups


def correctness(group: list[KernelCase]) -> dict[str, Any]:
    results = []
    for case in group:
        print(f"case {case.name}", file=sys.stderr, flush=True)  # the last one printed names a case that crashed
        try:
            err = run_case(case, DEVICE)
            results.append({"case": case.name, "rel_max_error": err, "tolerance": case.tolerance, "pass": err < case.tolerance})
        except AssertionError as exc:
            results.append({"case": case.name, "error": f"AssertionError: {exc}"[:300], "pass": False})
    return {"cases": results}


def sampled_error(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, scale: float) -> float:
    """Error of SAMPLED_ROWS random query rows of every (batch, head) against float64."""
    rows = torch.randperm(q.shape[2], device=q.device)[:SAMPLED_ROWS]
    ref = ((q[:, :, rows].double() @ k.double().transpose(-1, -2)) * scale).softmax(-1) @ v.double()
    return float((out[:, :, rows].double() - ref).abs().max() / ref.abs().max())


def flops(dims: tuple[int, ...]) -> float:
    b, h, nq, nk, dk, dv = dims
    return 2.0 * b * h * nq * nk * (dk + dv)


def timing(name: str, dims: tuple[int, int, int, int, int, int], deadline: float) -> dict[str, Any]:
    b, h, nq, nk, dk, dv = dims
    dtype = torch.float16
    q = torch.randn(b, h, nq, dk, device=DEVICE, dtype=dtype)
    k = torch.randn(b, h, nk, dk, device=DEVICE, dtype=dtype)
    v = torch.randn(b, h, nk, dv, device=DEVICE, dtype=dtype)
    scale = 1 / math.sqrt(dk)
    major, minor = torch.cuda.get_device_capability() if DEVICE == "cuda" else (9, 0)
    default = tile_config(dk, dv, itemsize=2, arch=major * 10 + minor)
    row: dict[str, Any] = {"shape": name, "dims": dims, "dtype": "float16", "gflop": flops(dims) / 1e9, "kernel": {}, "sdpa": {}}

    out = triton_attention(q, k, v, scale=scale, config=default)
    row["sampled_rel_max_error"] = sampled_error(q, k, v, out, scale)
    row["op_matches_kernel"] = bool(torch.equal(torch.ops.attn_deploy.fused_attention(q, k, v, scale=scale), out))
    del out
    variants = [("default", default)] + [(f"m{c[0]}n{c[1]}dk{c[2]}dv{c[3]}w{c[4]}s{c[5]}", TileConfig(*c))
                                         for c in CANDIDATES.get(name, [])]
    for label, config in variants:
        if time.monotonic() > deadline:
            row["kernel"][label] = {"skipped": "time budget"}
            continue
        try:
            ms = bench(lambda config=config: triton_attention(q, k, v, scale=scale, config=config))
            row["kernel"][label] = {"ms": ms, "tflops": flops(dims) / (ms * 1e-3) / 1e12, "tiles": config.as_dict()}
        except Exception as exc:  # noqa: BLE001 - a variant that does not compile is a result
            row["kernel"][label] = {"error": f"{type(exc).__name__}: {exc}"[:300]}

    from torch.nn.attention import SDPBackend, sdpa_kernel

    def sdpa() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)

    for backend in ("default", *SDPA_BACKENDS):
        if time.monotonic() > deadline:
            row["sdpa"][backend] = {"skipped": "time budget"}
            continue
        if backend == "MATH" and nq * nk * b * h > 2**31:
            row["sdpa"][backend] = {"skipped": "materialises the score matrix (> 2^31 elements)"}
            continue
        try:
            if backend == "default":
                ms = bench(sdpa)
            else:
                with sdpa_kernel([getattr(SDPBackend, backend)]):
                    sdpa()
                    ms = bench(sdpa)
            row["sdpa"][backend] = {"ms": ms, "tflops": flops(dims) / (ms * 1e-3) / 1e12}
        except Exception as exc:  # noqa: BLE001 - a backend that refuses the shape is a result
            row["sdpa"][backend] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]}
        if DEVICE == "cuda":
            torch.cuda.empty_cache()

    kernel_ms = [r["ms"] for r in row["kernel"].values() if "ms" in r]
    sdpa_ms = {k: r["ms"] for k, r in row["sdpa"].items() if "ms" in r}
    if kernel_ms and sdpa_ms:
        best_sdpa = min(sdpa_ms, key=lambda key: sdpa_ms[key])
        row["best_sdpa"] = best_sdpa
        row["speed_vs_best_sdpa_default_tiles"] = sdpa_ms[best_sdpa] / row["kernel"]["default"]["ms"] if "ms" in row["kernel"]["default"] else None
        row["speed_vs_best_sdpa_best_tiles"] = sdpa_ms[best_sdpa] / min(kernel_ms)
        row["best_tiles"] = min((r for r in row["kernel"].values() if "ms" in r), key=lambda r: r["ms"])["tiles"]
    return row


def kernel_check(program: Path) -> dict[str, Any]:
    proc = subprocess.run([str(program), "run"], capture_output=True, text=True, check=False, timeout=120)
    return {"program": str(program), "exit": proc.returncode, "output": (proc.stdout + proc.stderr)[-3000:]}


def markdown(data: dict[str, Any]) -> str:
    lines = ["# gpu_check", ""]
    if "machine" in data:
        m = data["machine"]
        lines += [f"{m['gpu']} (sm_{m['capability'].replace('.', '')}, {m['multiprocessors']} SMs), torch {m['torch']}, "
                  f"CUDA {m['cuda']}, Triton {m['triton']}; bf16 8192³ matmul {m['bf16_matmul_8192_tflops']} TFLOP/s", ""]
    if data.get("correctness", {}).get("total"):
        c = data["correctness"]
        failed = [r["case"] for r in c["cases"] if not r.get("pass")]
        failed += [f"{x['part']} crashed at {x['last']} ({'; '.join(x['error'])})" for x in c.get("crashed", [])]
        worst = max((r["rel_max_error"] / r["tolerance"] for r in c["cases"] if "rel_max_error" in r), default=0.0)
        lines += [f"Correctness: {c['passed']}/{c['total']} cases pass (worst error at {worst:.2f} of its tolerance)"
                  + (f"; failed: {', '.join(failed)}" if failed else ""), ""]
    if data.get("timing"):
        lines += ["| shape | GFLOP | kernel ms, default tiles | kernel ms, best tiles | TFLOP/s, best | SDPA ms, fastest backend | "
                  "speed vs SDPA, default / best tiles | sampled rows error | op = kernel |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [_timing_row(row) for row in data["timing"]]
        lines += ["", "SDPA backends per shape (ms, or why not):", ""]
        for row in data["timing"]:
            parts = [f"{k}: {r['ms']:.3f}" if "ms" in r else f"{k}: {r.get('error') or r.get('skipped')}" for k, r in row["sdpa"].items()]
            lines.append(f"- {row['shape']}: " + "; ".join(parts))
    if data.get("diagnostic", {}).get("cases") or data.get("diagnostic", {}).get("crashed"):
        d = data["diagnostic"]
        lines += ["", "Diagnostic, unaligned dk and dv without padding (not how the kernel is called): "
                  + "; ".join([f"{r['case']}: {r.get('rel_max_error', r.get('error'))}" for r in d["cases"]]
                              + [f"crashed at {x['last']} ({'; '.join(x['error'])})" for x in d["crashed"]])]
    if "kernel_check" in data:
        lines += ["", f"Plugin cubins (kernel check): exit {data['kernel_check']['exit']}", "```",
                  data["kernel_check"]["output"][-2500:].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _timing_row(row: dict[str, Any]) -> str:
    def ms(r: dict[str, Any] | None) -> str:
        return f"{r['ms']:.3f}" if r and "ms" in r else "-"

    kernel = [r for r in row["kernel"].values() if "ms" in r]
    best_kernel = min(kernel, key=lambda r: r["ms"]) if kernel else None
    sdpa = {k: r for k, r in row["sdpa"].items() if "ms" in r}
    fastest = min(sdpa, key=lambda k: sdpa[k]["ms"]) if sdpa else None
    speed = (f"{row['speed_vs_best_sdpa_default_tiles'] or 0:.2f}× / {row['speed_vs_best_sdpa_best_tiles']:.2f}×"
             if "speed_vs_best_sdpa_best_tiles" in row else "no SDPA backend ran")
    return (f"| {row['shape']} | {row['gflop']:.1f} | {ms(row['kernel'].get('default'))} | {ms(best_kernel)} | "
            f"{best_kernel['tflops'] if best_kernel else 0:.0f} | "
            f"{ms(sdpa.get(fastest or ''))}{f' ({fastest})' if fastest else ''} | {speed} | "
            f"{row.get('sampled_rel_max_error', float('nan')):.1e} | {row.get('op_matches_kernel')} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new measurements after this many seconds")
    parser.add_argument("--kernel-check", type=Path, help="the plugin's fused_attention_kernel_check program (run first)")
    parser.add_argument("--jobs", type=int, default=4, help="correctness groups run at once, one process each")
    parser.add_argument("--skip-correctness", action="store_true")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny shapes in Triton's interpreter (TRITON_INTERPRET=1)")
    args = parser.parse_args()
    global DEVICE
    if args.tiny:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run it on a machine with an NVIDIA GPU (or --tiny on the CPU)", file=sys.stderr)
        return 2
    if args.part:
        torch.manual_seed(0)
        args.out.mkdir(parents=True, exist_ok=True)
        data = run_part(args.part, time.monotonic() + args.budget_s, args.tiny)
        (args.out / f"part-{args.part.replace(':', '-')}.json").write_text(json.dumps(data, default=str))
        return 0
    return orchestrate(args)


def run_part(part: str, deadline: float, tiny: bool) -> dict[str, Any]:
    kind, _, name = part.partition(":")
    if kind == "machine":
        return machine()
    if kind == "correctness":
        return correctness(correctness_groups()[name])
    if kind == "timing":
        return timing(name, (TINY_SHAPES if tiny else SHAPES)[name], deadline)
    raise SystemExit(f"gpu_check: unknown part {part!r}")


def orchestrate(args: argparse.Namespace) -> int:
    """Each part in a process of its own: a kernel fault poisons its CUDA context, not the rest of the run."""
    start = time.monotonic()
    report = Report(args.out)
    parts = [] if args.tiny else ["machine"]
    parts += [f"timing:{name}" for name in (TINY_SHAPES if args.tiny else SHAPES)]
    if not args.skip_correctness:
        parts += [f"correctness:{name}" for name in correctness_groups()]
    report.data["timing"] = []
    report.data["correctness"] = {"cases": [], "crashed": []}
    report.data["diagnostic"] = {"cases": [], "crashed": []}
    if args.kernel_check:
        report.data["kernel_check"] = kernel_check(args.kernel_check)
        report.save()

    def run(part: str) -> None:
        left = start + args.budget_s - time.monotonic()
        if left < 5:
            report.data.setdefault("not_run", []).append(part)
            return
        cmd = [sys.executable, __file__, str(args.out), "--part", part, "--budget-s", str(left)] + (["--tiny"] if args.tiny else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=max(60.0, left + 60))
        fragment = args.out / f"part-{part.replace(':', '-')}.json"
        # The unpadded group documents a compiler fault, not the kernel as it is used: kept apart.
        section = report.data["diagnostic"] if part.startswith("correctness:unpadded") else report.data["correctness"]
        if proc.returncode != 0 or not fragment.is_file():
            last_case = [line for line in proc.stderr.splitlines() if line.startswith("case ")][-1:]
            error_lines = [line for line in proc.stderr.splitlines() if "Error" in line][-2:]
            section["crashed"].append({"part": part, "exit": proc.returncode, "last": last_case, "error": error_lines})
            return
        data = json.loads(fragment.read_text())
        fragment.unlink()
        if part == "machine":
            report.data["machine"] = data
        elif part.startswith("timing"):
            report.data["timing"].append(data)
        else:
            section["cases"] += data["cases"]

    # Timings one at a time (alone on the GPU); correctness groups side by side, each in its own process.
    for part in [p for p in parts if not p.startswith("correctness")]:
        run(part)
        report.save()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(run, [p for p in parts if p.startswith("correctness")]))
    report.save()
    cases_run = report.data["correctness"]["cases"]
    report.data["correctness"]["passed"] = sum(bool(r.get("pass")) for r in cases_run)
    report.data["correctness"]["total"] = len(cases_run)
    report.data["elapsed_s"] = round(time.monotonic() - start, 1)
    report.save()
    print(markdown(report.data))
    c = report.data["correctness"]
    kernel_ok = report.data.get("kernel_check", {}).get("exit", 0) == 0
    return 0 if c["passed"] == c["total"] and not c["crashed"] and kernel_ok else 1


if __name__ == "__main__":
    sys.exit(main())

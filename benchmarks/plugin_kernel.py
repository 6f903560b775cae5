"""Latency of the plugin's CUDA kernel (PyTorch extension) against PyTorch SDPA and the op. GPU only.

    python benchmarks/plugin_kernel.py [--out benchmarks/results/plugin_kernel.json]

Shapes: SAGAN C=256 at N=16,800 (dk=32, dv=256; SDPA accepts dv != dk),
and a transformer block (H=8, N=4,096, d=64). fp32 and fp16; median of CUDA-event timings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from attn_deploy.artifact.fileio import write_bytes_atomic
from attn_deploy.ops import reference_attention  # noqa: F401 - registers torch.ops.attn_deploy
from attn_deploy.trt_plugin.torch_ext import load_torch_extension

SHAPES = {"sagan-c256-n16800": (1, 1, 16800, 16800, 32, 256), "mha-h8-n4096-d64": (1, 8, 4096, 4096, 64, 64)}


def _time_ms(fn, warmup: int = 3, iters: int = 10) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/plugin_kernel.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("error: needs an NVIDIA GPU (torch.cuda.is_available() is False); nothing written", file=sys.stderr)
        return 2
    ext = load_torch_extension()
    rows = []
    for name, (b, h, nq, nk, dk, dv) in SHAPES.items():
        for dtype in (torch.float32, torch.float16):
            q = torch.randn(b, h, nq, dk, device="cuda", dtype=dtype)
            k = torch.randn(b, h, nk, dk, device="cuda", dtype=dtype)
            v = torch.randn(b, h, nk, dv, device="cuda", dtype=dtype)
            scale = dk ** -0.5
            row = {"shape": name, "dtype": str(dtype).removeprefix("torch."),
                   "plugin_kernel_ms": _time_ms(lambda: ext.fused_attention(q, k, v, None, scale)),
                   "torch_sdpa_ms": _time_ms(lambda: F.scaled_dot_product_attention(q, k, v, scale=scale)),
                   "attn_deploy_op_ms": _time_ms(lambda: torch.ops.attn_deploy.fused_attention(q, k, v, None, scale=scale))}
            got, want = ext.fused_attention(q, k, v, None, scale), F.scaled_dot_product_attention(q, k, v, scale=scale)
            row["max_abs_diff_vs_sdpa"] = (got.float() - want.float()).abs().max().item()
            rows.append(row)
            print(json.dumps(row))
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda, "rows": rows}
    write_bytes_atomic(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

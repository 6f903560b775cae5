"""How ``quantize --quantize-attention``'s int8 P·V product loses accuracy as rows get longer.

Only the attention changes: each model is our float export with its FusedAttention body swapped
for the int8 one (``attn_deploy.quantize.attention``), projections stay float. The figure is the
cosine of the attention branch (output minus input) against the float body in ONNX Runtime, on
the zoo's seeded SAGAN blocks at growing N. It is why ``--quantize-attention`` is not the default.

Beside it, the same attention in PyTorch (float64 cosine of the attention output) with one error
source at a time: the body's 8-bit probability codes alone, V's int8 alone, and 16-bit codes
(what two uint8 planes, two MatMulInteger, would give).

    python benchmarks/int8_attention_rows.py [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _measure import write_json  # noqa: E402

from attn_deploy.artifact.manifest import library_versions  # noqa: E402
from attn_deploy.check.stats import error_stats  # noqa: E402
from attn_deploy.export import ExportOptions, export_model  # noqa: E402
from attn_deploy.export.loading import load_model  # noqa: E402
from attn_deploy.quantize.attention import use_int8_attention_body  # noqa: E402
from attn_deploy.runtime import OrtRunner  # noqa: E402
from attn_deploy.zoo import blocks  # noqa: E402

#: (zoo entry, input shape): SAGAN at ResNet stage 4 (N=1,050), then C=256 at N=2,000 and 16,800.
CASES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("sagan-2048", (1, 2048, 25, 42)),
    ("sagan-256", (1, 256, 40, 50)),
    ("sagan-256", (1, 256, 120, 140)),
)


def error_sources(module: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Cosine of softmax(QKᵀ)V against float with each quantization of the int8 body on its own."""
    att = next(m for m in module.modules() if isinstance(m, blocks.SelfAttention))
    with torch.no_grad():
        q, k, v = (blocks._tokens(t)[0, 0].double() for t in (att.scaled_query(x), att.key(x), att.value(x)))
        scores = q @ k.t()
        e = torch.exp(scores - scores.max(-1, keepdim=True).values)  # in (0, 1], 1 in every row
        ref = (e / e.sum(-1, keepdim=True)) @ v
        v_scale = v.abs().max() / 127
        v_int8 = torch.round(v / v_scale) * v_scale

        def cosine(out: torch.Tensor) -> float:
            return torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0).item()

        codes8, codes16 = torch.round(255 * e), torch.round(65535 * e)
        return {
            "codes8_only": cosine(codes8 @ v / codes8.sum(-1, keepdim=True)),
            "v_int8_only": cosine(e @ v_int8 / e.sum(-1, keepdim=True)),
            "codes8_and_v_int8": cosine(codes8 @ v_int8 / codes8.sum(-1, keepdim=True)),
            "codes16_and_v_int8": cosine(codes16 @ v_int8 / codes16.sum(-1, keepdim=True)),
        }


def branch_cosine(name: str, shape: tuple[int, ...], tmp: Path) -> dict[str, Any]:
    loaded = load_model(f"zoo:{name}")
    float_path = export_model(loaded, tmp / f"{name}.onnx", ExportOptions(input_shapes=(shape,))).onnx_path
    int8_body = onnx.load(float_path)
    use_int8_attention_body(int8_body)
    int8_path = tmp / f"{name}-int8-pv.onnx"
    onnx.save(int8_body, int8_path)
    x_torch = loaded.example_inputs((shape,), seed=1)[0]
    x = x_torch.numpy()
    outputs = [OrtRunner(p, ["CPUExecutionProvider"]).infer({"input": x})["output"] for p in (float_path, int8_path)]
    return {
        "model": f"zoo:{name}",
        "input_shape": list(shape),
        "N": shape[2] * shape[3],
        "branch_cosine": error_stats("branch", outputs[0] - x, outputs[1] - x).cosine,
        "torch_error_sources_cosine": error_sources(loaded.module, x_torch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "int8_attention_rows.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8_attention_rows_") as tmp:
        for name, shape in CASES:
            rows.append(branch_cosine(name, shape, Path(tmp)))
            sources = ", ".join(f"{k} {v:.5f}" for k, v in rows[-1]["torch_error_sources_cosine"].items())
            print(f"{rows[-1]['model']:16s} N={rows[-1]['N']:<6} branch cosine {rows[-1]['branch_cosine']:.5f}  ({sources})", flush=True)
    report = {"benchmark": "int8_attention_rows", "platform": platform.platform(), "versions": library_versions(), "results": rows}
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

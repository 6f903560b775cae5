"""How ``quantize --quantize-attention``'s int8 P·V product loses accuracy as rows get longer.

Only the attention changes: each model is our float export with its FusedAttention body swapped
for the int8 one (``attn_deploy.quantize.attention``), projections stay float. The figure is the
cosine of the attention branch (output minus input) against the float body in ONNX Runtime, on
the zoo's seeded SAGAN blocks at growing N. It is why ``--quantize-attention`` is not the default.

    python benchmarks/int8_attention_rows.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from attn_deploy.check.stats import error_stats  # noqa: E402
from attn_deploy.export import ExportOptions, export_model  # noqa: E402
from attn_deploy.export.loading import load_model  # noqa: E402
from attn_deploy.export.manifest import library_versions  # noqa: E402
from attn_deploy.quantize.attention import use_int8_attention_body  # noqa: E402
from attn_deploy.runtime import OrtRunner  # noqa: E402

#: (zoo entry, input shape): SAGAN at ResNet stage 4 (N=1,050), then C=256 at N=2,000 and 16,800.
CASES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("sagan-2048", (1, 2048, 25, 42)),
    ("sagan-256", (1, 256, 40, 50)),
    ("sagan-256", (1, 256, 120, 140)),
)


def branch_cosine(name: str, shape: tuple[int, ...], tmp: Path) -> dict[str, Any]:
    loaded = load_model(f"zoo:{name}")
    float_path = export_model(loaded, tmp / f"{name}.onnx", ExportOptions(input_shapes=(shape,))).onnx_path
    int8_body = onnx.load(float_path)
    use_int8_attention_body(int8_body)
    int8_path = tmp / f"{name}-int8-pv.onnx"
    onnx.save(int8_body, int8_path)
    x = loaded.example_inputs((shape,), seed=1)[0].numpy()
    outputs = [OrtRunner(p, ["CPUExecutionProvider"]).infer({"input": x})["output"] for p in (float_path, int8_path)]
    return {
        "model": f"zoo:{name}",
        "input_shape": list(shape),
        "N": shape[2] * shape[3],
        "branch_cosine": error_stats("branch", outputs[0] - x, outputs[1] - x).cosine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "int8_attention_rows.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8_attention_rows_") as tmp:
        for name, shape in CASES:
            rows.append(branch_cosine(name, shape, Path(tmp)))
            print(f"{rows[-1]['model']:16s} N={rows[-1]['N']:<6} branch cosine {rows[-1]['branch_cosine']:.5f}", flush=True)
    report = {"benchmark": "int8_attention_rows", "platform": platform.platform(), "versions": library_versions(), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Every zoo entry through every exporter that applies: FusedAttention count and ORT-vs-PyTorch parity.

Issue #2's acceptance figures in one table: node count against attention blocks, and per entry the
largest ``max abs error / max |output|`` over its outputs (bound 1e-4), random inputs, fp32, CPU.
Writes JSON (default benchmarks/results/zoo_parity.json).

    python benchmarks/zoo_parity.py [--entries a,b] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from attn_deploy.check.stats import compare_outputs
from attn_deploy.export import ExportOptions, export_model
from attn_deploy.export.loading import load_model
from attn_deploy.runtime import OrtRunner, TorchRunner
from attn_deploy.zoo import list_entries

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import write_json  # noqa: E402


def run(name: str, exporter: str, work: Path) -> dict:
    loaded = load_model(f"zoo:{name}")
    started = time.perf_counter()
    result = export_model(loaded, work / f"{name}-{exporter}.onnx", ExportOptions(exporter=exporter))  # type: ignore[arg-type]
    export_s = time.perf_counter() - started
    ort_runner = OrtRunner(result.onnx_path)
    torch_runner = TorchRunner(loaded.module, ort_runner.input_names, ort_runner.output_names)
    feeds = {n: t.numpy() for n, t in zip(ort_runner.input_names, loaded.example_inputs(loaded.input_shapes, seed=1))}
    stats = compare_outputs(torch_runner.infer(feeds), ort_runner.infer(feeds))
    return {
        "entry": name,
        "exporter": exporter,
        "export_s": round(export_s, 2),
        "fused_attention": result.fused_attention_count,
        "attention_blocks": loaded.expected_attention_blocks,
        "outputs": {s.name: {"shape": list(s.shape_ref), "rel_to_max": s.rel_to_max, "cosine": s.cosine} for s in stats},
        "worst_rel_to_max": max(s.rel_to_max for s in stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", help="comma-separated zoo names (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "zoo_parity.json")
    args = parser.parse_args()
    wanted = set(args.entries.split(",")) if args.entries else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for entry in list_entries():
            if wanted and entry.name not in wanted:
                continue
            for exporter in ("torchscript",) if entry.is_detector else ("dynamo", "torchscript"):
                row = run(entry.name, exporter, Path(tmp))
                rows.append(row)
                print(f"{row['entry']:26s} {row['exporter']:11s} nodes {row['fused_attention']}/{row['attention_blocks']}  "
                      f"worst max-abs/max|out| {row['worst_rel_to_max']:.2e}  export {row['export_s']:.1f} s", flush=True)
    report = {"benchmark": "zoo_parity", "bound": 1e-4, "pass": all(r["worst_rel_to_max"] <= 1e-4 and r["fused_attention"] == r["attention_blocks"] for r in rows), "rows": rows}
    write_json(args.out, report)
    print(f"pass: {report['pass']}; wrote {args.out}")


if __name__ == "__main__":
    main()

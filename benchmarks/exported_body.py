"""The as-exported model against the plain ``torch.onnx.export`` in ONNX Runtime (issue #18): a user who
skips ``lower`` must lose nothing.

Per model (``users_models.MODELS``, the seed's block at C=2048, 1x2048x25x42, and the YOLO- and
DETR-style detectors of ``_detectors.py``): ``export`` as is, the same model with the previous
Loop-only FusedAttention body (``looped_body``: the "before"), and the plain export, timed in turns in
one process (ratios from one run). ``exported_copy`` is a byte copy of the exported model timed as
another model: how far two identical models' times differ in that run (the noise floor). Also the op counts of the
graph ONNX Runtime runs (``optimized_model_filepath``): what it fused, what the body added.

    python benchmarks/exported_body.py [--models seed_block,...] [--iterations N] [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _measure import run_cases, write_json  # noqa: E402
from users_models import MODELS, cli, last_line, plain_export  # noqa: E402

SEED_2048 = "seed_block_2048"
CASES: dict[str, tuple[str, list[str], list[str]]] = {
    **{name: (model, inputs, export) for name, (model, inputs, export, _, _) in MODELS.items() if name != "user_detector"},
    SEED_2048: (f"benchmarks.exported_body:{SEED_2048}", ["--input-shape", "1x2048x25x42"], []),
    "yolo_style": ("benchmarks._detectors:yolo_style", ["--input-shape", "1x3x640x640"], []),
    "detr_style": ("benchmarks._detectors:detr_style", ["--input-shape", "1x3x512x512"], []),
}


def seed_block_2048() -> Any:
    """The seed's SAGAN block at C=2048 (ResNet stage 4), random weights, gamma non-zero."""
    import torch

    from benchmarks._seed import SeedSelfAttention

    torch.manual_seed(0)
    block = SeedSelfAttention(2048)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    return block.eval()


def with_looped_body(exported: Path, out: Path) -> None:
    """``exported`` with the body it had before this change: always the query-blocked Loop."""
    import onnx

    from attn_deploy.artifact.graph import default_opset
    from attn_deploy.ops.bodies import looped_body
    from attn_deploy.ops.contract import DOMAIN, OP_TYPE

    model = onnx.load(exported)
    for function in model.functions:
        if function.domain == DOMAIN and function.name == OP_TYPE:
            function.CopyFrom(looped_body(default_opset(model), with_bias="bias" in function.input))
    onnx.save(model, out)


def optimized_ops(path: Path, folder: Path) -> dict[str, int]:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(folder / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    counts = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    return dict(sorted(counts.items()))


def run_case(name: str, tmp: Path, iterations: int) -> dict[str, Any]:
    from users_models import timings

    model, inputs, export_opts = CASES[name]
    exported = tmp / f"{name}.onnx"
    code, _, err = cli("export", model, *inputs, *export_opts, "-o", str(exported))
    if code:
        return {"model": name, "export_error": last_line(err)}
    paths = {"plain": tmp / f"{name}.plain.onnx", "exported": exported, "exported_before": tmp / f"{name}.before.onnx",
             "exported_copy": tmp / f"{name}.copy.onnx"}
    plain_export(model, inputs, paths["plain"])
    shutil.copyfile(exported, paths["exported_copy"])
    with_looped_body(exported, paths["exported_before"])
    ms = timings(paths, iterations)
    return {
        "model": name,
        "latency_ms": ms,
        "speedup_vs_plain": {k: ms["plain"] / v for k, v in ms.items() if k != "plain"},
        "optimized_ops": {k: optimized_ops(p, tmp) for k, p in paths.items() if k != "exported_copy"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(CASES))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "exported_body.json")
    args = parser.parse_args()
    rows = run_cases(args.models, lambda name, tmp: run_case(name, tmp, args.iterations), "attn_deploy_eb_",
                     lambda row: {k: v for k, v in row.items() if k != "optimized_ops"})
    write_json(args.out, {"command": " ".join(sys.argv), "results": rows})


if __name__ == "__main__":
    main()

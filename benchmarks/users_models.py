"""Models users bring (issue #13), through every command, against what they have without attn-deploy.

Each model is built in code with random weights (tests/user_models/): the seed article's SAGAN block
as written, with a temperature, that block after Faster R-CNN's layer4 (the backbone, as
``--submodule backbone`` cuts it out), torchvision's swin_t, maxvit_t (einsum attention) and swin_v2_t
(cosine attention), a BERT-like encoder with int64 inputs,
and a user's torchvision detector. Per model: FusedAttention nodes ``export`` wrote and how each
attention was found, ``check`` against PyTorch, ``lower``, ``build-trt --fp16`` (TensorRT-RTX, no
GPU), ``quantize``, and ONNX Runtime latency of the plain ``torch.onnx.export`` (the baseline), our
export as written, lowered, and int8, timed in turns in one process (ratios from one run).

    python benchmarks/users_models.py [--models seed_block,...] [--iterations N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _measure import run_cases, write_json  # noqa: E402

HW = "tests.user_models.hand_written"
UM = "tests.user_models.models"
#: name -> (MODEL, inputs, export options, check options, commands to skip)
MODELS: dict[str, tuple[str, list[str], list[str], list[str], set[str]]] = {
    "seed_block": (f"{HW}:seed_block", ["--input-shape", "1x16x48x48"], [], [], set()),
    "seed_block_temperature": (f"{HW}:seed_block_temperature", ["--input-shape", "1x16x48x48"], [], [], set()),
    "faster_rcnn_backbone_with_attention": (f"{HW}:faster_rcnn_backbone_with_attention", ["--input-shape", "1x3x96x128"], [],
                                            ["--atol", "1e-3"], set()),
    "swin_t": (f"{HW}:swin_t", ["--input-shape", "1x3x64x64"], ["--exporter", "torchscript"], [], set()),
    "maxvit_t": (f"{HW}:maxvit_t", ["--input-shape", "1x3x224x224"], [], [], set()),
    "swin_v2_t": (f"{HW}:swin_v2_t", ["--input-shape", "1x3x256x256"], [], [], set()),
    "tiny_bert": (f"{UM}:tiny_bert", ["--input", "input_ids:1x16:int64", "--input", "attention_mask:1x16:int64"], [], [], set()),
    "user_detector": (f"{UM}:detector", ["--input-shape", "1x3x64x64"], [], [], {"lower", "build-trt", "timing"}),
}


def cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "attn_deploy.cli", *args], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def plain_export(model: str, inputs: list[str], path: Path) -> None:
    """The user's module with plain torch.onnx.export (TorchScript), as they would without attn-deploy."""
    import torch

    from attn_deploy.api import load_model
    from attn_deploy.shapes import parse_inputs

    decls = parse_inputs([inputs[i + 1] for i in range(0, len(inputs), 2)])
    loaded = load_model(model, input_shapes=tuple(d.shape for d in decls))
    example = tuple(
        torch.randint(0, 50, d.shape) if (d.dtype or "").startswith("int") else torch.rand(*d.shape) for d in decls
    )
    torch.backends.mha.set_fastpath_enabled(False)  # nn.Transformer's native fast path has no ONNX export
    with torch.no_grad():
        torch.onnx.export(loaded.module, example, path, opset_version=17, dynamo=False)


def timings(paths: dict[str, Path], iterations: int) -> dict[str, float]:
    import onnx

    from attn_deploy.artifact.artifact import Artifact
    from attn_deploy.bench.compare import TimingRunner
    from attn_deploy.bench.timing import interleaved
    from attn_deploy.runtime.inputs import input_specs, random_feeds

    runners = {k: TimingRunner(p) for k, p in paths.items()}
    for runner in runners.values():
        runner.activate()
    specs = input_specs(Artifact.describe(onnx.load(paths["exported"]), source="x", exporter="x"))
    feeds = random_feeds(specs, 0, None, None)
    runs = {k: dict(zip(r.input_names, feeds.values())) for k, r in runners.items()}
    samples = interleaved([lambda r=r, k=k: r.infer(runs[k]) for k, r in runners.items()], iterations)
    for runner in runners.values():
        runner.close()
    return {k: statistics.median(s) * 1e3 for k, s in zip(runners, samples)}


def run_model(name: str, tmp: Path, iterations: int) -> dict[str, Any]:
    model, inputs, export_opts, check_opts, skip = MODELS[name]
    row: dict[str, Any] = {"model": name}
    exported, lowered, int8 = tmp / f"{name}.onnx", tmp / f"{name}.low.onnx", tmp / f"{name}.int8.onnx"
    code, out, err = cli("export", model, *inputs, *export_opts, "-o", str(exported), "--json")
    row["export"] = {"exit": code}
    if code == 0:
        manifest = json.loads(exported.with_suffix(".json").read_text())
        statuses = [a["status"] for a in manifest.get("attention", [])]
        row["export"].update(fused_attention=len(manifest.get("fused_attention", [])),
                             found={s: statuses.count(s) for s in sorted(set(statuses))})
    else:
        row["export"]["error"] = last_line(err)
        return row
    code, out, err = cli("check", model, str(exported), *inputs, *check_opts, "--json")
    report = json.loads(out) if out.strip().startswith("{") else {}
    row["check"] = {"exit": code, "passed": report.get("passed")}
    outputs = [o for c in report.get("comparisons", []) for o in c.get("outputs", [])]
    if outputs:
        row["check"]["max_abs"] = max(o.get("max_abs", 0.0) for o in outputs)
        row["check"]["min_cosine"] = min(o.get("cosine", 1.0) for o in outputs)
    if "lower" not in skip:
        code, _, err = cli("lower", str(exported), "-o", str(lowered))
        row["lower"] = {"exit": code, **({"error": last_line(err)} if code else {})}
    if "build-trt" not in skip:
        code, out, err = cli("build-trt", str(exported), "--fp16", "-o", str(tmp / f"{name}.engine"), "--json")
        row["build_trt_fp16"] = {"exit": code, **({"error": last_line(err)} if code else {})}
    code, out, err = cli("quantize", str(exported), "-o", str(int8), *inputs, "--json", "--iterations", "1")
    q = json.loads(out) if code == 0 else {}
    row["quantize"] = {"exit": code, "int8_nodes": len(q.get("nodes", {}).get("quantized", [])),
                       "min_cosine": min((p["cosine"] for p in q.get("parity") or []), default=None),
                       "detection": q.get("detection"), **({"error": last_line(err)} if code else {})}
    if "timing" not in skip and code == 0:
        plain_export(model, inputs, tmp / f"{name}.plain.onnx")
        paths = {"plain": tmp / f"{name}.plain.onnx", "exported": exported, "lowered": lowered, "int8": int8}
        ms = timings({k: p for k, p in paths.items() if p.exists()}, iterations)
        row["latency_ms"] = ms
        row["speedup_vs_plain"] = {k: ms["plain"] / v for k, v in ms.items() if k != "plain"}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "users_models.json")
    args = parser.parse_args()
    rows = run_cases(args.models, lambda name, tmp: run_model(name, tmp, args.iterations), "attn_deploy_um_")
    write_json(args.out, {"results": rows})


if __name__ == "__main__":
    main()

"""Build a TensorRT-RTX engine for every zoo entry, fp32 and fp16, on this (CPU-only) machine.

Per entry: export (the whole model; for the Faster R-CNN entries also ``--submodule backbone``),
then ``build_engine`` in float32 and in float16. Records build time, engine size, the lowering
chosen for each FusedAttention node, or the exact error. Builds are ahead-of-time (no GPU), so
build time is the builder's, not kernel tuning on a device.

Each entry runs in its own process (``--entry``) so one export's memory does not weigh on the
next. Writes JSON (default benchmarks/results/build_trt_zoo.json) and prints a table.

    python benchmarks/build_trt_zoo.py [--entries a,b] [--out FILE] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import write_json  # noqa: E402

DETECTOR_PARTS = {"frcnn-r50-fpn-layer4": "backbone", "frcnn-r50-fpn-multiscale": "backbone"}


def _build(onnx_path: Path, fp16: bool) -> dict:
    from attn_deploy.engine import BuildOptions, build_engine
    from attn_deploy.errors import AttnDeployError

    engine = onnx_path.with_name(onnx_path.stem + ("-fp16" if fp16 else "-fp32") + ".engine")
    started = time.perf_counter()
    try:
        result = build_engine(onnx_path, engine, BuildOptions(runtime="tensorrt-rtx", fp16=fp16))
    except AttnDeployError as e:
        return {"ok": False, "error": str(e), "seconds": round(time.perf_counter() - started, 2)}
    r = result.report
    return {
        "ok": True,
        "build_seconds": r["build_seconds"],
        "total_seconds": round(time.perf_counter() - started, 2),
        "engine_mib": round(r["engine_bytes"] / 2**20, 2),
        "lowering": [p["choice"] for p in r["fused_attention"]],
        "query_blocks": [p["query_blocks"] for p in r["fused_attention"]],
        "network_layers": r["network_layers"]["summary"]["count"],
    }


def _export(name: str, work: Path, submodule: str | None) -> tuple[Path | None, dict]:
    from attn_deploy.errors import AttnDeployError
    from attn_deploy.export import ExportOptions, export_model
    from attn_deploy.export.loading import load_model

    out = work / f"{name}{'-' + submodule if submodule else ''}.onnx"
    started = time.perf_counter()
    try:
        result = export_model(load_model(f"zoo:{name}"), out, ExportOptions(submodule=submodule))
    except AttnDeployError as e:
        return None, {"ok": False, "error": str(e)}
    info = {
        "ok": True,
        "seconds": round(time.perf_counter() - started, 1),
        "exporter": result.exporter,
        "inputs": [i["shape"] for i in result.manifest["inputs"]],
        "fused_attention": [(n["dk"], n["dv"]) for n in result.manifest["fused_attention"]],
        "onnx_mib": round(out.stat().st_size / 2**20, 2),
    }
    return out, info


def run_entry(name: str, work: Path) -> list[dict]:
    rows = []
    for part in [None, DETECTOR_PARTS.get(name)] if name in DETECTOR_PARTS else [None]:
        onnx_path, export_info = _export(name, work, part)
        row = {"entry": name, "submodule": part, "export": export_info}
        if onnx_path is not None:
            row["fp32"] = _build(onnx_path, fp16=False)
            row["fp16"] = _build(onnx_path, fp16=True)
        rows.append(row)
    return rows


def _cell(build: dict | None) -> str:
    if not build:
        return "-"
    if not build["ok"]:
        return "FAIL: " + build["error"][:90]
    return f"{build['build_seconds']:.1f} s, {build['engine_mib']:.1f} MiB, {'/'.join(sorted(set(build['lowering'])))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="", help="comma-separated zoo names (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "build_trt_zoo.json")
    parser.add_argument("--work", type=Path, default=Path("build/bench_trt"))
    parser.add_argument("--entry", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.entry:
        print(json.dumps(run_entry(args.entry, args.work)))
        return

    from attn_deploy.zoo import list_entries

    names = [n for n in args.entries.split(",") if n] or [e.name for e in list_entries()]
    rows = []
    for name in names:
        proc = subprocess.run(
            [sys.executable, __file__, "--entry", name, "--work", str(args.work)], capture_output=True, text=True, check=False
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
        if proc.returncode != 0 or not lines:
            rows.append({"entry": name, "submodule": None, "export": {"ok": False, "error": proc.stderr.strip().splitlines()[-1:]}})
        else:
            rows.extend(json.loads(lines[-1]))
        for row in rows[-(len(lines[-1:]) and len(json.loads(lines[-1]))) or -1:]:
            print(f"{name:28s} {str(row.get('submodule') or ''):9s} fp32: {_cell(row.get('fp32'))} | fp16: {_cell(row.get('fp16'))}", flush=True)

    import importlib.metadata

    result = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, no GPU (ahead-of-time builds); shared with other jobs",
        "tensorrt_rtx": importlib.metadata.version("tensorrt-rtx-cu13"),
        "rows": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

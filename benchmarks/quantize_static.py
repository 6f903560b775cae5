"""Static int8 (``quantize --calibrate``) against what a user has without attn-deploy, in ONNX Runtime (CPU).

The baseline is the zoo model exported with plain ``torch.onnx.export`` (attention written out as
MatMul/Softmax/MatMul, as a user's own module exports) and run in fp32. The candidate is
``attn-deploy quantize zoo:NAME --calibrate PHOTOS``: Q/DQ int8 convolutions and projections,
attention float and lowered. Calibrated on scikit-image's sample photographs, judged on other
photographs (held out): cosine per output, or matched detections for a detector. For a detector the
float model is also matched against itself on the same photographs moved by less than one 8-bit
pixel level (uniform noise of +-0.5/255 before normalisation, ``float_under_pixel_noise``): how far
its detections move under a change smaller than the image's own quantization, the floor any int8
parity on it can be read against. A detector's detections are matched as ``check`` matches them: a
detection missing within the score tolerance of where the detector cut (its ``score_thresh`` and
``detections_per_img``, recorded at export) is borderline and not counted; the strict fraction
(every detection counted) is printed beside it. Both models run
in the same process in turns (``attn_deploy.bench.timing.interleaved``); compare the ratio, on a
quiet machine.

Cases are zoo names, or the detectors built in code in ``_detectors.py`` (``yolo-style``,
``detr-style``: not ours, random weights, BatchNorm statistics set on photographs).

    python benchmarks/quantize_static.py [--cases fpn-multiscale,frcnn-r50-fpn-layer4,yolo-style,detr-style]
                                         [--iterations N] [--calibrate-count N] [--min-matched F] [--exclude GLOB] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _measure import write_json  # noqa: E402

from attn_deploy.api import quantize_model  # noqa: E402
from attn_deploy.artifact.manifest import library_versions  # noqa: E402
from attn_deploy.bench.compare import TimingRunner, detection_parity  # noqa: E402
from attn_deploy.bench.timing import interleaved  # noqa: E402
from attn_deploy.check.detection import selection_of  # noqa: E402
from attn_deploy.export.loading import load_model  # noqa: E402
from attn_deploy.quantize import QuantizeOptions  # noqa: E402
from attn_deploy.runtime.inputs import image_feeds, input_specs  # noqa: E402

CASES = ("fpn-multiscale", "frcnn-r50-fpn-layer4")
ITERATIONS = {"fpn-multiscale": 30, "frcnn-r50-fpn-layer4": 7, "yolo-style": 40, "detr-style": 30}
#: Detectors built in code: MODEL spec and input shape (benchmarks/ is on sys.path).
BUILT_IN_CODE = {"yolo-style": ("_detectors:yolo_style", (1, 3, 640, 640)),
                 "detr-style": ("_detectors:detr_style", (1, 3, 512, 512))}
CALIBRATION = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "camera")
HELD_OUT = ("cat", "coins", "clock")


def write_photos(folder: Path, names: tuple[str, ...]) -> Path:
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.png")
    return folder


def model_spec(name: str) -> tuple[str, tuple[tuple[int, ...], ...]]:
    """MODEL spec and input shapes of a case (a zoo entry keeps its own shapes)."""
    if name in BUILT_IN_CODE:
        spec, shape = BUILT_IN_CODE[name]
        return spec, (shape,)
    return f"zoo:{name}", ()


def plain_export(name: str, path: Path, names: tuple[list[str], list[str]]) -> None:
    """What a user without attn-deploy has: torch.onnx.export of the module, attention written out
    (input and output ``names`` as the int8 artifact's, so both run on the same feeds)."""
    import torch

    from attn_deploy.ops.torch_op import plain_attention

    spec, shapes = model_spec(name)
    loaded = load_model(spec)
    # nn.TransformerEncoderLayer's native fast path has no ONNX export: users turn it off to export.
    torch.backends.mha.set_fastpath_enabled(False)
    with plain_attention(), torch.no_grad():
        torch.onnx.export(loaded.module, loaded.example_inputs(shapes or loaded.input_shapes, seed=0), path, opset_version=17, dynamo=False,
                          input_names=names[0], output_names=names[1])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _pixel_noise(feeds: dict[str, np.ndarray], preprocess: dict[str, Any] | None, seed: int) -> dict[str, np.ndarray]:
    """``feeds`` with each image input moved by uniform noise of +-half an 8-bit level, in normalised units."""
    std = np.asarray((preprocess or {}).get("std") or [1.0, 1.0, 1.0], np.float32).reshape(3, 1, 1)
    rng = np.random.default_rng(seed)
    return {k: (v + rng.uniform(-0.5, 0.5, v.shape).astype(np.float32) / 255 / std if v.ndim == 4 and v.shape[1] == 3 else v)
            for k, v in feeds.items()}


def run_case(name: str, tmp: Path, iterations: int, calibrate_count: int | None, min_matched: float | None,
             target_cosine: float = 0.999, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    plain = tmp / f"{name}-plain.onnx"
    int8 = tmp / f"{name}-static-int8.onnx"
    started = time.perf_counter()
    spec, shapes = model_spec(name)
    options = QuantizeOptions(calibrate=tmp / "calibration", iterations=0, input_shapes=shapes, exclude=exclude)
    if calibrate_count:
        options = dataclasses.replace(options, calibrate_count=calibrate_count)
    if min_matched is not None:
        options = dataclasses.replace(options, min_matched=min_matched)
    if not target_cosine:  # 0: every candidate int8, whatever the parity (what int8 can gain at most)
        options = dataclasses.replace(options, target_cosine=None)
    result = quantize_model(spec, int8, options)
    quantize_s = time.perf_counter() - started
    assert result.artifact is not None
    graph = result.artifact.proto.graph
    plain_export(name, plain, ([i.name for i in graph.input], [o.name for o in graph.output]))
    runners = [TimingRunner(plain), TimingRunner(int8)]
    for runner in runners:
        runner.activate()
    assert result.artifact is not None
    held_out = image_feeds(tmp / "held_out", input_specs(result.artifact), result.artifact.manifest.preprocess)
    manifest = result.artifact.manifest
    selection = selection_of(manifest)  # what the detector keeps: borderline detections are not counted
    parity: list[dict[str, Any]] = []
    for feeds in held_out:
        ref, out = (r.infer(feeds) for r in runners)
        if manifest.detection:
            parity.append(detection_parity(ref, out, roles=manifest.detection, selection=selection))
        else:
            parity.append({k: cosine(ref[k], out[k]) for k in ref})
    noise_floor = [detection_parity(runners[0].infer(feeds), runners[0].infer(_pixel_noise(feeds, manifest.preprocess, seed)),
                                    roles=manifest.detection, selection=selection)
                   for seed, feeds in enumerate(held_out)] if manifest.detection else []
    feeds = held_out[0]
    times = interleaved([lambda r=r: r.infer(feeds) for r in runners], iterations)
    plain_ms, int8_ms = (statistics.median(t) * 1e3 for t in times)
    plain_min, int8_min = (min(t) * 1e3 for t in times)
    for runner in runners:
        runner.close()
    return {
        "case": name,
        "exclude": list(exclude),
        "plain_fp32_ms": plain_ms,
        "static_int8_ms": int8_ms,
        "speedup_vs_plain_export": plain_ms / int8_ms,
        "speedup_vs_plain_export_of_min": plain_min / int8_min,
        "samples_ms": {"plain_fp32": [t * 1e3 for t in times[0]], "static_int8": [t * 1e3 for t in times[1]]},
        "held_out_parity": parity,
        **({"float_under_pixel_noise": noise_floor} if noise_floor else {}),
        "quantized_nodes": len(result.report["nodes"]["quantized"]),
        "static": result.report["static"],
        "quantize_and_export_s": quantize_s,
        "iterations": iterations,
    }


def _detections(d: dict[str, Any]) -> str:
    """``matched/counted (+borderline), fraction, strict fraction, max score error`` of one comparison."""
    strict = d["matched"] / max(d["reference_detections"], d["candidate_detections"], 1)
    return (f"{d['matched']}/{d['counted']} (+{d['borderline']} borderline) {d['matched_fraction']:.3f} "
            f"[strict {strict:.3f}], score err {d['max_score_diff_matched']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--calibrate-count", type=int, help="calibration photographs (default: quantize's)")
    parser.add_argument("--target-cosine", type=float, default=0.999, help="as quantize's; 0 quantizes every candidate")
    parser.add_argument("--min-matched", type=float, help="a detector's matched detections to keep (default: quantize's, 0.99)")
    parser.add_argument("--exclude", action="append", default=[], help="as quantize's --exclude (repeatable)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "quantize_static.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="attn_deploy_qs_") as folder:
        tmp = Path(folder)
        write_photos(tmp / "calibration", CALIBRATION)
        write_photos(tmp / "held_out", HELD_OUT)
        for name in args.cases.split(","):
            row = run_case(name, tmp, args.iterations or ITERATIONS.get(name, 10), args.calibrate_count, args.min_matched,
                           args.target_cosine, tuple(args.exclude))
            results.append(row)
            print(f"{name}: plain fp32 {row['plain_fp32_ms']:.1f} ms, static int8 {row['static_int8_ms']:.1f} ms, "
                  f"{row['speedup_vs_plain_export']:.2f}x (of the fastest runs {row['speedup_vs_plain_export_of_min']:.2f}x)", flush=True)
            if "float_under_pixel_noise" in row:
                for what in ("held_out_parity", "float_under_pixel_noise"):
                    print(f"  {what}: " + "; ".join(_detections(d) for d in row[what]), flush=True)
            else:
                print(f"  held-out parity {row['held_out_parity']}", flush=True)
    write_json(args.out, {"machine": platform.processor() or platform.machine(), "libraries": library_versions(), "results": results})


if __name__ == "__main__":
    main()

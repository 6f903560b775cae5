"""The gate's false-alarm rate: faithful exports of every zoo entry, over 10 seeds, must pass ``check``.

For each entry and seed, the model is built with that weight seed, exported in memory, and checked
PyTorch against ONNX Runtime on random inputs drawn with the same seed, with the default preset
(``auto``: fp32 for an export). Issue #17's acceptance: every run passes. Writes JSON (default
benchmarks/results/gate_faithful.json) after every run, so a long sweep keeps what it has done.
``--shape NAME=1x3x320x426`` checks an entry at another input shape than its default, and
``--detector-size 320,480`` makes the Faster R-CNN entries resize images to that (min, max) size
instead of their 800 px (the same weights; the sweep of the detectors then takes minutes, not hours).

    python benchmarks/gate_faithful.py [--entries a,b] [--seeds 10] [--shape NAME=SHAPE ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import attn_deploy.api as ad
from attn_deploy.export.loading import _from_entry
from attn_deploy.zoo import list_entries
from attn_deploy.zoo.registry import get_entry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import write_json  # noqa: E402


def run(name: str, seed: int, shape: tuple[int, ...] | None, detector_size: tuple[int, int] | None) -> dict[str, Any]:
    entry = get_entry(name)
    loaded = _from_entry(entry, entry.build(seed), f"zoo:{name}")
    resized = entry.is_detector and detector_size is not None
    if resized:
        assert detector_size is not None
        transform = loaded.module.detector.transform
        transform.min_size, transform.max_size = (detector_size[0],), detector_size[1]
    started = time.perf_counter()
    shapes = {"input_shapes": (shape,)} if shape else {}
    report = ad.check(loaded, seed=seed, backends=("torch", "ort"), **shapes)
    worst = min((v.stats.cosine for c in report.comparisons for v in c.outputs), default=1.0)
    failed = [f"{v.stats.name}: {v.reason}" for c in report.comparisons for v in c.outputs if not v.passed]
    return {"entry": name, "seed": seed, "input_shape": list(shape or entry.input_shapes[0]),
            "detector_size": list(detector_size) if resized and detector_size else None, "passed": report.passed, "min_cosine": worst, "failed": failed,
            "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default=",".join(e.name for e in list_entries()))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--shape", action="append", default=[], help="NAME=SHAPE, e.g. frcnn-r50-fpn-layer4=1x3x320x426")
    parser.add_argument("--detector-size", help="MIN,MAX: the detectors' resize, e.g. 320,480 (default: the entry's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gate_faithful.json")
    args = parser.parse_args()
    shapes = {name: tuple(int(d) for d in shape.split("x")) for name, shape in (s.split("=", 1) for s in args.shape)}
    size = tuple(int(v) for v in args.detector_size.split(",")) if args.detector_size else None
    detector_size = (size[0], size[1]) if size else None
    runs: list[dict[str, Any]] = []
    for name in args.entries.split(","):
        for seed in range(args.seeds):
            runs.append(run(name, seed, shapes.get(name), detector_size))
            print(f"{name} seed {seed}: {'pass' if runs[-1]['passed'] else 'FAIL'} ({runs[-1]['seconds']} s)", flush=True)
            passed = sum(r["passed"] for r in runs)
            write_json(args.out, {"runs": runs, "passed": passed, "total": len(runs), "false_alarms": len(runs) - passed})
    print(f"{passed}/{len(runs)} faithful runs passed; wrote {args.out}")


if __name__ == "__main__":
    main()

"""The gate's false-alarm rate: faithful exports of every zoo entry, over 10 seeds, must pass ``check``.

For each entry and seed, the model is built with that weight seed, exported in memory, and checked
PyTorch against ONNX Runtime on random inputs drawn with the same seed, with the default preset
(``auto``: fp32 for an export). Issue #17's acceptance: every run passes. Writes JSON (default
benchmarks/results/gate_faithful.json).

    python benchmarks/gate_faithful.py [--entries a,b] [--seeds 10] [--out FILE]
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


def run(name: str, seed: int) -> dict[str, Any]:
    entry = get_entry(name)
    loaded = _from_entry(entry, entry.build(seed), f"zoo:{name}")
    started = time.perf_counter()
    report = ad.check(loaded, seed=seed, backends=("torch", "ort"))
    worst = min((v.stats.cosine for c in report.comparisons for v in c.outputs), default=1.0)
    failed = [f"{v.stats.name}: {v.reason}" for c in report.comparisons for v in c.outputs if not v.passed]
    return {"entry": name, "seed": seed, "passed": report.passed, "min_cosine": worst, "failed": failed,
            "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default=",".join(e.name for e in list_entries()))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gate_faithful.json")
    args = parser.parse_args()
    runs = []
    for name in args.entries.split(","):
        for seed in range(args.seeds):
            runs.append(run(name, seed))
            print(f"{name} seed {seed}: {'pass' if runs[-1]['passed'] else 'FAIL'} ({runs[-1]['seconds']} s)", flush=True)
    passed = sum(r["passed"] for r in runs)
    write_json(args.out, {"runs": runs, "passed": passed, "total": len(runs), "false_alarms": len(runs) - passed})
    print(f"{passed}/{len(runs)} faithful runs passed; wrote {args.out}")


if __name__ == "__main__":
    main()

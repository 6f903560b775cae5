"""Preferred batch sizes for Triton's dynamic batcher, from what ``attn-deploy bench --batch ... --report`` (or ``--json``) measured.

The report names each file it measured with its sha256 (``artifacts``); a packaged model takes the
results of the files with its own checksum, so a report of another model (or of an older build of
this one) is refused rather than applied. The preferred sizes are those whose throughput (items per
second, best over the backends that ran the file) is within ``TRITON_PREFERRED_WITHIN`` of the best.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn_deploy import defaults
from attn_deploy.artifact.fileio import sha256_file
from attn_deploy.artifact.io import read_json
from attn_deploy.errors import InputError

BENCH_FORMAT = "attn-deploy-bench/1"


@dataclass(frozen=True)
class Preferred:
    """The chosen batch sizes and why (a line for the output)."""

    sizes: tuple[int, ...]
    why: str


def read_bench_report(path: Path) -> dict[str, Any]:
    """The JSON ``bench --report`` (or ``--json``) wrote; InputError when it is not one (or predates the file checksums)."""
    report = read_json(path)
    if not isinstance(report, dict) or report.get("format") != BENCH_FORMAT:
        raise InputError(f"--bench-report {path} is not a report of attn-deploy bench (--report, --json); write one with attn-deploy bench MODEL FILE --batch 1,2,4,8 --report {path}")
    if not isinstance(report.get("artifacts"), dict):
        raise InputError(f"--bench-report {path} does not record the files it measured (an older bench); run attn-deploy bench again")
    return report


def preferred_batches(report: dict[str, Any], path: Path, model_file: Path) -> Preferred | None:
    """The preferred sizes for ``model_file`` from ``report`` (read from ``path``); None when the report did not measure it."""
    digest = sha256_file(model_file)
    labels = {label for label, f in report["artifacts"].items() if isinstance(f, dict) and f.get("sha256") == digest}
    best: dict[int, float] = {}
    for r in report.get("results") or []:
        if r.get("backend") in labels:
            batch, throughput = int(r["batch"]), float(r["latency_s"]["throughput"])
            best[batch] = max(best.get(batch, 0.0), throughput)
    if not best:
        return None
    top = max(best.values())
    chosen = tuple(sorted(b for b, t in best.items() if t >= top * (1 - defaults.TRITON_PREFERRED_WITHIN)))
    rates = ", ".join(f"b{b} {best[b]:.1f}/s" for b in sorted(best))
    why = (f"preferred batch sizes {', '.join(map(str, chosen))} from {path.name}: throughput within "
           f"{defaults.TRITON_PREFERRED_WITHIN:.0%} of the best ({rates})")
    return Preferred(chosen, why)


def measured_files(report: dict[str, Any]) -> str:
    """What the report measured, for an error line."""
    names = sorted({Path(str(f.get("path", "?"))).name for f in report["artifacts"].values() if isinstance(f, dict)})
    return ", ".join(names) or "no model files"

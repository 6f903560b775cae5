"""What ``attn-deploy quantize`` shows: sizes and latency as a table, then one line per finding."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType
from rich.table import Table

#: Quantized nodes listed by name up to this many; by op type beyond.
SHOWN_BY_NAME = 12


def _table(report: Mapping[str, Any], title: str) -> Table:
    sizes = report["size_bytes"]
    table = Table(title=title)
    table.add_column("")
    table.add_column("float", justify="right")
    table.add_column("int8", justify="right")
    table.add_row("size (MB)", f"{sizes['float'] / 1e6:.2f}", f"{sizes['int8'] / 1e6:.2f}")
    if report.get("latency"):
        lat = report["latency"]
        table.add_row("latency (ms, median)", f"{lat['float_ms']:.1f}", f"{lat['int8_ms']:.1f} ({lat['speedup']:.2f}x)")
        if "float_lowered_ms" in lat:
            table.add_row("float lowered for ORT", f"{lat['float_lowered_ms']:.1f}", f"({lat['speedup_vs_float_lowered']:.2f}x)")
    return table


def _static_lines(static: Mapping[str, Any]) -> list[str]:
    cal = static["calibration"]
    cosines = static.get("output_cosine") or {}
    lines = [f"calibrated on {cal['samples']} sample(s) ({cal['method']}); lowest output cosine on them "
             f"{min(cosines.values(), default=float('nan')):.6f} (target {static['target_cosine']}, {static['rounds']} round(s))"]
    if static.get("detection"):
        det = static["detection"]
        border = f" (+{det['borderline']} borderline)" if det.get("borderline") else ""
        lines.append(f"detections on the worst calibration sample: {det['matched']}/{det.get('counted') or max(det['reference_count'], det['candidate_count'])}"
                     f"{border} matched at IoU {det['thresholds']['iou']}, score error {det['max_score_error']:.3f}")
    if cal.get("why"):
        lines.append(f"calibration memory: {cal['why']}")
    if static.get("kept_float_automatically"):
        lines.append(f"kept float automatically: {', '.join(static['kept_float_automatically'])}")
    noisiest = list(static.get("node_sqnr_db", {}).items())[:3]
    if noisiest:
        lines.append("noisiest int8 nodes (SQNR of the activation each writes): " + ", ".join(f"{n} {db:.1f} dB" for n, db in noisiest))
    return lines


def _lines(report: Mapping[str, Any]) -> list[str]:
    lines = [f"mode: {report['mode']}"] if report.get("mode") else []
    if report.get("static"):
        lines.extend(_static_lines(report["static"]))
    if report.get("attention_lowering"):
        picked = ", ".join(f"{c['node']}: {c['implementation']}" for c in report["attention_lowering"])
        lines.append(f"attention lowered for ONNX Runtime: {picked}")
    nodes = report["nodes"]
    if len(nodes["quantized"]) > SHOWN_BY_NAME:  # a whole detector: hundreds of names say less than the counts
        by_type = ", ".join(f"{op} {count}" for op, count in nodes["quantized_by_op_type"].items())
        lines.append(f"quantized {len(nodes['quantized'])} node(s): {by_type} (names in --json / --report)")
    else:
        lines.append(f"quantized {len(nodes['quantized'])} node(s): {', '.join(nodes['quantized']) or '-'}")
    reasons = Counter(s["why"] for s in nodes["skipped"])
    lines.extend(f"kept float: {count} x {why}" for why, count in reasons.items())
    for s in report.get("parity") or ():
        lines.append(f"parity {s['name']}: cosine {s['cosine']:.6f}, max abs {s['max_abs']:.3g} (max |ref| ratio {s['rel_to_max']:.3g})")
    if report.get("detection"):
        d = report["detection"]
        border = f", +{d['borderline']} borderline" if d.get("borderline") else ""
        lines.append(f"detections matched at IoU >= {d['iou_threshold']}: {d['matched']}/{d.get('counted') or d['reference_detections']} "
                     f"({d['matched_fraction']:.3f}{border})")
    return lines


def render_report(report: Mapping[str, Any], title: str) -> list[RenderableType]:
    """The sizes/latency table, then lines (rich markup) for lowering, quantized and kept nodes, parity."""
    return [_table(report, title), *_lines(report)]


def warning_lines(warnings: list[str]) -> list[str]:
    return [f"[yellow]warning:[/yellow] {note}" for note in warnings]

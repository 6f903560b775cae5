"""Writers for a CheckReport: a rich table for people, JSON, Markdown (CI step summary) and JUnit XML."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from attn_deploy.check.gate import CheckReport, Comparison, OutputVerdict
from attn_deploy.check.per_attention import AttentionResult, AttentionVerdict
from attn_deploy.render import with_notes, write_files
from attn_deploy.runtime.backends import short_label


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _verdict_dict(o: OutputVerdict) -> dict[str, Any]:
    return {
        **{k: (_num(v) if isinstance(v, float) else v) for k, v in o.stats.to_dict().items()},
        "tolerance": vars(o.tolerance),
        "passed": o.passed,
        "reason": o.reason,
        "warning": o.warning,
    }


def _attention_dict(result: AttentionResult) -> dict[str, Any]:
    first = result.first_failure
    return {
        "passed": result.passed,
        "summary": result.summary,
        "first_failure": first.point.to_dict() if first else None,
        "attentions": [
            {**a.point.to_dict(), "reference": a.reference or None, "compared": a.compared, "passed": a.passed,
             **({"stats": _verdict_dict(a.verdict)} if a.verdict is not None else {"reason": a.reason})}
            for a in result.attentions
        ],
    }


def to_dict(report: CheckReport) -> dict[str, Any]:
    """The JSON report: settings, inputs, versions, skipped backends, and per comparison every statistic."""
    comparisons = []
    for c in report.comparisons:
        comparisons.append(
            {
                "candidate": c.label,
                "sample": c.sample,
                "precision": c.precision,
                "passed": c.passed,
                "outputs": [_verdict_dict(o) for o in c.outputs],
                "detection": c.detection.to_dict() if c.detection else None,
                **({"attention": _attention_dict(c.attention)} if c.attention is not None else {}),
            }
        )
    return {
        "format": "attn-deploy-check/1",
        "passed": report.passed,
        "source": report.source,
        "reference": report.reference,
        "samples": report.samples,
        "inputs": report.inputs,
        "settings": report.settings,
        "skipped": [{"backend": s.label, "reason": s.reason} for s in report.skipped],
        "notes": report.notes,
        "comparisons": comparisons,
        "versions": report.versions,
    }


def _label(c: Comparison, samples: int) -> str:
    return short_label(c.label) + (f" #{c.sample}" if samples > 1 else "")


def render_table(report: CheckReport) -> Table:
    table = Table(title=f"parity against {report.reference}", title_justify="left")
    for col in ("candidate", "output", "max abs", "p99 abs", "max rel", "cosine", "NaN", "result"):
        table.add_column(col, justify="left" if col in ("candidate", "output", "result") else "right")
    for c in report.comparisons:
        for o in c.outputs:
            s = o.stats
            verdict = "[green]pass[/green]" if o.passed else f"[red]FAIL[/red] {o.reason}"
            if o.reason.startswith("judged by"):
                verdict = "[dim]see detections[/dim]"
            if o.warning:
                verdict += f" [yellow]warning:[/yellow] {o.warning}"
            table.add_row(_label(c, report.samples), s.name, f"{s.max_abs:.2g}", f"{s.p99_abs:.2g}", f"{s.max_rel:.2g}",
                          f"{s.cosine:.6f}", str(s.nonfinite), verdict)
        if c.detection:
            d = c.detection
            verdict = "[green]pass[/green]" if d.passed else "[red]FAIL[/red]"
            table.add_row(_label(c, report.samples), "detections", d.tally,
                          f"IoU≥{d.thresholds.iou}", f"mIoU {d.mean_iou:.3f}", f"Δscore {d.max_score_error:.1g}", "", verdict)
        for a in c.attention.attentions if c.attention else []:
            table.add_row(_label(c, report.samples), *_attention_cells(a))
    summaries = [f"{_label(c, report.samples)}: {c.attention.summary}" for c in report.comparisons if c.attention is not None]
    return with_notes(table, [*summaries, *(f"skipped {s.label}: {s.reason}" for s in report.skipped), *(f"note: {n}" for n in report.notes)])


def _attention_name(a: AttentionVerdict) -> str:
    """How reports name an attention: ``attention blocks.0 (FusedAttention_0)``."""
    module = a.point.module if a.point.module is not None else "?"
    return f"attention {module or '<model>'} ({a.point.node})"


def _attention_cells(a: AttentionVerdict) -> list[str]:
    """The table cells after the candidate's for one attention."""
    if a.verdict is None:
        return [escape(_attention_name(a)), "", "", "", "", "", f"[dim]not compared: {a.reason}[/dim]"]
    s, o = a.verdict.stats, a.verdict
    verdict = "[green]pass[/green]" if o.passed else f"[red]FAIL[/red] {o.reason}"
    verdict += f" [dim](reference: {a.reference})[/dim]" if a.reference.startswith("exported") else ""
    if o.warning:
        verdict += f" [yellow]warning:[/yellow] {o.warning}"
    return [escape(_attention_name(a)), f"{s.max_abs:.2g}", f"{s.p99_abs:.2g}", f"{s.max_rel:.2g}", f"{s.cosine:.6f}", str(s.nonfinite), verdict]


def to_markdown(report: CheckReport) -> str:
    lines = [
        f"### attn-deploy check: {'✅ passed' if report.passed else '❌ failed'}",
        "",
        f"Reference `{report.reference}`, {report.samples} sample(s), inputs "
        + ", ".join(f"`{i['name']}` {'x'.join(map(str, i['shape']))}" for i in report.inputs),
        "",
        "| candidate | output | max abs | p99 abs | max rel | cosine | NaN/Inf | result |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in report.comparisons:
        for o in c.outputs:
            s = o.stats
            result = ("pass" if o.passed else f"**FAIL** {o.reason}") + (f" ⚠️ {o.warning}" if o.warning else "")
            lines.append(f"| `{_label(c, report.samples)}` | {s.name} | {s.max_abs:.3g} | {s.p99_abs:.3g} | {s.max_rel:.3g} | "
                         f"{s.cosine:.6f} | {s.nonfinite} | {result} |")
        if c.detection:
            d = c.detection
            lines.append(f"| `{_label(c, report.samples)}` | detections | {d.tally} matched "
                         f"at IoU≥{d.thresholds.iou} | mean IoU {d.mean_iou:.4f} | score err {d.max_score_error:.2g} | | | "
                         f"{'pass' if d.passed else '**FAIL**'} |")
        for a in c.attention.attentions if c.attention else []:
            lines.append(_attention_markdown(_label(c, report.samples), a))
    for skip in report.skipped:
        lines.append(f"| `{skip.label}` | | | | | | | skipped: {skip.reason} |")
    summaries = [f"**{_label(c, report.samples)}**: {c.attention.summary}" for c in report.comparisons if c.attention is not None]
    lines.extend(["", *(f"- {line}" for line in summaries)] if summaries else [])
    lines.extend(["", *(f"> note: {n}" for n in report.notes)] if report.notes else [])
    return "\n".join(lines) + "\n"


def _attention_markdown(label: str, a: AttentionVerdict) -> str:
    name = _attention_name(a)
    if a.verdict is None:
        return f"| `{label}` | {name} | | | | | | not compared: {a.reason} |"
    s, o = a.verdict.stats, a.verdict
    result = ("pass" if o.passed else f"**FAIL** {o.reason}") + (f" (reference: {a.reference})" if a.reference.startswith("exported") else "")
    return f"| `{label}` | {name} | {s.max_abs:.3g} | {s.p99_abs:.3g} | {s.max_rel:.3g} | {s.cosine:.6f} | {s.nonfinite} | {result} |"


def to_junit(report: CheckReport) -> str:
    """One testcase per (candidate, sample, output), plus one per detection comparison, per attention
    (``--per-attention``; one not compared is a pass with its reason in ``system-out``) and per skip."""
    suite = ET.Element("testsuite", name="attn-deploy check")
    tests = failures = skips = 0
    for c in report.comparisons:
        cases = [(o.stats.name, o.passed, o.reason) for o in c.outputs]
        if c.detection:
            d = c.detection
            cases.append(("detections", d.passed, f"matched {d.matched_fraction:.4f} ({d.tally}; min {d.thresholds.min_matched}), max score error {d.max_score_error:.3g}"))
        for a in c.attention.attentions if c.attention else []:
            cases.append((_attention_name(a), a.passed, a.verdict.reason if a.verdict is not None else f"not compared: {a.reason}"))
        for name, passed, reason in cases:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=_label(c, report.samples), name=name)
            if not passed:
                failures += 1
                ET.SubElement(case, "failure", message=reason)
            elif reason.startswith("not compared"):
                ET.SubElement(case, "system-out").text = reason
    for s in report.skipped:
        tests += 1
        skips += 1
        case = ET.SubElement(suite, "testcase", classname=s.label, name="run")
        ET.SubElement(case, "skipped", message=s.reason)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skips))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_reports(report: CheckReport, json_path: Path | None, markdown_path: Path | None, junit_path: Path | None) -> None:
    write_files([
        (json_path, lambda: (json.dumps(to_dict(report), indent=2) + "\n").encode()),
        (markdown_path, lambda: to_markdown(report).encode()),
        (junit_path, lambda: to_junit(report).encode()),
    ])

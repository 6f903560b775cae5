"""``check``: run SOURCE and every ARTIFACT on the same inputs and judge each against SOURCE.

The first runnable backend is the reference (PyTorch for a PyTorch SOURCE, else ONNX Runtime on
the SOURCE .onnx); each candidate's tolerance preset is its backend's precision rule
(``runtime/backends.py``) unless ``--precision`` names one. Each other runner is judged output by output (tolerances.py) or, for detector
outputs, by detection matching (detection.py). The report feeds the table, JSON, Markdown and
JUnit writers in report.py; ``passed`` is the gate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn_deploy.artifact.manifest import library_versions
from attn_deploy.check.detection import (
    DetectionResult,
    DetectionSelection,
    DetectionThresholds,
    detection_roles,
    match_detections,
)
from attn_deploy.check.stats import ErrorStats, error_stats
from attn_deploy.check.tolerances import Tolerance, ToleranceOverrides, tolerances_for
from attn_deploy.check.vacuity import inputs_differ, output_warnings
from attn_deploy.errors import InputError
from attn_deploy.runtime.backends import Skipped
from attn_deploy.runtime.base import Feeds
from attn_deploy.runtime.inputs import load_samples, random_feeds
from attn_deploy.runtime.workload import (
    Candidate,
    Reference,
    Workload,
    WorkloadOptions,
    prepare_workload,
)

if TYPE_CHECKING:
    from attn_deploy.artifact.artifact import Artifact
    from attn_deploy.check.per_attention import AttentionPlan, AttentionResult
    from attn_deploy.runtime.backends import Planned, Target
    from attn_deploy.runtime.base import Runner

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CheckOptions:
    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    seed: int = 0
    val_range: tuple[float, float] | None = None
    data: Path | None = None
    overrides: ToleranceOverrides = field(default_factory=lambda: ToleranceOverrides({}, {}, {}))
    precision: str = "auto"
    detection: DetectionThresholds = field(default_factory=DetectionThresholds)
    #: What the detector keeps, for borderline detections; None: as the workload found it (the
    #: PyTorch SOURCE's attributes, else the manifest).
    selection: DetectionSelection | None = None
    #: Run ``data`` holding NaN or Inf instead of refusing it.
    allow_nonfinite: bool = False
    #: Random integer inputs (token ids) are drawn below this; None: the embedding's rows (``runtime/inputs.py``).
    vocab: int | None = None
    #: Also compare every attention's output and name the first out of tolerance (``per_attention.py``).
    per_attention: bool = False


@dataclass(frozen=True)
class OutputVerdict:
    stats: ErrorStats
    tolerance: Tolerance
    passed: bool
    reason: str
    #: Why a match on this output proves little (constant reference, or one the input does not change);
    #: it never changes ``passed``.
    warning: str | None = None


@dataclass(frozen=True)
class Comparison:
    label: str
    sample: int
    precision: str
    outputs: list[OutputVerdict]
    detection: DetectionResult | None
    passed: bool
    #: ``--per-attention``: every attention of the candidate, judged (None without it).
    attention: AttentionResult | None = None


@dataclass
class CheckReport:
    source: str
    reference: str
    samples: int
    inputs: list[dict[str, Any]]
    comparisons: list[Comparison]
    skipped: list[Skipped]
    settings: dict[str, object]
    #: Why a candidate's tolerance preset is not the one its file suggests (see ``runtime/precision.py``).
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=library_versions)

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and all(c.passed for c in self.comparisons)


def judge_outputs(reference: Feeds, candidate: Feeds, tolerances: dict[str, Tolerance], detection_outputs: Collection[str]) -> list[OutputVerdict]:
    from polygraphy.comparator.compare import SimpleCompareFunc
    from polygraphy.comparator.struct import IterationResult

    from attn_deploy.runtime.ort_runner import quiet_polygraphy

    quiet_polygraphy()
    judged = [n for n in reference if n not in detection_outputs]
    missing = [n for n in reference if n not in candidate]
    if missing:
        raise InputError(f"the candidate has no outputs named {missing} (it has {sorted(candidate)}); compare models with the same outputs")
    compare = SimpleCompareFunc(
        check_shapes=True,
        atol={n: tolerances[n].atol for n in judged},
        rtol={n: tolerances[n].rtol for n in judged},
        check_error_stat={n: tolerances[n].check_error_stat for n in judged},
        infinities_compare_equal=True,
    )
    poly = compare(
        IterationResult({n: reference[n] for n in judged}, runner_name="reference"),
        IterationResult({n: candidate[n] for n in judged}, runner_name="candidate"),
    ) if judged else {}
    verdicts = []
    for name in reference:
        stats = error_stats(name, reference[name], candidate[name])
        tol = tolerances[name]
        if name not in judged:
            verdicts.append(OutputVerdict(stats, tol, True, "judged by detection matching"))
            continue
        reasons = []
        if not stats.shapes_match:
            reasons.append(f"shape {list(stats.shape_out)} != {list(stats.shape_ref)}")
        elif stats.nonfinite > stats.nonfinite_ref:
            reasons.append(f"{stats.nonfinite} NaN/Inf values (reference has {stats.nonfinite_ref})")
        else:
            if not bool(poly[name]):
                reasons.append(f"{tol.check_error_stat} error above atol={tol.atol:g} and rtol={tol.rtol:g}")
            if stats.cosine < tol.min_cosine:
                reasons.append(f"cosine {stats.cosine:.6f} < {tol.min_cosine}")
        verdicts.append(OutputVerdict(stats, tol, not reasons, "; ".join(reasons) or "ok"))
    return verdicts


def run_check(
    source: Reference, artifacts: Sequence[Candidate] = (), options: CheckOptions = CheckOptions(), progress: Progress = lambda _: None
) -> CheckReport:
    """Run the gate. Raises ``InputError`` for usage problems (exit 2); ``report.passed`` is the verdict."""
    return check_workload(prepare_workload(source, artifacts, options.workload, progress), options, progress)


def _run_all(
    work: Workload, samples: list[Feeds], progress: Progress, probe: Feeds | None = None,
    planned: Sequence[Planned] | None = None, make: Callable[[Planned], Runner] | None = None,
) -> tuple[dict[str, list[Feeds]], Feeds | None]:
    """Every runner (``planned``, default the workload's, made by ``make``) on every sample; the
    reference (first) also on ``probe``, whose outputs come second."""
    results: dict[str, list[Feeds]] = {}
    probed = None
    for i, p in enumerate(planned if planned is not None else work.planned):
        progress(f"running {p.label} on {len(samples)} sample(s)")
        with (make or work.make_runner)(p) as runner:
            results[p.label] = [runner.infer(s) for s in samples]
            if i == 0 and probe is not None:
                probed = runner.infer(probe)
    return results, probed


def check_workload(work: Workload, options: CheckOptions = CheckOptions(), progress: Progress = lambda _: None) -> CheckReport:
    """``run_check`` on a prepared workload (``demo`` checks and benches one workload)."""
    planned, skipped, specs, output_names = work.planned, work.skipped, work.specs, work.output_names
    if len(planned) < 2:
        why = "; ".join(f"{s.label}: {s.reason}" for s in skipped) or "give an ARTIFACT or more --backends"
        raise InputError(f"check needs a reference and at least one candidate that can run here ({why})")
    samples = load_samples(
        options.data, specs, seed=options.seed, val_range=options.val_range, preprocess=work.preprocess,
        allow_nonfinite=options.allow_nonfinite, vocab=options.vocab,
    )
    # One more reference run on another input shows an output that ignores its input (one sample only:
    # several samples already are different inputs).
    probe = random_feeds(specs, options.seed + 1, options.val_range, work.preprocess, options.vocab) if len(samples) == 1 else None
    probe = probe if probe is not None and inputs_differ(samples[0], probe) else None
    plan = _plan_attention(work, progress) if options.per_attention else None
    if plan is None:
        results, probed = _run_all(work, samples, progress, probe)
        attention: dict[str, list[Feeds]] = {}
    else:
        results, probed, attention = _run_tapped(work, plan, samples, progress, probe)
    reference = planned[0]
    roles = detection_roles(output_names, work.detection)
    selection = options.selection or (DetectionSelection.from_json(work.detection_selection) if work.detection_selection else None)
    warnings = output_warnings(results[reference.label], samples, (probe, probed) if probe is not None and probed is not None else None)
    comparisons = []
    notes: list[str] = list(work.notes)
    attention_warnings: dict[str, str] = {}
    if plan is not None:
        notes.extend(plan.notes)
        probed_attention = attention[PROBED][0] if probe is not None and PROBED in attention else None
        attention_warnings = output_warnings(attention.get(reference.label, []), samples,
                                             (probe, probed_attention) if probe is not None and probed_attention is not None else None)
    for p in planned[1:]:
        if options.precision == "auto":
            choice = p.precision
            precision: str = choice.precision
            notes.extend([choice.note] if choice.note else [])
        else:
            precision = options.precision
        tolerances = tolerances_for(output_names, precision, options.overrides)
        for i, (ref, cand) in enumerate(zip(results[reference.label], results[p.label])):
            verdicts = [dataclasses.replace(v, warning=warnings.get(v.stats.name))
                        for v in judge_outputs(ref, cand, tolerances, roles.values() if roles else ())]
            detection = match_detections(ref, cand, options.detection, roles, selection) if roles else None
            passed = all(v.passed for v in verdicts) and (detection is None or detection.passed)
            judged = None
            if plan is not None:
                judged = _judge_attention(plan, p.label, i, attention, precision, options, passed, attention_warnings)
                passed = passed and judged.passed
            comparisons.append(Comparison(p.label, i, precision, verdicts, detection, passed, judged))
    return CheckReport(
        source=work.source,
        reference=reference.label,
        samples=len(samples),
        inputs=[{"name": s.name, "shape": list(s.shape), "dtype": s.dtype.name} for s in specs],
        comparisons=comparisons,
        skipped=skipped,
        notes=notes,
        settings={
            "backends": list(work.options.backends),
            "seed": options.seed,
            "val_range": list(options.val_range) if options.val_range else None,
            "data": str(options.data) if options.data else None,
            "precision": options.precision,
            "detection": {**vars(options.detection), "outputs": roles,
                          "selection": {**selection.to_json(), "found": "--score-threshold/--max-detections" if options.selection
                                        else (work.detection_selection or {}).get("found")} if selection else None}
            if roles else None,
            "per_attention": options.per_attention,
        },
    )


#: Where ``_run_tapped`` keeps the reference's attention outputs on the probe input.
PROBED = "<probe>"


def _plan_attention(work: Workload, progress: Progress) -> AttentionPlan:
    from attn_deploy.check.per_attention import plan_attention
    from attn_deploy.runtime.workload import export_reference

    def export(like: Artifact) -> Target:
        progress("exporting the reference to ONNX (the reference of attentions fused from the exported graph)")
        return export_reference(work, like, progress)

    return plan_attention(work.planned, [s.name for s in work.specs], work.output_names, work.torch_output_names, export)


def _run_tapped(
    work: Workload, plan: AttentionPlan, samples: list[Feeds], progress: Progress, probe: Feeds | None
) -> tuple[dict[str, list[Feeds]], Feeds | None, dict[str, list[Feeds]]]:
    """``_run_all`` with tapped runners: (final outputs, probe outputs, attention outputs) by label."""
    runs = [*work.planned, *([plan.extra] if plan.extra is not None and plan.extra.label not in {p.label for p in work.planned} else [])]
    tapped, probed = _run_all(work, samples, progress, probe, runs, plan.make_runner)
    results: dict[str, list[Feeds]] = {}
    attention: dict[str, list[Feeds]] = {}
    for p in runs:
        names = work.torch_output_names if p.backend.runs == "pytorch" else work.output_names
        split = [plan.split(p.label, feeds, names) for feeds in tapped[p.label]]
        results[p.label] = [finals for finals, _ in split]
        attention[p.label] = [attn for _, attn in split]
    if probed is not None:
        reference = work.planned[0]
        names = work.torch_output_names if reference.backend.runs == "pytorch" else work.output_names
        probed, probed_attention = plan.split(reference.label, probed, names)
        attention[PROBED] = [probed_attention]
    if work.planned[0].backend.runs == "pytorch" and plan.points(work.planned[0].label) and not any(attention[work.planned[0].label]):
        plan.notes.append(f"PyTorch made another number of attention calls than {work.planned[0].target.name}'s routed FusedAttention "
                          "nodes: its routed attentions have no reference")
    return results, probed, attention


def _judge_attention(
    plan: AttentionPlan, label: str, sample: int, attention: dict[str, list[Feeds]], precision: str, options: CheckOptions,
    outputs_passed: bool, warnings: dict[str, str],
) -> AttentionResult:
    """``label``'s attentions on ``sample`` against the reference's, and the exported fp32 model's for fused ones."""
    from attn_deploy.check.per_attention import EXPORTED_REFERENCE, judge_attention

    reference = plan.reference
    references = {t: (v, reference) for t, v in attention[reference][sample].items()}
    if plan.extra is not None and plan.extra.label != label:
        for t, v in attention[plan.extra.label][sample].items():
            references.setdefault(t, (v, EXPORTED_REFERENCE))
    return judge_attention(plan.points(label), references, attention[label][sample], precision, options.overrides, outputs_passed, warnings)

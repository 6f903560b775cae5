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
from typing import Any

from attn_deploy.artifact.manifest import library_versions
from attn_deploy.check.detection import (
    DetectionResult,
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
    #: Run ``data`` holding NaN or Inf instead of refusing it.
    allow_nonfinite: bool = False
    #: Random integer inputs (token ids) are drawn below this; None: the embedding's rows (``runtime/inputs.py``).
    vocab: int | None = None


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


def _judge_outputs(reference: Feeds, candidate: Feeds, tolerances: dict[str, Tolerance], detection_outputs: Collection[str]) -> list[OutputVerdict]:
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


def _run_all(work: Workload, samples: list[Feeds], progress: Progress, probe: Feeds | None = None) -> tuple[dict[str, list[Feeds]], Feeds | None]:
    """Every runner on every sample; the reference (first) also on ``probe``, whose outputs come second."""
    results: dict[str, list[Feeds]] = {}
    probed = None
    for i, p in enumerate(work.planned):
        progress(f"running {p.label} on {len(samples)} sample(s)")
        with work.make_runner(p) as runner:
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
    results, probed = _run_all(work, samples, progress, probe)
    reference = planned[0]
    roles = detection_roles(output_names, work.detection)
    warnings = output_warnings(results[reference.label], samples, (probe, probed) if probe is not None and probed is not None else None)
    comparisons = []
    notes: list[str] = list(work.notes)
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
                        for v in _judge_outputs(ref, cand, tolerances, roles.values() if roles else ())]
            detection = match_detections(ref, cand, options.detection, roles) if roles else None
            passed = all(v.passed for v in verdicts) and (detection is None or detection.passed)
            comparisons.append(Comparison(p.label, i, precision, verdicts, detection, passed))
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
            "detection": {**vars(options.detection), "outputs": roles} if roles else None,
        },
    )

"""``check --per-attention``: compare every attention's output, and name the first one to go wrong.

Attentions are matched across models by their OUTPUT TENSOR NAME (the manifest's
``fused_attention[i].output``): ``lower``, ``fp16`` and ``quantize`` keep that name when they replace
a FusedAttention node by an ORT op or its body. Each runner is made to return those tensors beside
its outputs:

* ONNX Runtime: a copy of the model with each attention's output added as a graph output.
* TensorRT: an engine built with ``build-trt --debug-attention`` keeps them as outputs; its build
  report lists them (``debug_attention``).
* PyTorch: ``ops/recording.py`` records every op call, the model running with SDPA and MHA routed
  through the op; call i is the i-th ROUTED FusedAttention node of the exported graph. An
  attention fused from the exported graph (hand-written, no op call) takes the exported fp32 model
  run in ONNX Runtime as its reference, and the report says so.

Each attention is judged as a final output is (``gate.judge_outputs``, same presets and overrides).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.attention_outputs import AttentionPoint, engine_points, onnx_points, with_attention_outputs
from attn_deploy.check.gate import OutputVerdict, judge_outputs
from attn_deploy.check.tolerances import ToleranceOverrides, tolerances_for
from attn_deploy.errors import InputError
from attn_deploy.runtime.backends import Backend, Planned, Target
from attn_deploy.runtime.base import Feeds, Runner

#: How the report names the reference of an attention fused from the exported graph.
EXPORTED_REFERENCE = "exported fp32 in ORT"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class AttentionVerdict:
    """One attention judged in one comparison.

    ``reference`` is what the candidate's attention was compared with: the reference runner's label,
    or ``EXPORTED_REFERENCE``; ``verdict`` is None when there was nothing to compare with (``reason``).
    """

    point: AttentionPoint
    reference: str
    verdict: OutputVerdict | None = None
    reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is None or bool(self.verdict.passed)

    @property
    def compared(self) -> bool:
        return self.verdict is not None


@dataclass(frozen=True)
class AttentionResult:
    """Every attention of one candidate on one sample, in the candidate's graph order."""

    attentions: list[AttentionVerdict]
    #: Did the final outputs pass (the summary says where a final-output failure starts).
    outputs_passed: bool

    @property
    def first_failure(self) -> AttentionVerdict | None:
        return next((a for a in self.attentions if not a.passed), None)

    @property
    def passed(self) -> bool:
        return self.first_failure is None

    @property
    def summary(self) -> str:
        compared = [a for a in self.attentions if a.compared]
        first = self.first_failure
        if first is not None:
            reason = first.verdict.reason if first.verdict is not None else ""
            later = sum(1 for a in compared if not a.passed) - 1
            return (f"first attention out of tolerance: {first.point.where}, tensor {first.point.tensor} ({reason})"
                    + (f"; {later} later attention(s) fail too" if later else ""))
        unmatched = len(self.attentions) - len(compared)
        tail = f" ({unmatched} without a reference)" if unmatched else ""
        if not self.outputs_passed:
            return f"all {len(compared)} attentions match{tail}: the fault is outside the attention"
        return f"all {len(compared)} attentions match{tail}"


@dataclass
class _Tap:
    """What one planned runner returns beside its outputs, and how to make it."""

    points: list[AttentionPoint]
    make: Callable[[], Runner]


@dataclass
class AttentionPlan:
    """The tapped runners of a workload; ``extra`` runs the exported fp32 model for fused attentions of a PyTorch reference."""

    #: The reference's label (its tap gives every other runner's attentions their reference).
    reference: str
    taps: dict[str, _Tap]
    extra: Planned | None = None
    notes: list[str] = field(default_factory=list)

    def make_runner(self, planned: Planned) -> Runner:
        return self.taps[planned.label].make()

    def split(self, label: str, feeds: Feeds, outputs: Sequence[str]) -> tuple[Feeds, Feeds]:
        """A tapped runner's results as (final outputs, attention outputs by tensor)."""
        tensors = {p.tensor for p in self.taps[label].points}
        finals = {k: v for k, v in feeds.items() if k not in tensors or k in outputs}
        return finals, {k: v for k, v in feeds.items() if k in tensors}

    def points(self, label: str) -> list[AttentionPoint]:
        return self.taps[label].points


def _no_attention(target: Target) -> InputError:
    return InputError(
        f"--per-attention: {target.name} has no attention node (no FusedAttention, lowered or not, whose output tensor is in "
        "the graph); check its final outputs without --per-attention, or check the model `attn-deploy export` wrote"
    )


def _ort_tap(planned: Planned, input_names: list[str], output_names: list[str]) -> _Tap:
    from attn_deploy.runtime.ort_runner import OrtRunner

    artifact = planned.target.artifact
    assert artifact is not None
    points = onnx_points(artifact)
    if not points:
        raise _no_attention(planned.target)
    tapped = with_attention_outputs(artifact, [p.tensor for p in points])
    return _Tap(points, lambda: OrtRunner(tapped))


def _engine_tap(planned: Planned, input_names: list[str], output_names: list[str]) -> _Tap:
    from attn_deploy.runtime.trt_runner import build_report

    assert planned.target.engine is not None
    points = engine_points(build_report(planned.target.engine))
    if not points:
        raise InputError(f"--per-attention: {planned.target.name} keeps no attention output; rebuild it with "
                         "`attn-deploy build-trt --debug-attention`")
    return _Tap(points, lambda: planned.make(input_names, output_names))


def plan_attention(
    planned: Sequence[Planned],
    input_names: list[str],
    output_names: list[str],
    torch_output_names: list[str],
    export: Callable[[Artifact], Target],
) -> AttentionPlan:
    """Tapped runners for ``planned`` (the first is the reference); ``InputError`` for a candidate with
    no attention to compare. ``export(like)`` exports a PyTorch reference as ``like`` was (its fp32
    model in ORT is the reference of attentions fused from the exported graph), called only when there are some."""
    taps: dict[str, _Tap] = {}
    for p in planned:
        if p.backend.runs == "onnx":
            taps[p.label] = _ort_tap(p, input_names, output_names)
        elif p.backend.runs == "engine":
            taps[p.label] = _engine_tap(p, input_names, output_names)
        elif p.backend.runs == "endpoint":
            raise InputError("--per-attention cannot look inside a served model (--backends triton); check the .onnx or .engine it serves")
    plan = AttentionPlan(planned[0].label, taps)
    reference = planned[0]
    if reference.backend.runs != "pytorch":
        return plan
    layout = next((p.target.artifact for p in planned if p.target.artifact is not None and p.target.artifact.manifest.attention), None)
    if layout is None:
        raise InputError("--per-attention with a PyTorch reference needs an ONNX model `attn-deploy export` wrote (its manifest "
                         "says which node each attention became); give that .onnx as a candidate")
    points = onnx_points(layout)
    routed = [p for p in points if p.status == "routed"]
    by_node = {f.node: i for i, f in enumerate(f for f in layout.manifest.attention if f.status == "routed")}
    routed.sort(key=lambda p: by_node.get(p.node, len(by_node)))
    taps[reference.label] = _torch_tap(reference, input_names, torch_output_names, routed)
    if any(p.status != "routed" for p in points):
        target = export(layout)
        mine = next((p for p in planned[1:] if p.target is target), None)
        plan.extra = mine or Planned(f"ort:{target.name} ({EXPORTED_REFERENCE})", _ort_backend(), target)
        if mine is None:
            taps[plan.extra.label] = _ort_tap(plan.extra, input_names, output_names)
    return plan


def _ort_backend() -> Backend:
    from attn_deploy.runtime.backends import REGISTRY

    return REGISTRY["ort"]


def _torch_tap(planned: Planned, input_names: list[str], output_names: list[str], routed: list[AttentionPoint]) -> _Tap:
    from attn_deploy.runtime.torch_runner import RecordingTorchRunner

    assert planned.target.model is not None
    load = planned.target.model
    return _Tap(routed, lambda: RecordingTorchRunner(load().module, input_names, output_names, [p.tensor for p in routed]))


def judge_attention(
    points: Sequence[AttentionPoint],
    references: dict[str, tuple[np.ndarray, str]],
    candidate: Feeds,
    precision: str,
    overrides: ToleranceOverrides,
    outputs_passed: bool,
    warnings: dict[str, str],
) -> AttentionResult:
    """Each of ``points`` (the candidate's, in its graph order) against ``references`` (tensor -> (value, whose))."""
    import dataclasses

    common = [p.tensor for p in points if p.tensor in references and p.tensor in candidate]
    tolerances = tolerances_for(common, precision, overrides)
    # An fp16 model's attention is compared in the reference's type, as its float32 outputs are.
    ours = {t: candidate[t].astype(references[t][0].dtype) if candidate[t].dtype.kind == "f" else candidate[t] for t in common}
    judged = {v.stats.name: v for v in judge_outputs({t: references[t][0] for t in common}, ours, tolerances, ())}
    verdicts = []
    for p in points:
        if p.tensor in judged:
            verdict = dataclasses.replace(judged[p.tensor], warning=warnings.get(p.tensor))
            verdicts.append(AttentionVerdict(p, references[p.tensor][1], verdict))
        else:
            why = "the candidate did not return it" if p.tensor not in candidate else "no reference has this attention"
            verdicts.append(AttentionVerdict(p, "", None, why))
    return AttentionResult(verdicts, outputs_passed)

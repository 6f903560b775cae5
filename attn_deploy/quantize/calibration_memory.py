"""How much memory static calibration takes, and a calibration that fits, chosen before it starts.

ONNX Runtime's histogram calibrators (``percentile``, ``entropy``) add every tensor they calibrate
(the inputs and outputs of each Conv/MatMul/Gemm) to the model's outputs and keep them for every
sample of a pass before building histograms: a pass holds ``samples x activations``. A whole
detector at 800x1333 holds about 2-3 GB of such activations per photograph, so 8 photographs in one
pass were killed at 24 GB. ``quantize_static``'s ``CalibStridedMinMax`` option (despite its name, it
cuts the pass for every calibrator: ``collect_data`` per stride, histograms merged) bounds a pass
to ``stride`` samples; the ``minmax`` calibrator reduces each tensor inside the graph (ReduceMin /
ReduceMax) and holds what one inference holds whatever the count.

Sizes come from ONNX shape inference; where it cannot resolve them (a whole detector resizes its
input by a factor computed at run time), from one profiled run of the model on the first sample
(ONNX Runtime's profile records every node's output shapes; the run holds what one inference
holds). The choice, in order: the requested method with as many samples per pass as fit (a divisor of the
sample count, as ORT requires); ``minmax`` when not even one sample's activations fit; an
``InputError`` with the estimate when not even that fits. Dimensions neither way resolves count
as 1: the estimate is then a lower bound, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from attn_deploy import defaults
from attn_deploy.errors import InputError
from attn_deploy.fuse.render import format_bytes
from attn_deploy.runtime.size_guard import available_memory

#: Copies of the weights alive while calibrating: the float reference session, the calibrator's
#: augmented model (loaded, saved, and its session).
WEIGHT_COPIES = 3
#: What one inference holds beyond its weights, in units of the largest activation (ORT's arena
#: reuses buffers, so a plain run holds a few activations at once, not all of them).
INFERENCE_LARGEST = 4
#: Transient copies the histogram collector makes of one tensor over a pass (stack, flatten, abs).
HISTOGRAM_COPIES = 3


@dataclass(frozen=True)
class Activations:
    """Bytes of the tensors calibration reads, per sample, and of the weights."""

    sizes: dict[str, int]
    weights: int
    unresolved: int = 0  # tensors with a dimension shape inference could not resolve (counted as 1)

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    @property
    def largest(self) -> int:
        return max(self.sizes.values(), default=0)


@dataclass(frozen=True)
class CalibrationPlan:
    """What calibration runs: ``method`` over passes of ``samples_per_pass``, and why."""

    method: str
    requested: str
    samples: int
    samples_per_pass: int
    estimate_bytes: int
    available_bytes: int | None
    why: str

    def extra_options(self) -> dict[str, object]:
        """``quantize_static``'s options for this plan (a pass of fewer samples than all of them is strided)."""
        return {"CalibStridedMinMax": self.samples_per_pass} if self.samples_per_pass < self.samples else {}

    def report(self) -> dict[str, object]:
        return {"method": self.method, "requested_method": self.requested, "samples": self.samples,
                "samples_per_pass": self.samples_per_pass, "estimate_bytes": self.estimate_bytes,
                "available_bytes": self.available_bytes, "why": self.why}


def _bytes(value: onnx.ValueInfoProto) -> tuple[int, bool]:
    """Bytes of a tensor value and whether every dimension was known."""
    tensor = value.type.tensor_type
    known, count = True, 1
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            count *= dim.dim_value
        else:
            known = False
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize
    return count * itemsize, known


def calibrated_activations(model_path: Path, op_types: Iterable[str], sample: Mapping[str, np.ndarray] | None = None) -> Activations:
    """The tensors ONNX Runtime's calibrators read for ``op_types`` (its own selection), with their bytes.

    With ``sample``, sizes shape inference leaves unresolved are measured on it (:func:`_profiled_bytes`).
    """
    from onnxruntime.quantization.calibrate import CalibraterBase

    base = CalibraterBase(model_path, op_types_to_calibrate=list(op_types))  # loads with shape inference, no session
    names, infos = base.select_tensors_to_calibrate(base.model)
    sizes, unknown = {}, set()
    for name in sorted(names):
        sizes[name], known = _bytes(infos[name])
        if not known:
            unknown.add(name)
    if unknown and sample is not None:
        measured = _profiled_bytes(model_path, sample)
        for name in list(unknown):
            if name in measured:
                sizes[name] = measured[name]
                unknown.discard(name)
    weights = sum(int(np.prod(t.dims, dtype=np.int64)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
                  for t in base.model.graph.initializer)
    return Activations(sizes, weights, len(unknown))


def _profiled_bytes(model_path: Path, sample: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Bytes of every node output (and input) of one run on ``sample``, from ONNX Runtime's profile.

    Graph optimisations are off so the profile's node names are the model's own.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(model_path.with_name(model_path.stem + "_profile"))
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    session.run(None, dict(sample))
    profile = Path(session.end_profiling())
    try:
        events = json.loads(profile.read_text())
    finally:
        profile.unlink(missing_ok=True)
    outputs = {n.name: list(n.output) for n in onnx.load_model(model_path, load_external_data=False).graph.node}
    sizes = {name: int(array.nbytes) for name, array in sample.items()}
    for event in events:
        node = str(event.get("name", ""))
        if event.get("cat") != "Node" or not node.endswith("_kernel_time"):
            continue
        for name, typed in zip(outputs.get(node[: -len("_kernel_time")], []), event.get("args", {}).get("output_type_shape", [])):
            for dtype, shape in typed.items():
                sizes[name] = int(np.prod(shape, dtype=np.int64)) * _itemsize(dtype)
    return sizes


#: Bytes per element of the type names ONNX Runtime's profile writes ("float" is float32 there).
_PROFILE_ITEMSIZE = {"float": 4, "double": 8, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
                     "int8": 1, "uint8": 1, "bool": 1}


def _itemsize(dtype: str) -> int:
    return _PROFILE_ITEMSIZE.get(dtype, 4)


def histogram_bytes(act: Activations, per_pass: int) -> int:
    """A histogram calibrator's peak: weights, ``per_pass`` samples of every calibrated tensor, the collector's copies."""
    return WEIGHT_COPIES * act.weights + per_pass * (act.total + HISTOGRAM_COPIES * act.largest)


def minmax_bytes(act: Activations) -> int:
    """The minmax calibrator's peak: weights and one inference (its per-tensor minima and maxima are scalars)."""
    return WEIGHT_COPIES * act.weights + min(act.total, INFERENCE_LARGEST * act.largest)


def plan_calibration(act: Activations, samples: int, method: str, available: int | None = None) -> CalibrationPlan:
    """A calibration of ``samples`` that fits the memory available now (``available``: bytes, default measured).

    Raises ``InputError`` (with the estimate) when not even ``minmax`` fits.
    """
    available = available_memory() if available is None else available
    budget = None if available is None else int(defaults.CALIBRATION_MEMORY_FRACTION * available)
    lower_bound = f" (at least: {act.unresolved} tensors have dimensions shape inference could not resolve)" if act.unresolved else ""
    if method == "minmax":
        need = minmax_bytes(act)
        if budget is None or need <= budget:
            return CalibrationPlan("minmax", method, samples, samples, need, available, "as requested; minmax holds one inference at a time")
    else:
        fitting = [s for s in range(samples, 0, -1) if samples % s == 0 and (budget is None or histogram_bytes(act, s) <= budget)]
        if fitting:
            per_pass = fitting[0]
            need = histogram_bytes(act, per_pass)
            why = ("as requested, all samples in one pass" if per_pass == samples else
                   f"as requested, {per_pass} sample(s) per pass: all {samples} at once would need about "
                   f"{format_bytes(histogram_bytes(act, samples))}{lower_bound}, more than {format_bytes(budget or 0)} "
                   f"({defaults.CALIBRATION_MEMORY_FRACTION:.0%} of the memory available)")
            return CalibrationPlan(method, method, samples, per_pass, need, available, why)
        need = minmax_bytes(act)
        if budget is not None and need <= budget:
            why = (f"minmax instead of {method}: even one sample's activations ({format_bytes(histogram_bytes(act, 1))}"
                   f"{lower_bound}) do not fit {format_bytes(budget)}; minmax reduces each tensor inside the graph")
            return CalibrationPlan("minmax", method, samples, samples, need, available, why)
    raise InputError(
        f"static calibration needs about {format_bytes(need)}{lower_bound} even with --calibrate-method minmax, "
        f"and this machine has {format_bytes(available or 0)} available; quantize a smaller --input-shape or on a larger machine"
    )


def sqnr_groups(sizes: dict[str, int], weights: int, available: int | None = None) -> list[list[str]]:
    """Tensors to read per pass of the SQNR ranking so that one pass (weights, one inference, the tensors) fits.

    A tensor larger than the whole budget gets a pass of its own.
    """
    available = available_memory() if available is None else available
    largest = max(sizes.values(), default=0)
    budget = None if available is None else int(defaults.CALIBRATION_MEMORY_FRACTION * available) - weights - INFERENCE_LARGEST * largest
    groups: list[list[str]] = [[]]
    used = 0
    for name, size in sizes.items():
        if groups[-1] and budget is not None and used + 2 * size > budget:  # the tensor and its difference
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += 2 * size
    return [g for g in groups if g]

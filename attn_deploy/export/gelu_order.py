"""Export pass: the erf GELU written in the order ONNX Runtime fuses into one ``Gelu`` kernel.

The dynamo exporter writes ``F.gelu`` (at opsets below 20, which have no ``Gelu`` op) as
``x * (0.5 * (1 + erf(x / √2)))``; ONNX Runtime's GeluFusion recognises ``(x * (1 + erf(x / √2))) * 0.5``
(what the TorchScript exporter writes) and not this, so every transformer MLP of a dynamo export
ran as five kernels: on torchvision's maxvit_t about 40 ms of Div/Erf/Add/Mul per run against
19-21 ms of ``Gelu`` (``benchmarks/ort_op_profile.py``, 10 runs).
Exact: multiplying by 0.5 only lowers the exponent, so the two orders round the same (outside
subnormal results). Standard ops only, so TensorRT and other runtimes read it as before.
"""

from __future__ import annotations

import math

import onnx
import onnx_ir as ir
from onnxscript.rewriter import pattern

from attn_deploy.fuse.graph import scalar_constant


def _half_inside(op: pattern.OpsetPatternBuilder, x: ir.Value, root2: ir.Value, one: ir.Value, half: ir.Value) -> ir.Value:
    return op.Mul(x, op.Mul(half, op.Add(op.Erf(op.Div(x, root2)), one)))  # type: ignore[no-any-return]


def _half_outside(op: pattern.OpsetPatternBuilder, x: ir.Value, root2: ir.Value, one: ir.Value, half: ir.Value) -> ir.Value:
    return op.Mul(op.Mul(x, op.Add(op.Erf(op.Div(x, root2)), one)), half)  # type: ignore[no-any-return]


def _is_gelu(context: object, x: ir.Value, root2: ir.Value, one: ir.Value, half: ir.Value, **_: object) -> bool:
    values = [scalar_constant(v) for v in (root2, one, half)]
    return None not in values and abs(values[0] - math.sqrt(2.0)) < 1e-6 and values[1] == 1.0 and values[2] == 0.5  # type: ignore[operator]


RULES = pattern.RewriteRuleSet([pattern.RewriteRule(_half_inside, _half_outside, _is_gelu, name="GeluHalfOutside")], commute=True)


def gelu_in_fusable_order(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` with every erf GELU of its main graph as ``(x * (1 + erf(x / √2))) * 0.5`` (the input is
    not modified), and how many were rewritten. A model without one comes back as it is."""
    if not any(n.op_type == "Erf" and n.domain == "" for n in model.graph.node):
        return model, 0
    ir_model = ir.from_proto(model)
    count = RULES.apply_to_model(ir_model)
    if not count:
        return model, 0
    rewritten = ir.to_proto(ir_model)
    rewritten.ir_version = model.ir_version
    return rewritten, count

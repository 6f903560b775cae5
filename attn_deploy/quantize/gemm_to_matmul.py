"""Graph pass: ``Gemm`` with constant weights becomes ``MatMul`` + ``Add``.

``onnxruntime.quantization.quantize_dynamic`` has an integer kernel for MatMul but not for Gemm,
and the dynamo exporter emits Gemm for a ``Linear`` on 2-D input (the MHA output projection), so
without this pass those projections stay fp32. Contract: ``alpha == beta == 1``, ``transA == 0``,
``B`` a float32 initializer; then ``Gemm(A, B, C) == MatMul(A, B or Bᵀ) + C`` exactly.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from attn_deploy.fuse.graph import rewrite_each, splice


def _rewrite(graph: ir.Graph, gemm: ir.Node) -> bool:
    attrs = gemm.attributes
    alpha = attrs["alpha"].as_float() if "alpha" in attrs else 1.0
    beta = attrs["beta"].as_float() if "beta" in attrs else 1.0
    trans_a = attrs["transA"].as_int() if "transA" in attrs else 0
    trans_b = attrs["transB"].as_int() if "transB" in attrs else 0
    if alpha != 1.0 or beta != 1.0 or trans_a or gemm.inputs[1] is None:
        return False
    weight = ir.convenience.get_const_tensor(gemm.inputs[1])
    if weight is None or weight.dtype != ir.DataType.FLOAT:
        return False
    matrix = weight.numpy()
    matrix = np.ascontiguousarray(matrix.T if trans_b else matrix)
    name = gemm.name or "gemm"
    tape = ir.tape.Tape()
    w = tape.initializer(ir.tensor(matrix, name=f"{name}_matmul_weight"))
    out = tape.op("MatMul", [gemm.inputs[0], w], name=f"{name}_matmul", output=ir.Value(name=f"{name}_product"))
    if len(gemm.inputs) > 2 and gemm.inputs[2] is not None:
        out = tape.op("Add", [out, gemm.inputs[2]], name=f"{name}_add", output=ir.Value(name=f"{name}_sum"))
    splice(graph, gemm, tape, out)
    return True


def gemms_to_matmul(model: ir.Model) -> list[str]:
    """Rewrite every eligible Gemm of the main graph (in place); returns their names."""
    return rewrite_each(model, "Gemm", _rewrite)

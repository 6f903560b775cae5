"""The model-local FunctionProto that defines ``attn_deploy::FusedAttention`` in standard ONNX.

Any ONNX Runtime inlines it, so models run with no custom library; TensorRT expands it when no
plugin is registered. The body is memory-bounded: a ``Loop`` over query blocks whose size is
computed in-graph from the runtime shapes (same formula as ``contract.block_rows``), so dynamic
Nq works. Queries are zero-padded to a whole number of blocks so every iteration's scan output
has one shape; the padding is sliced off at the end.

ONNX Runtime's inliner rejects a body that references an absent optional input, so the function
is generated with or without the ``bias`` input to match how the model's nodes call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper

from attn_deploy.ops.contract import DEFAULT_SCORE_BLOCK_ELEMENTS, DOMAIN, OP_TYPE

_FLOAT = TensorProto.FLOAT
_INT64 = TensorProto.INT64


@dataclass
class _Builder:
    """Appends nodes with unique, readable output names."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    _count: int = 0

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs: object) -> str:
        self._count += 1
        out = f"{self.prefix}{name or op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, values: list[int] | int, name: str = "c") -> str:
        if isinstance(values, int):
            tensor = helper.make_tensor(name, _INT64, [], [values])
        else:
            tensor = helper.make_tensor(name, _INT64, [len(values)], values)
        return self.op("Constant", name=name, value=tensor)


def _reduce(b: _Builder, op_type: str, x: str, opset: int, name: str) -> str:
    """``op_type`` over the last axis, keepdims; axes became an input of ReduceMax in opset 18."""
    if op_type == "ReduceSum" or opset >= 18:
        return b.op(op_type, x, b.const([-1]), name=name, keepdims=1)
    return b.op(op_type, x, name=name, axes=[-1], keepdims=1)


def _int8_probs_times_v(b: _Builder, scores: str, opset: int) -> None:
    """``o_blk = softmax(scores) @ V`` with the product in int8: reads ``Vq``, ``v_scale`` (outer scope).

    ``e = exp(s - rowmax)`` lies in (0, 1] with a 1 in every row, so ``c = round(255·e)`` is a
    uint8 code using the full range in every row. The output is ``(c @ Vq) · v_scale / sum(c)``:
    dividing by the sum of the *codes* (not of ``e``) keeps every row a convex combination of V
    even when many small probabilities round to 0 (long rows); softmax's division moves onto
    one [rows, 1] factor.
    """
    e = b.op("Exp", b.op("Sub", scores, _reduce(b, "ReduceMax", scores, opset, "rowmax"), name="shifted"), name="e")
    levels = b.op("Round", b.op("Mul", e, b.op("Constant", name="c255", value_float=255.0), name="e255"), name="levels")
    total = _reduce(b, "ReduceSum", levels, opset, "rowsum")
    codes = b.op("Cast", levels, name="codes", to=TensorProto.UINT8)
    acc = b.op("Cast", b.op("MatMulInteger", codes, "Vq", name="acc"), name="accf", to=_FLOAT)
    b.nodes.append(helper.make_node("Mul", [acc, b.op("Div", "v_scale", total, name="factor")], ["o_blk"]))


def _int8_v(b: _Builder) -> None:
    """``Vq`` (int8, symmetric, one scale) and its scale ``v_scale`` from ``Vf``."""
    vabs = b.op("Abs", "Vf", name="vabs")
    vmax = b.op("ReduceMax", vabs, name="vmax", keepdims=0)  # all axes: same form in every opset
    tiny = b.op("Constant", name="tiny", value_float=1e-30)
    c127 = b.op("Constant", name="c127", value_float=127.0)
    b.nodes.append(helper.make_node("Div", [b.op("Max", vmax, tiny, name="vmax_safe"), c127], ["v_scale"]))
    zero = b.op("Constant", name="zero_i8", value=helper.make_tensor("zero_i8", TensorProto.INT8, [], [0]))
    b.nodes.append(helper.make_node("QuantizeLinear", ["Vf", "v_scale", zero], ["Vq"]))


def _loop_body(with_bias: bool, transposed_pv: bool, int8_pv: bool = False, opset: int = 18) -> onnx.GraphProto:
    """One query block: scores, softmax (float32), times V. Reads outer-scope names ``Qp``, ``Kt``, ``Vf``, ``rows``."""
    b = _Builder("lb_")
    start = b.op("Mul", "iter", "rows", name="start")
    start1 = b.op("Unsqueeze", start, b.const([0]), name="start1")
    end1 = b.op("Add", start1, b.op("Unsqueeze", "rows", b.const([0])), name="end1")
    axis2 = b.const([2], name="axis2")
    q_blk = b.op("Slice", "Qp", start1, end1, axis2, name="q_blk")
    scores = b.op("MatMul", q_blk, "Kt", name="scores")
    if with_bias:
        bstart = b.op("Where", "bias_bcast", b.const([0]), start1, name="bstart")
        bend = b.op("Where", "bias_bcast", b.const([1]), end1, name="bend")
        scores = b.op("Add", scores, b.op("Slice", "Bp", bstart, bend, axis2, name="b_blk"), name="biased")
    if int8_pv:
        _int8_probs_times_v(b, scores, opset)
    elif transposed_pv:
        # (P·V)ᵀ = Vᵀ·Pᵀ: ORT fuses the Transpose into the MatMul (transB), and MLAS packs only this
        # block's P instead of re-packing all of V for every block (which dominated at N=66,800).
        probs = b.op("Softmax", scores, name="probs", axis=-1)
        p_t = b.op("Transpose", probs, name="p_t", perm=[0, 1, 3, 2])
        b.nodes.append(helper.make_node("MatMul", ["Vt", p_t], ["o_blk"]))
    else:
        probs = b.op("Softmax", scores, name="probs", axis=-1)
        b.nodes.append(helper.make_node("MatMul", [probs, "Vf"], ["o_blk"]))
    b.nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    return helper.make_graph(
        b.nodes,
        "fused_attention_block",
        [
            helper.make_tensor_value_info("iter", _INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("o_blk", _FLOAT, None),
        ],
    )


def make_function(
    opset: int,
    *,
    with_bias: bool = False,
    budget_elements: int = DEFAULT_SCORE_BLOCK_ELEMENTS,
    int8_pv: bool = False,
    domain: str = DOMAIN,
    name: str = OP_TYPE,
    transposed_pv: bool = True,
) -> onnx.FunctionProto:
    """Build the FusedAttention body for a model at ``opset`` (>= 15, for CastLike).

    ``int8_pv`` builds the quantized variant (``attn-deploy quantize --quantize-attention``): the
    softmax-times-V product runs as ``MatMulInteger`` on uint8 probability codes and int8 V.
    Q·Kᵀ stays float32: it is about a tenth of the FLOPs (dk = C/8 in SAGAN), and its error
    would be amplified by the softmax's exponential.
    ``domain``/``name`` let ``attn_deploy.lower`` reuse the body under its own name with another budget.
    """
    if opset < 15:
        raise ValueError(f"FusedAttention's body needs opset >= 15 (got {opset}); export with --opset 17 or newer")
    b = _Builder("fa_")
    # Float32 inside, whatever the input type (contract §2); a same-type Cast is free.
    qf = b.op("Cast", "Q", name="qf", to=_FLOAT)
    kf = b.op("Cast", "K", name="kf", to=_FLOAT)
    b.nodes.append(helper.make_node("Cast", ["V"], ["Vf"], to=_FLOAT))
    scale_ref = onnx.AttributeProto(name="value_float", ref_attr_name="scale", type=onnx.AttributeProto.FLOAT)
    scale_node = helper.make_node("Constant", [], ["scale_value"])
    scale_node.attribute.append(scale_ref)
    b.nodes.append(scale_node)
    b.nodes.append(helper.make_node("Mul", [qf, "scale_value"], ["Qs"]))
    b.nodes.append(helper.make_node("Transpose", [kf], ["Kt"], perm=[0, 1, 3, 2]))

    q_shape = b.op("Shape", "Q", name="q_shape")
    k_shape = b.op("Shape", "K", name="k_shape")
    batch = b.op("Gather", q_shape, b.const(0), name="batch", axis=0)
    heads = b.op("Gather", q_shape, b.const(1), name="heads", axis=0)
    nq = b.op("Gather", q_shape, b.const(2), name="nq", axis=0)
    nk = b.op("Gather", k_shape, b.const(2), name="nk", axis=0)
    dv = b.op("Gather", b.op("Shape", "V", name="v_shape"), b.const([3]), name="dv", axis=0)

    # rows = block_rows(B*H, Nk), capped at Nq; see contract.block_rows.
    per_row = b.op("Mul", b.op("Mul", batch, heads), nk, name="per_row")
    one = b.const(1, name="one")
    sixty_four = b.const(64, name="c64")
    rows = b.op("Max", b.op("Div", b.const(budget_elements, name="budget"), per_row), one, name="rows")
    rows64 = b.op("Mul", b.op("Div", rows, sixty_four), sixty_four, name="rows64")
    rows = b.op("Where", b.op("GreaterOrEqual", rows, sixty_four), rows64, rows, name="rows")
    rows = b.op("Max", b.op("Min", rows, nq), one, name="rows")
    # Balance the blocks (contract.balanced_rows): ceil(Nq / ceil(Nq / rows)) rows each.
    n_blocks = b.op("Div", b.op("Sub", b.op("Add", nq, rows), one), rows, name="n_blocks")
    balanced = b.op("Div", b.op("Sub", b.op("Add", nq, n_blocks), one), n_blocks, name="balanced")
    b.nodes.append(helper.make_node("Identity", [balanced], ["rows"]))
    pad = b.op("Sub", b.op("Mul", n_blocks, "rows"), nq, name="pad")
    pad1 = b.op("Unsqueeze", pad, b.const([0]), name="pad1")
    zeros6 = b.const([0, 0, 0, 0, 0, 0], name="zeros6")
    pads = b.op("Concat", zeros6, pad1, b.const([0]), name="pads", axis=0)
    b.nodes.append(helper.make_node("Pad", ["Qs", pads], ["Qp"]))

    inputs = ["Q", "K", "V"]
    if with_bias:
        inputs.append("bias")
        bf = b.op("Cast", "bias", name="bf", to=_FLOAT)
        b_shape = b.op("Shape", bf, name="b_shape")
        ones = b.op("Expand", b.const([1]), b.op("Sub", b.const([4]), b.op("Shape", b_shape)), name="ones")
        b4 = b.op("Reshape", bf, b.op("Concat", ones, b_shape, axis=0), name="b4")
        b_rows = b.op("Gather", b.op("Shape", b4), b.const([2]), name="b_rows", axis=0)
        b.nodes.append(helper.make_node("Equal", [b_rows, b.const([1])], ["bias_bcast"]))
        b_pad = b.op("Where", "bias_bcast", b.const([0]), pad1, name="b_pad")
        b_pads = b.op("Concat", zeros6, b_pad, b.const([0]), name="b_pads", axis=0)
        b.nodes.append(helper.make_node("Pad", [b4, b_pads], ["Bp"]))

    transposed = transposed_pv and not int8_pv  # the int8 product keeps the [rows, dv] layout
    if int8_pv:
        _int8_v(b)
    if transposed:
        b.nodes.append(helper.make_node("Transpose", ["Vf"], ["Vt"], perm=[0, 1, 3, 2]))
    blocks = b.op("Loop", n_blocks, "", name="blocks", body=_loop_body(with_bias, transposed, int8_pv, opset))
    # Scan output is [n_blocks, B, H, rows, dv] ([.., dv, rows] when transposed) -> [B, H, n_blocks*rows, dv] -> drop the padding.
    moved = b.op("Transpose", blocks, name="moved", perm=[1, 2, 0, 4, 3] if transposed else [1, 2, 0, 3, 4])
    flat_shape = b.op(
        "Concat",
        b.op("Unsqueeze", batch, b.const([0])),
        b.op("Unsqueeze", heads, b.const([0])),
        b.const([-1]),
        dv,
        name="flat_shape",
        axis=0,
    )
    flat = b.op("Reshape", moved, flat_shape, name="flat")
    nq1 = b.op("Unsqueeze", nq, b.const([0]), name="nq1")
    o_f = b.op("Slice", flat, b.const([0]), nq1, b.const([2]), name="o_f")
    b.nodes.append(helper.make_node("CastLike", [o_f, "Q"], ["O"]))
    return helper.make_function(
        domain,
        name,
        inputs,
        ["O"],
        b.nodes,
        [helper.make_opsetid("", opset)],
        attributes=["scale", "plugin_namespace", "plugin_version"],
        doc_string="softmax(scale * Q @ K^T [+ bias]) @ V, float32 inside, one query block at a time."
        + (" The P @ V product in int8 (MatMulInteger)." if int8_pv else ""),
    )

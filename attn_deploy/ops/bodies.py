"""Every FunctionProto body of ``attn_deploy::FusedAttention`` (and its lowerings), in one module.

* :func:`exported_body`: the body every exported model carries: an ``If`` that takes the plain
  MatMul-Softmax-MatMul when the score matrix fits the score-block budget (what a plain export
  has, so ONNX Runtime optimises it the same way) and the looped body otherwise;
  :func:`attach_fused_attention_function` gives a model this body the way its nodes call it.
* :func:`looped_body`: the memory-bounded body (a ``Loop`` over query blocks), with an int8 P·V
  variant for ``quantize --quantize-attention``.
* :func:`plain_body`: one float32 MatMul-Softmax-MatMul over the whole score matrix, for
  ``lower --target ort`` (small N) and for TensorRT (which rejects the Loop).
* :func:`blocked_body`: the looped body under ``lower``'s own name and score-block budget.
* :func:`mha_body`: ONNX Runtime's ``com.microsoft.MultiHeadAttention`` around the 4-D layout.
* :func:`inline_blocked_nodes`: one node as plain attention over static query blocks, inlined in
  the graph (TensorRT, static shapes, large score matrices).

All keep the contract (DESIGN §2): float32 softmax and accumulation whatever the input type, the
output cast back to Q's type.

The looped body (and so the exported one) is memory-bounded: a ``Loop`` over query blocks whose size is computed in-graph
from the runtime shapes (same formula as ``contract.block_rows``), so dynamic Nq works. Queries
are zero-padded to a whole number of blocks so every iteration's scan output has one shape; the
padding is sliced off at the end. ONNX Runtime's inliner rejects a body that references an absent
optional input, so each body is generated with or without the ``bias`` input to match how the
model's nodes call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.artifact.graph import default_opset, fused_attention_nodes
from attn_deploy.ops.contract import (
    DEFAULT_SCORE_BLOCK_ELEMENTS,
    DOMAIN,
    LOWERED_DOMAIN,
    OP_TYPE,
    OPSET_VERSION,
)

_FLOAT = TensorProto.FLOAT
_INT64 = TensorProto.INT64
MS_DOMAIN = "com.microsoft"
#: The contract's node attributes (DESIGN §2), which the exported body declares.
CONTRACT_ATTRIBUTES = ("scale", "plugin_namespace", "plugin_version")
#: The exported body's plain product as ``(Vᵀ·Pᵀ)ᵀ`` (see :func:`_plain_nodes`).
TRANSPOSED_PV = True
#: The all-zero bias given to nodes without one when other nodes of the model pass a bias.
ZERO_BIAS = "attn_deploy_zero_bias"


def _ref(name: str, attr_type: int, as_name: str | None = None) -> onnx.AttributeProto:
    """An attribute that reads the calling node's attribute ``name``."""
    return onnx.AttributeProto(name=as_name or name, ref_attr_name=name, type=attr_type)  # type: ignore[arg-type]


def _scale_constant() -> onnx.NodeProto:
    """``scale_value``: the node's ``scale`` attribute as a tensor."""
    node = helper.make_node("Constant", [], ["scale_value"])
    node.attribute.append(_ref("scale", onnx.AttributeProto.FLOAT, "value_float"))
    return node


def _ints(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, _INT64, [len(values)], values))


@dataclass
class _Builder:
    """Appends nodes with unique, readable output names."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    _count: int = 0

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs: object) -> str:
        self._count += 1
        out = f"{self.prefix}{name or op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))  # type: ignore[arg-type]
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


def _prologue(b: _Builder, with_bias: bool, prefix: str = "") -> None:
    """``Qs`` (scaled Q), ``Kt`` (Kᵀ), ``Vf`` and ``bf`` (the bias), float32 whatever the input type (contract §2).

    Names take ``prefix``; ``scale_value`` (:func:`_scale_constant`) is the caller's. A same-type
    Cast is free: ONNX Runtime removes it.
    """
    qf = b.op("Cast", "Q", name="qf", to=_FLOAT)
    kf = b.op("Cast", "K", name="kf", to=_FLOAT)
    b.nodes.append(helper.make_node("Cast", ["V"], [prefix + "Vf"], to=_FLOAT))
    b.nodes.append(helper.make_node("Mul", [qf, "scale_value"], [prefix + "Qs"]))
    b.nodes.append(helper.make_node("Transpose", [kf], [prefix + "Kt"], perm=[0, 1, 3, 2]))
    if with_bias:
        b.nodes.append(helper.make_node("Cast", ["bias"], [prefix + "bf"], to=_FLOAT))


def _plain_nodes(with_bias: bool, out: str, prefix: str = "", transposed: bool = False) -> list[onnx.NodeProto]:
    """``out = softmax(Qs·Kt [+ bf]) · Vf`` over the whole score matrix: the graph a plain export has.

    ``transposed`` writes the product as ``(Vfᵀ·Pᵀ)ᵀ``: ONNX Runtime folds both inner Transposes
    into one FusedMatMul and cancels the outer one against the graph's own (SAGAN's ``V·Aᵀ`` then
    runs exactly as in its plain export, with no copy of V or of the output).
    """
    p = prefix
    nodes = [helper.make_node("MatMul", [p + "Qs", p + "Kt"], [p + "S"])]
    scores = p + "S"
    if with_bias:
        nodes.append(helper.make_node("Add", [scores, p + "bf"], [p + "Sb"]))
        scores = p + "Sb"
    nodes.append(helper.make_node("Softmax", [scores], [p + "P"], axis=-1))
    if not transposed:
        return [*nodes, helper.make_node("MatMul", [p + "P", p + "Vf"], [out])]
    swap = [0, 1, 3, 2]
    return [
        *nodes,
        helper.make_node("Transpose", [p + "P"], [p + "Pt"], perm=swap),
        helper.make_node("Transpose", [p + "Vf"], [p + "Vt"], perm=swap),
        helper.make_node("MatMul", [p + "Vt", p + "Pt"], [p + "Ot"]),
        helper.make_node("Transpose", [p + "Ot"], [out], perm=swap),
    ]


def _always_true(b: _Builder) -> str:
    """A true condition that ONNX Runtime cannot constant-fold: it reads one element of ``Kt``.

    ONNX Runtime 1.32 folds an ``If`` whose condition is constant by inlining the taken branch; a
    ``Loop`` inlined that way loses track of the outer values its body reads, so when all its
    explicit inputs are constants, constant folding tries to run it at session creation and fails
    (``Op (Loop) vector::reserve``). A data-dependent ``cond`` keeps it a runtime node.
    """
    first = b.op("Gather", b.op("Reshape", "Kt", b.const([-1]), name="k_flat"), b.const(0), name="k_first", axis=0)
    return b.op("Not", b.op("IsInf", first, name="never", detect_negative=0, detect_positive=0), name="always")


def _looped_nodes(b: _Builder, opset: int, with_bias: bool, budget_elements: int, int8_pv: bool,
                  transposed_pv: bool, out: str, in_branch: bool = False) -> None:
    """``out`` (float32) one query block at a time: a ``Loop`` whose block size is computed from the runtime shapes.

    ``in_branch``: the nodes are an ``If`` branch (see :func:`_always_true`).
    """
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

    if with_bias:
        b_shape = b.op("Shape", "bf", name="b_shape")
        ones = b.op("Expand", b.const([1]), b.op("Sub", b.const([4]), b.op("Shape", b_shape)), name="ones")
        b4 = b.op("Reshape", "bf", b.op("Concat", ones, b_shape, axis=0), name="b4")
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
    cond = _always_true(b) if in_branch else ""
    blocks = b.op("Loop", n_blocks, cond, name="blocks", body=_loop_body(with_bias, transposed, int8_pv, opset))
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
    b.nodes.append(helper.make_node("Slice", [flat, b.const([0]), nq1, b.const([2])], [out]))


def _check_opset(opset: int) -> None:
    if opset < 15:
        raise ValueError(f"FusedAttention's body needs opset >= 15 (got {opset}); export with --opset 17 or newer")


def looped_body(
    opset: int,
    *,
    with_bias: bool = False,
    budget_elements: int = DEFAULT_SCORE_BLOCK_ELEMENTS,
    int8_pv: bool = False,
    domain: str = DOMAIN,
    name: str = OP_TYPE,
    transposed_pv: bool = True,
) -> onnx.FunctionProto:
    """The memory-bounded body for a model at ``opset`` (>= 15, for CastLike): always a ``Loop`` over query blocks.

    ``int8_pv`` builds the quantized variant (``attn-deploy quantize --quantize-attention``): the
    softmax-times-V product runs as ``MatMulInteger`` on uint8 probability codes and int8 V.
    Q·Kᵀ stays float32: it is about a tenth of the FLOPs (dk = C/8 in SAGAN), and its error
    would be amplified by the softmax's exponential.
    ``domain``/``name`` let ``attn_deploy.lower`` reuse the body under its own name with another budget
    (:func:`blocked_body`).
    """
    _check_opset(opset)
    b = _Builder("fa_", [_scale_constant()])
    _prologue(b, with_bias)
    _looped_nodes(b, opset, with_bias, budget_elements, int8_pv, transposed_pv, "Of")
    b.nodes.append(helper.make_node("CastLike", ["Of", "Q"], ["O"]))
    return helper.make_function(
        domain,
        name,
        ["Q", "K", "V"] + (["bias"] if with_bias else []),
        ["O"],
        b.nodes,
        [helper.make_opsetid("", opset)],
        attributes=list(CONTRACT_ATTRIBUTES),
        doc_string="softmax(scale * Q @ K^T [+ bias]) @ V, float32 inside, one query block at a time."
        + (" The P @ V product in int8 (MatMulInteger)." if int8_pv else ""),
    )


def exported_body(
    opset: int, *, with_bias: bool = False, budget_elements: int = DEFAULT_SCORE_BLOCK_ELEMENTS
) -> onnx.FunctionProto:
    """The body every exported model carries: the plain product when the score block fits, else the Loop.

    An ``If`` on ``B·H·Nq·Nk <= budget_elements`` (runtime shapes) picks :func:`_plain_nodes`, the
    MatMul-Softmax-MatMul a plain ``torch.onnx.export`` has, or the query-blocked ``Loop``. With
    static shapes ONNX Runtime folds the condition and inlines the taken branch, so its own fusions
    (scale and transposes into FusedMatMul, transpose cancellation) apply as they do to the plain
    export: a user who never runs ``lower`` loses nothing. The score block is the same memory
    bound as the Loop's: a fitting matrix is one block of it.
    """
    _check_opset(opset)
    b = _Builder("fa_", [_scale_constant()])
    q_lead = b.op("Gather", b.op("Shape", "Q", name="q_dims"), b.const([0, 1, 2]), name="q_lead", axis=0)
    nk = b.op("Gather", b.op("Shape", "K", name="k_dims"), b.const([2]), name="k_rows", axis=0)
    scores = b.op("ReduceProd", b.op("Concat", q_lead, nk, name="score_dims", axis=0), name="scores", keepdims=0)
    fits = b.op("LessOrEqual", scores, b.const(budget_elements, name="budget"), name="fits")
    # Each branch casts for itself: a branch reading an outer Cast's output keeps ONNX Runtime from
    # removing that (same-type) Cast, a copy of the tensor, and makes it warn.
    plain = _Builder("fp_")
    _prologue(plain, with_bias, prefix="p_")
    looped = _Builder("fl_")
    _prologue(looped, with_bias)
    _looped_nodes(looped, opset, with_bias, budget_elements, False, True, "Of_looped", in_branch=True)

    def branch(nodes: list[onnx.NodeProto], name: str, out: str) -> onnx.GraphProto:
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, _FLOAT, None)])

    b.nodes.append(helper.make_node(
        "If", [fits], ["Of"],
        then_branch=branch(plain.nodes + _plain_nodes(with_bias, "Of_plain", "p_", TRANSPOSED_PV), "whole_score_matrix", "Of_plain"),
        else_branch=branch(looped.nodes, "query_blocks", "Of_looped"),
    ))
    b.nodes.append(helper.make_node("CastLike", ["Of", "Q"], ["O"]))
    return helper.make_function(
        DOMAIN, OP_TYPE, ["Q", "K", "V"] + (["bias"] if with_bias else []), ["O"], b.nodes,
        [helper.make_opsetid("", opset)], attributes=list(CONTRACT_ATTRIBUTES),
        doc_string="softmax(scale * Q @ K^T [+ bias]) @ V, float32 inside: whole when the score matrix fits "
        f"{budget_elements} elements, else one query block at a time.",
    )


def blocked_body(opset: int, *, with_bias: bool, budget_elements: int) -> onnx.FunctionProto:
    """The looped body as ``lower --target ort`` writes it: its own name, this model's score-block budget."""
    return looped_body(opset, with_bias=with_bias, budget_elements=budget_elements,
                       domain=LOWERED_DOMAIN, name="FusedAttentionBlocked" + ("Bias" if with_bias else ""))


def plain_body(
    opset: int,
    *,
    with_bias: bool,
    domain: str = LOWERED_DOMAIN,
    name: str | None = None,
    attributes: Sequence[str] = ("scale",),
) -> onnx.FunctionProto:
    """MatMul / Softmax / MatMul over the whole score matrix, float32 inside (no Loop).

    By default ``lower --target ort``'s ``FusedAttentionPlain[Bias]`` (for small N); TensorRT's
    lowering passes the contract's domain, name and attributes (its parser rejects the Loop).
    """
    b = _Builder("fp_", [_scale_constant()])
    _prologue(b, with_bias)
    nodes = b.nodes + _plain_nodes(with_bias, "Of") + [helper.make_node("CastLike", ["Of", "Q"], ["O"])]
    return helper.make_function(
        domain, name or "FusedAttentionPlain" + ("Bias" if with_bias else ""),
        ["Q", "K", "V"] + (["bias"] if with_bias else []), ["O"], nodes,
        [helper.make_opsetid("", opset)], attributes=list(attributes),
        doc_string="softmax(scale * Q @ K^T [+ bias]) @ V over the whole score matrix, float32 inside.",
    )


def mha_body(opset: int) -> onnx.FunctionProto:
    """``com.microsoft.MultiHeadAttention`` (float32 only) around the contract's 4-D layout.

    MultiHeadAttention takes ``[B, N, H·d]``: Q/K/V are transposed to ``[B, N, H, d]`` and flattened,
    and the output goes back. A Transpose that only moves size-1 axes (H = 1) is a plain copy in ORT.
    """
    mha = helper.make_node("MultiHeadAttention", ["q3", "k3", "v3"], ["o3"], domain=MS_DOMAIN)
    mha.attribute.extend([_ref("num_heads", onnx.AttributeProto.INT), _ref("scale", onnx.AttributeProto.FLOAT)])
    nodes = [_ints("flat3", [0, 0, -1])]
    for x in ("Q", "K", "V"):
        low = x.lower()
        nodes += [
            helper.make_node("Transpose", [x], [f"{low}t"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{low}t", "flat3"], [f"{low}3"]),
        ]
    nodes += [
        mha,
        _ints("zero2", [0, 0]),
        _ints("one", [1]),
        _ints("two", [2]),
        _ints("minus1", [-1]),
        helper.make_node("Shape", ["Q"], ["q_shape"]),
        helper.make_node("Slice", ["q_shape", "one", "two"], ["heads"]),
        helper.make_node("Concat", ["zero2", "heads", "minus1"], ["split4"], axis=0),
        helper.make_node("Reshape", ["o3", "split4"], ["o4"]),
        helper.make_node("Transpose", ["o4"], ["O"], perm=[0, 2, 1, 3]),
    ]
    return helper.make_function(
        LOWERED_DOMAIN, "FusedAttentionMHA", ["Q", "K", "V"], ["O"], nodes,
        [helper.make_opsetid("", opset), helper.make_opsetid(MS_DOMAIN, 1)], attributes=["scale", "num_heads"],
        doc_string="FusedAttention as ORT's MultiHeadAttention (CPU flash kernel for float32 without bias).",
    )


def inline_blocked_nodes(node: onnx.NodeProto, blocks: int, nq: int, bias_rows: int | None) -> list[onnx.NodeProto]:
    """``node`` as float32 MatMul-Softmax-MatMul over ``blocks`` static query blocks, concatenated.

    The nodes replace ``node`` in its graph (names prefixed by the node's); ``bias_rows`` is the
    bias's static query dimension (sliced per block when it equals ``nq``, else broadcast).
    """
    p = f"{node.name or node.output[0]}/"
    scale = float(next(helper.get_attribute_value(a) for a in node.attribute if a.name == "scale"))
    q, k, v = node.input[:3]
    bias = node.input[3] if len(node.input) > 3 and node.input[3] else None

    def const(name: str, values: list[int]) -> onnx.NodeProto:
        return _ints(p + name, values)

    nodes = [
        helper.make_node("Cast", [q], [p + "qf"], to=_FLOAT),
        helper.make_node("Constant", [], [p + "scale"], value=helper.make_tensor(p + "scale", _FLOAT, [], [scale])),
        helper.make_node("Mul", [p + "qf", p + "scale"], [p + "qs"]),
        helper.make_node("Cast", [k], [p + "kf"], to=_FLOAT),
        helper.make_node("Transpose", [p + "kf"], [p + "kt"], perm=[0, 1, 3, 2]),
        helper.make_node("Cast", [v], [p + "vf"], to=_FLOAT),
        const("axis2", [2]),
    ]
    if bias:
        nodes.append(helper.make_node("Cast", [bias], [p + "bf"], to=_FLOAT))
    rows = -(-nq // blocks)
    outs = []
    for i in range(blocks):
        start, end = i * rows, min(nq, (i + 1) * rows)
        b = f"{p}b{i}/"
        nodes += [const(f"b{i}/start", [start]), const(f"b{i}/end", [end])]
        nodes.append(helper.make_node("Slice", [p + "qs", b + "start", b + "end", p + "axis2"], [b + "q"]))
        nodes.append(helper.make_node("MatMul", [b + "q", p + "kt"], [b + "s"]))
        scores = b + "s"
        if bias:
            if bias_rows == nq:
                nodes.append(helper.make_node("Slice", [p + "bf", b + "start", b + "end", p + "axis2"], [b + "bias"]))
                nodes.append(helper.make_node("Add", [scores, b + "bias"], [b + "sb"]))
            else:
                nodes.append(helper.make_node("Add", [scores, p + "bf"], [b + "sb"]))
            scores = b + "sb"
        nodes.append(helper.make_node("Softmax", [scores], [b + "p"], axis=-1))
        nodes.append(helper.make_node("MatMul", [b + "p", p + "vf"], [b + "o"]))
        outs.append(b + "o")
    nodes.append(helper.make_node("Concat", outs, [p + "of"], axis=2))
    nodes.append(helper.make_node("CastLike", [p + "of", q], [node.output[0]]))
    return nodes


def attach_fused_attention_function(model: onnx.ModelProto) -> None:
    """Give the model a FusedAttention FunctionProto matching how its nodes call it (in place).

    All nodes share one function, so if some pass ``bias`` and some do not, the latter get a
    scalar zero bias (ONNX Runtime rejects a body that reads an absent optional input).
    """
    nodes = fused_attention_nodes(model)
    kept = [f for f in model.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del model.functions[:]
    model.functions.extend(kept)
    if not nodes:
        return
    with_bias = any(len(n.input) > 3 and n.input[3] for n in nodes)
    if with_bias:
        needs_zero = False
        for n in nodes:
            if len(n.input) < 4 or not n.input[3]:
                del n.input[3:]
                n.input.append(ZERO_BIAS)
                needs_zero = True
        if needs_zero and not any(i.name == ZERO_BIAS for i in model.graph.initializer):
            model.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), ZERO_BIAS))
    model.functions.append(exported_body(default_opset(model), with_bias=with_bias))
    if not any(imp.domain == DOMAIN for imp in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))

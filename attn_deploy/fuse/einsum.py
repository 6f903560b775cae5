"""Graph pass: an ``Einsum`` that is a batched matrix product becomes ``MatMul`` (+ ``Transpose``).

Hand-written attention often uses ``torch.einsum`` (torchvision's MaxViT: ``"bghid,bghjd->bghij"``
for Q·Kᵀ and ``"bghij,bghjd->bghid"`` for P·V), and the dynamo exporter keeps it as ONNX
``Einsum``, which the attention rules (anchored on MatMul) would not see. Contract: two inputs of
one rank, the same batch letters leading both inputs and the output in the same order, and one
letter contracted over the last two axes; then ``Einsum == MatMul(A or Aᵀ, B or Bᵀ)`` exactly
(a transpose swaps the last two axes). Any other equation is left alone.
"""

from __future__ import annotations

import onnx_ir as ir

from attn_deploy.fuse.graph import rank, rewrite_each, splice, swap_last


def matmul_form(equation: str, input_rank: int | None = None) -> tuple[bool, bool] | None:
    """``(transpose A, transpose B)`` when ``equation`` is ``A @ B`` with shared batch letters, else None.

    A leading ``...`` on every term stands for ``input_rank - 2`` batch axes (unknown rank: None).
    """
    eq = equation.replace(" ", "")
    if eq.count("->") != 1:
        return None
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != 2:
        return None
    a, b = terms
    if any("." in t for t in (a, b, out)):
        if input_rank is None or not all(t.startswith("...") and "." not in t[3:] for t in (a, b, out)):
            return None
        a, b, out = a[3:], b[3:], out[3:]
        if len(a) != 2 or input_rank < 2:
            return None
    if not (len(a) == len(b) == len(out) >= 2) or any(len(set(t)) != len(t) for t in (a, b, out)):
        return None
    if not (a[:-2] == b[:-2] == out[:-2]):
        return None
    i, j = out[-2], out[-1]
    shared = set(a[-2:]) & set(b[-2:])
    if len(shared) != 1:
        return None
    (k,) = shared
    if k in out or set(a[-2:]) != {i, k} or set(b[-2:]) != {k, j}:
        return None
    return a[-2:] == k + i, b[-2:] == j + k


def _transposed(tape: ir.tape.Tape, value: ir.Value, name: str) -> ir.Value:
    r = rank(value)
    assert r is not None
    perm = swap_last(r)
    out = tape.op("Transpose", [value], attributes={"perm": perm}, name=name, output=ir.Value(name=name))
    if value.shape is not None:
        shape = list(value.shape)
        out.shape = ir.Shape([shape[p] for p in perm])
    out.type = value.type
    return out


def _rewrite(graph: ir.Graph, einsum: ir.Node) -> bool:
    if len(einsum.inputs) != 2 or any(v is None for v in einsum.inputs) or "equation" not in einsum.attributes:
        return False
    a, b = einsum.inputs
    ranks = {rank(a), rank(b)}
    input_rank = ranks.pop() if len(ranks) == 1 else None
    form = matmul_form(einsum.attributes["equation"].as_string(), input_rank)
    if form is None or input_rank is None:
        return False
    name = einsum.name or "einsum"
    tape = ir.tape.Tape()
    left = _transposed(tape, a, f"{name}_a_t") if form[0] else a  # type: ignore[arg-type]
    right = _transposed(tape, b, f"{name}_b_t") if form[1] else b  # type: ignore[arg-type]
    out = tape.op("MatMul", [left, right], name=f"{name}_matmul", output=ir.Value(name=f"{name}_matmul"))
    splice(graph, einsum, tape, out)
    return True


def einsums_to_matmul(model: ir.Model) -> list[str]:
    """Rewrite every matrix-product Einsum of the main graph (in place); returns their names."""
    return rewrite_each(model, "Einsum", _rewrite)

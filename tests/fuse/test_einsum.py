"""Einsum written as MatMul: only equations that are a batched matrix product, with the same result."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.fuse.einsum import einsums_to_matmul, matmul_form
from tests.conftest import run_ort


@pytest.mark.parametrize(
    ("equation", "rank", "form"),
    [
        ("ij,jk->ik", 2, (False, False)),
        ("bhid,bhjd->bhij", 4, (False, True)),  # Q·Kᵀ
        ("B G H I D, B G H J D -> B G H I J", 5, (False, True)),  # MaxViT's, with spaces
        ("bghij,bghjd->bghid", 5, (False, False)),  # P·V
        ("bki,bkj->bij", 3, (True, False)),
        ("bki,bjk->bij", 3, (True, True)),
        ("...id,...jd->...ij", 4, (False, True)),
    ],
)
def test_matrix_products_are_recognised(equation: str, rank: int, form: tuple[bool, bool]) -> None:
    assert matmul_form(equation, rank) == form


@pytest.mark.parametrize(
    "equation",
    [
        "bid,bjd->bji",  # the product transposed
        "bhid,hbjd->bhij",  # batch letters in another order
        "bid,bjd->bij,",  # malformed
        "bi,bi->b",  # a dot product
        "bij,bjk,bkl->bil",  # three operands
        "bii->bi",  # a diagonal
        "bid,bjd->bijd",  # no contraction
        "bhid,bhjd->bij",  # a sum over heads too
        "...id,...jd->...ij",  # ellipsis with an unknown rank
    ],
)
def test_other_equations_are_left_alone(equation: str) -> None:
    assert matmul_form(equation, None) is None


def _einsum_model(equation: str, a: list[int], b: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["a", "b"], ["y"], equation=equation)], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, a), helper.make_tensor_value_info("b", TensorProto.FLOAT, b)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


@pytest.mark.parametrize(
    ("equation", "a", "b"),
    [
        ("bghid,bghjd->bghij", [2, 3, 2, 5, 4], [2, 3, 2, 6, 4]),
        ("bki,bjk->bij", [2, 4, 5], [2, 6, 4]),
        ("...ij,...jk->...ik", [3, 5, 4], [1, 4, 6]),  # a broadcast batch axis
    ],
)
def test_the_rewrite_computes_the_same(equation: str, a: list[int], b: list[int]) -> None:
    original = _einsum_model(equation, a, b)
    model = ir.from_proto(onnx.shape_inference.infer_shapes(original))
    assert len(einsums_to_matmul(model)) == 1
    rewritten = ir.to_proto(model)
    assert [n.op_type for n in rewritten.graph.node].count("Einsum") == 0
    onnx.checker.check_model(rewritten, full_check=True)
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal(a, dtype=np.float32), "b": rng.standard_normal(b, dtype=np.float32)}
    (want,), (got,) = run_ort(original, feeds), run_ort(rewritten, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert rewritten.graph.output[0].name == "y"


def test_an_einsum_that_is_not_a_product_stays() -> None:
    model = ir.from_proto(onnx.shape_inference.infer_shapes(_einsum_model("bid,bjd->bijd", [2, 3, 4], [2, 5, 4])))
    assert einsums_to_matmul(model) == []
    assert [n.op_type for n in model.graph] == ["Einsum"]

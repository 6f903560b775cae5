"""``lower --target ort``: every implementation matches the exported body (static and dynamic shapes)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.artifact.sites import attention_sites
from attn_deploy.errors import InputError
from attn_deploy.lower import lower_model
from attn_deploy.lower.choice import block_elements
from attn_deploy.ops import reference_attention
from attn_deploy.ops.bodies import ZERO_BIAS, looped_body
from attn_deploy.ops.contract import DOMAIN, LOWERED_DOMAIN, OP_TYPE
from tests.conftest import run_ort

SCALE = 0.3


def _model(dims: dict[str, list[int | str]], *, with_bias: bool = False, elem: int = TensorProto.FLOAT,
           zero_bias: bool = False) -> onnx.ModelProto:
    names = ["q", "k", "v"] + (["bias"] if with_bias else [])
    node_inputs = names + ([ZERO_BIAS] if zero_bias else [])
    node = helper.make_node(OP_TYPE, node_inputs, ["o"], name="attn", domain=DOMAIN, scale=SCALE,
                            plugin_namespace=DOMAIN, plugin_version="1")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, elem, dims[n]) for n in names],
        [helper.make_tensor_value_info("o", elem, dims["o"])],
        initializer=[numpy_helper.from_array(np.zeros((), np.float32), ZERO_BIAS)] if zero_bias else [],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)],
        functions=[looped_body(18, with_bias=with_bias or zero_bias)], ir_version=10,
    )


def _dims(b: int | str, h: int | str, nq: int | str, nk: int | str, dk: int, dv: int, bias: list[int | str] | None = None):
    d = {"q": [b, h, nq, dk], "k": [b, h, nk, dk], "v": [b, h, nk, dv], "o": [b, h, nq, dv]}
    if bias is not None:
        d["bias"] = bias
    return d


def _feeds(b: int, h: int, nq: int, nk: int, dk: int, dv: int, bias: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    feeds = {"q": torch.randn(b, h, nq, dk).numpy(), "k": torch.randn(b, h, nk, dk).numpy(), "v": torch.randn(b, h, nk, dv).numpy()}
    if bias is not None:
        feeds["bias"] = torch.randn(bias).numpy()
    return feeds


def _assert_lowering_matches(model: onnx.ModelProto, feeds: dict[str, np.ndarray], impl: str, **kwargs: object) -> onnx.ModelProto:
    lowered, choices = lower_model(model, "ort", prefer=impl, **kwargs)  # type: ignore[arg-type]
    onnx.checker.check_model(lowered, full_check=True)
    assert [c.implementation for c in choices] == [impl]
    assert not [n for n in lowered.graph.node if n.domain == DOMAIN]
    (node,) = [n for n in lowered.graph.node if n.domain == LOWERED_DOMAIN]
    assert node.op_type == choices[0].op_type and node.name == "attn"
    (want,) = run_ort(model, feeds)  # the exported body
    (got,) = run_ort(lowered, feeds)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    ref = reference_attention(tensors["q"], tensors["k"], tensors["v"], tensors.get("bias"), scale=SCALE).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    return lowered


# (B, H, Nq, Nk, dk, dv): SAGAN-like dk != dv, multi-head, a single query.
CASES = [(1, 1, 300, 300, 4, 32), (2, 3, 100, 70, 8, 16), (1, 2, 1, 33, 8, 8)]
SMALL_BUDGET = 4 * 6 * 2 * 3 * 70 * 7  # blocks of about 7 rows: many Loop iterations, a ragged last block


@pytest.mark.parametrize("impl", ["mha", "blocked", "plain"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_every_lowering_matches_body(impl: str, case: tuple[int, ...], dynamic: bool) -> None:
    _, h, _, _, dk, dv = case
    dims = _dims("B", h, "Nq", "Nk", dk, dv) if dynamic else _dims(*case)
    model = _model(dims)
    _assert_lowering_matches(model, _feeds(*case), impl, max_attn_mem=SMALL_BUDGET)


def test_dynamic_model_runs_at_several_nq() -> None:
    model = _model(_dims(1, 2, "Nq", "Nk", 8, 16))
    for impl in ("mha", "blocked"):
        lowered, _ = lower_model(model, prefer=impl, max_attn_mem=SMALL_BUDGET)  # type: ignore[arg-type]
        for nq, nk in [(1, 5), (64, 64), (130, 90)]:
            feeds = _feeds(1, 2, nq, nk, 8, 16)
            np.testing.assert_allclose(run_ort(lowered, feeds)[0], run_ort(model, feeds)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["blocked", "plain"])
@pytest.mark.parametrize("bias_shape", [(100, 70), (1, 70), (2, 3, 100, 70), (2, 1, 1, 70)])
def test_bias_lowerings_match_body(impl: str, bias_shape: tuple[int, ...]) -> None:
    model = _model(_dims("B", 3, "Nq", 70, 8, 16, [f"b{i}" for i in range(len(bias_shape))]), with_bias=True)
    lowered = _assert_lowering_matches(model, _feeds(2, 3, 100, 70, 8, 16, bias_shape), impl, max_attn_mem=SMALL_BUDGET)
    assert lowered.graph.node[0].op_type.endswith("Bias")


def test_auto_choices() -> None:
    sagan = attention_sites(_model(_dims(1, 1, 16_800, 16_800, 32, 256)))[0]
    big_heads_small_n = attention_sites(_model(_dims(1, 1, 1_050, 1_050, 256, 2048)))[0]
    big_heads_big_n = attention_sites(_model(_dims(1, 1, 16_800, 16_800, 256, 2048)))[0]
    dynamic_bias = attention_sites(_model(_dims(1, 1, "N", "N", 32, 256, ["N", "N"]), with_bias=True))[0]
    fp16 = attention_sites(_model(_dims(1, 1, "N", "N", 32, 32), elem=TensorProto.FLOAT16))[0]
    from attn_deploy.lower.choice import choose_ort

    assert choose_ort(sagan).implementation == "mha"
    assert choose_ort(big_heads_small_n).implementation == "plain"
    big = choose_ort(big_heads_big_n)
    assert big.implementation == "blocked" and "dk + dv = 2304" in big.reason
    assert big.block_rows is not None and big.block_rows * 16_800 <= block_elements(256 << 20)
    assert choose_ort(dynamic_bias).implementation == "blocked" and choose_ort(dynamic_bias).block_rows is None
    assert choose_ort(fp16).implementation == "blocked"
    # A tighter budget moves a small score matrix from plain to blocked.
    assert choose_ort(big_heads_small_n, max_attn_mem=1 << 20).implementation == "blocked"


def test_zero_bias_is_dropped_so_mha_applies() -> None:
    model = _model(_dims(1, 1, "N", "N", 8, 16), zero_bias=True)
    lowered = _assert_lowering_matches(model, _feeds(1, 1, 50, 50, 8, 16), "mha")
    assert len(lowered.graph.node[0].input) == 3
    assert not any(i.name == ZERO_BIAS for i in lowered.graph.initializer)


def test_fp16_blocked_computes_in_fp32_and_mha_is_refused() -> None:
    model = _model(_dims(1, 2, "N", "N", 16, 16), elem=TensorProto.FLOAT16)
    lowered, (choice,) = lower_model(model)
    assert choice.implementation == "blocked"
    feeds = {k: v.astype(np.float16) for k, v in _feeds(1, 2, 50, 50, 16, 16).items()}
    (got,) = run_ort(lowered, feeds)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, run_ort(model, feeds)[0])
    with pytest.raises(InputError, match="float32 only"):
        lower_model(model, prefer="mha")


def test_structure_of_lowered_model() -> None:
    lowered, _ = lower_model(_model(_dims(1, 1, 64, 64, 8, 16)), prefer="mha")
    imports = {i.domain: i.version for i in lowered.opset_import}
    assert imports == {"": 18, LOWERED_DOMAIN: 1, "com.microsoft": 1}
    assert [(f.domain, f.name) for f in lowered.functions] == [(LOWERED_DOMAIN, "FusedAttentionMHA")]
    assert lowered.ir_version == 10
    attrs = {a.name: helper.get_attribute_value(a) for a in lowered.graph.node[0].attribute}
    assert attrs == {"scale": pytest.approx(SCALE), "num_heads": 1}


def test_bad_arguments() -> None:
    model = _model(_dims(1, 1, 8, 8, 4, 4))
    with pytest.raises(InputError, match="unknown --target"):
        lower_model(model, target="tvm")
    with pytest.raises(InputError, match="unknown --impl"):
        lower_model(model, prefer="fast")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="must be positive"):
        lower_model(model, max_attn_mem=0)

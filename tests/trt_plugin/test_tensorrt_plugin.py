"""The built plugin inside TensorRT: network API and ONNX parser, against the op. GPU + TensorRT only.

Runs in plugins/fused_attention/Dockerfile (NVIDIA's TensorRT image), with ATTN_DEPLOY_PLUGIN set to the
library that ``attn-deploy build-plugin`` printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from attn_deploy.ops import reference_attention
from attn_deploy.ops.bodies import looped_body
from attn_deploy.ops.contract import DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

trt = pytest.importorskip("tensorrt", reason="TensorRT's Python package is not installed (it is in the Docker image)")
LIBRARY = os.environ.get("ATTN_DEPLOY_PLUGIN", "")
pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
    pytest.mark.skipif(not Path(LIBRARY).is_file(), reason="set ATTN_DEPLOY_PLUGIN to the library `attn-deploy build-plugin` printed"),
]


@pytest.fixture(scope="module")
def logger():  # noqa: ANN201 - a trt.Logger
    lg = trt.Logger(trt.Logger.WARNING)
    registry = trt.get_plugin_registry()
    if registry.get_creator(OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        registry.load_library(LIBRARY)
    return lg


def _run_engine(lg, network, builder, feeds: dict[str, torch.Tensor], out_shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:  # noqa: ANN001
    config = builder.create_builder_config()
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None, "engine build failed"
    engine = trt.Runtime(lg).deserialize_cuda_engine(serialized)
    context = engine.create_execution_context()
    out = torch.empty(out_shape, dtype=dtype, device="cuda")
    for name, tensor in feeds.items():
        context.set_tensor_address(name, tensor.data_ptr())
    context.set_tensor_address("o", out.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return out


def _inputs(b: int, h: int, nq: int, nk: int, dk: int, dv: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    return {
        "q": torch.randn(b, h, nq, dk, device="cuda", generator=gen).to(dtype),
        "k": torch.randn(b, h, nk, dk, device="cuda", generator=gen).to(dtype),
        "v": torch.randn(b, h, nk, dv, device="cuda", generator=gen).to(dtype),
    }


def _check(got: torch.Tensor, feeds: dict[str, torch.Tensor], scale: float) -> None:
    ref = reference_attention(*(feeds[n].double() for n in ("q", "k", "v")),
                              feeds["bias"].double() if "bias" in feeds else None, scale=scale)
    tol = 2e-5 if got.dtype == torch.float32 else 2e-3
    assert (got.double() - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("shape", [(1, 2, 200, 150, 32, 256), (1, 1, 130, 97, 256, 2048), (2, 3, 33, 65, 40, 24)],
                         ids=["sagan-c256", "sagan-c2048", "unaligned"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_network_api(logger, dtype: torch.dtype, shape: tuple[int, ...]) -> None:  # noqa: ANN001
    b, h, nq, nk, dk, dv = shape
    scale = dk ** -0.5
    feeds = _inputs(b, h, nq, nk, dk, dv, dtype)
    trt_type = trt.float32 if dtype == torch.float32 else trt.float16
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    tensors = [network.add_input(n, trt_type, tuple(t.shape)) for n, t in feeds.items()]
    creator = trt.get_plugin_registry().get_creator(OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    fields = trt.PluginFieldCollection([trt.PluginField("scale", np.array([scale], np.float32), trt.PluginFieldType.FLOAT32)])
    plugin = creator.create_plugin("fa", fields, trt.TensorRTPhase.BUILD)
    layer = network.add_plugin_v3(tensors, [], plugin)
    layer.get_output(0).name = "o"
    network.mark_output(layer.get_output(0))
    _check(_run_engine(logger, network, builder, feeds, (b, h, nq, dv), dtype), feeds, scale)


def test_onnx_parser_picks_the_plugin(logger) -> None:  # noqa: ANN001
    b, h, nq, nk, dk, dv, scale = 1, 1, 130, 130, 32, 256, 0.2
    feeds = _inputs(b, h, nq, nk, dk, dv, torch.float32)
    feeds["bias"] = torch.randn(nq, nk, device="cuda")
    node = helper.make_node(OP_TYPE, list(feeds), ["o"], domain=DOMAIN, scale=scale,
                            plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(t.shape)) for n, t in feeds.items()],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [b, h, nq, dv])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)],
                              functions=[looped_body(18, with_bias=True)], ir_version=10)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    kinds = {network.get_layer(i).type for i in range(network.num_layers)}
    assert trt.LayerType.PLUGIN_V3 in kinds, f"parser expanded the function body instead: {kinds}"
    _check(_run_engine(logger, network, builder, feeds, (b, h, nq, dv), torch.float32), feeds, scale)
    onnx.checker.check_model(model)

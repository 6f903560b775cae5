"""Each exported attention's PyTorch module, read off what the exporters record (#15)."""

from __future__ import annotations

import onnx
from onnx import helper

from attn_deploy.export.scopes import module_scopes


def _node(name: str, scopes: str | None = None) -> onnx.NodeProto:
    node = helper.make_node("Relu", ["x"], [name + "_out"], name=name)
    if scopes is not None:
        node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=scopes)
    return node


def test_dynamo_metadata_and_torchscript_names_give_the_innermost_module() -> None:
    nodes = [
        _node("node_fused_attention", "['', 'blocks', 'blocks.0', 'fused_attention']"),
        _node("node_softmax", "['', 'softmax']"),  # called by the model itself
        _node("/blocks/blocks.1/q/MatMul"),  # TorchScript: a part is the full name or relative to its parent
        _node("/head/FusedAttention"),
        _node("/Softmax"),
        _node("Unnamed_by_scope"),
        _node("node_bad", "not a list"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])], [])
    assert module_scopes(helper.make_model(graph)) == {
        "node_fused_attention": "blocks.0",
        "node_softmax": "",
        "/blocks/blocks.1/q/MatMul": "blocks.1.q",
        "/head/FusedAttention": "head",
        "/Softmax": "",
    }

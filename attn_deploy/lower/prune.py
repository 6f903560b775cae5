"""After a lowering rewrote nodes: drop what nothing uses any more, with onnx-ir's stock passes."""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedFunctionsPass, RemoveUnusedOpsetsPass


def prune(model: onnx.ModelProto) -> ir.Model:
    """``model`` without functions no node calls (the exported body, once every node is lowered)
    and without opset imports no main-graph node or function uses."""
    pruned = ir.from_proto(model)
    RemoveUnusedFunctionsPass()(pruned)  # type: ignore[no-untyped-call]
    RemoveUnusedOpsetsPass(process_functions=False)(pruned)
    return pruned

"""Whole-row ScatterElements (torchvision's MultiScaleRoIAlign level merge) become ScatterND, exactly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from attn_deploy.export.row_scatter import rows_to_scatter_nd
from attn_deploy.runtime import OrtRunner


class MergeLevels(nn.Module):
    """torchvision's ``_onnx_merge_levels``: pooled rows of each level written back where they belong."""

    def __init__(self, rows: int | None = None) -> None:
        super().__init__()
        self.rows = rows  # update only this many leading channels: a sub-block, not whole rows

    def forward(self, levels: Tensor, pooled: Tensor) -> Tensor:
        res = torch.zeros((levels.size(0), pooled.size(1), pooled.size(2), pooled.size(3)))
        for level in range(3):
            index = torch.where(levels == level)[0].view(-1, 1, 1, 1)
            update = (pooled[index[:, 0, 0, 0]] * (level + 1))[:, : self.rows]
            index = index.expand(index.size(0), update.size(1), update.size(2), update.size(3))
            res = res.scatter(0, index, update)
        return res


def _export(module: nn.Module) -> onnx.ModelProto:
    levels, pooled = torch.tensor([2, 0, 1, 0, 2, 1]), torch.randn(6, 4, 3, 3)
    buffer = io.BytesIO()
    torch.onnx.export(module, (levels, pooled), buffer, dynamo=False, opset_version=17, input_names=["levels", "pooled"],
                      output_names=["merged"], dynamic_axes={"levels": {0: "n"}, "pooled": {0: "n"}})
    return onnx.load_from_string(buffer.getvalue())


def _run(model: onnx.ModelProto, path: Path, levels: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    onnx.save(model, path)
    return OrtRunner(path).infer({"levels": levels, "pooled": pooled})["merged"]


def _op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_row_scatters_become_scatter_nd_with_the_same_result(tmp_path: Path) -> None:
    model = _export(MergeLevels())
    assert _op_types(model).count("ScatterElements") == 3
    rewritten, done = rows_to_scatter_nd(model)
    assert len(done) == 3 and "ScatterElements" not in _op_types(rewritten) and _op_types(rewritten).count("ScatterND") == 3
    onnx.checker.check_model(rewritten, full_check=True)
    rng = np.random.default_rng(0)
    for n in (6, 11):  # another row count than the export's: the rewrite holds for any
        levels, pooled = rng.integers(0, 3, n).astype(np.int64), rng.standard_normal((n, 4, 3, 3)).astype(np.float32)
        want = _run(model, tmp_path / f"a{n}.onnx", levels, pooled)
        assert np.abs(want).min() > 0  # every row was written: the comparison covers them all
        np.testing.assert_array_equal(_run(rewritten, tmp_path / f"b{n}.onnx", levels, pooled), want)


def test_a_scatter_into_part_of_each_row_is_left_alone() -> None:
    model = _export(MergeLevels(rows=2))
    rewritten, done = rows_to_scatter_nd(model)
    assert done == [] and rewritten is model

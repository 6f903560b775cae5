"""The preprocessing the manifest records, as a small ONNX model a Triton ensemble puts in front.

Input ``image``: uint8 RGB pixels ``[N, h, w, 3]`` of any size (what a client decodes from a JPEG).
Output: the model's own input (its name, dtype and ``[N, 3, H, W]``): resized to the model's H x W
when those are static (bilinear, antialiased when shrinking, as PIL and ``check --data`` do), scaled
from 0..255 to the manifest's ``range``, then ``(x - mean) / std`` where the manifest has a mean.
Standard opset-18 ops only, so the onnxruntime backend (and the python one) run it anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from attn_deploy import defaults
from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.artifact.manifest import TensorSpec

#: The ensemble's and the preprocessing model's input: RGB pixels, channels last.
IMAGE = "image"
_PIXELS = 255.0


def image_input(inputs: list[TensorSpec], preprocess: Mapping[str, Any] | None) -> TensorSpec | None:
    """The model's one 3-channel NCHW float input, when the manifest records its image preprocessing; else None."""
    if preprocess is None or len(inputs) != 1:
        return None
    (spec,) = inputs
    if spec.shape is None or len(spec.shape) != 4 or spec.shape[1] != 3 or spec.dtype not in ("float32", "float16"):
        return None
    return spec


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def image_spec(model_input: TensorSpec) -> TensorSpec:
    """The preprocessing model's input: the model's batch axis, any height and width, 3 channels last."""
    assert model_input.shape is not None
    batch = _static(model_input.shape[0])
    return TensorSpec(IMAGE, "uint8", [batch, None, None, 3], ([] if batch else [0]) + [1, 2])


def output_spec(model_input: TensorSpec) -> TensorSpec:
    """The preprocessing model's output: the model's input, its height and width dynamic where the model's are."""
    assert model_input.shape is not None
    shape = [_static(d) for d in model_input.shape]
    return TensorSpec(model_input.name, model_input.dtype, list(shape), [i for i, d in enumerate(shape) if d is None])


def preprocessing_model(model_input: TensorSpec, preprocess: Mapping[str, Any]) -> onnx.ModelProto:
    """The ONNX model turning ``image`` pixels into ``model_input`` as ``preprocess`` (the manifest's record) says."""
    assert model_input.shape is not None
    low, high = (float(v) for v in preprocess.get("range") or (0.0, 1.0))
    mean = preprocess.get("mean")
    std = preprocess.get("std") or [1.0, 1.0, 1.0]
    height, width = _static(model_input.shape[2]), _static(model_input.shape[3])
    constants: list[TensorProto] = []

    def const(name: str, values: Any, dtype: Any = np.float32) -> str:
        constants.append(numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    nodes = [helper.make_node("Cast", [IMAGE], ["pixels"], to=TensorProto.FLOAT), helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2])]
    last = "nchw"
    if height and width:
        # exclude_outside renormalises the antialiasing filter at the borders, as PIL and torch do.
        nodes.append(helper.make_node("Resize", [last, "", "", const("size", [height, width], np.int64)], ["resized"], mode="linear", antialias=1,
                                      axes=[2, 3], coordinate_transformation_mode="half_pixel", exclude_outside=1))
        last = "resized"
    nodes.append(helper.make_node("Mul", [last, const("scale", (high - low) / _PIXELS)], ["scaled"]))
    nodes.append(helper.make_node("Add", ["scaled", const("low", low)], ["ranged"]))
    last = "ranged"
    if mean is not None:
        nodes.append(helper.make_node("Sub", [last, const("mean", np.reshape(mean, (1, 3, 1, 1)))], ["centred"]))
        nodes.append(helper.make_node("Div", ["centred", const("std", np.reshape(std, (1, 3, 1, 1)))], ["normalised"]))
        last = "normalised"
    out = output_spec(model_input)
    nodes.append(helper.make_node("Cast", [last], [out.name], to=helper.np_dtype_to_tensor_dtype(np.dtype(out.dtype))))
    image = image_spec(model_input)
    graph = helper.make_graph(
        nodes, "preprocess",
        [helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, [d if d else f"d{i}" for i, d in enumerate(image.shape or [])])],
        [helper.make_tensor_value_info(out.name, helper.np_dtype_to_tensor_dtype(np.dtype(out.dtype)), [d if d else f"o{i}" for i, d in enumerate(out.shape or [])])],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", defaults.OPSET)], ir_version=IR_VERSION, producer_name="attn-deploy")
    onnx.checker.check_model(model, full_check=True)
    return model

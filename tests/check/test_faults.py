"""Fault injection for the gate (#17): a wrong model fails ``check`` (exit 1) under the default
(``auto``) preset, also when a decoy fp16 initializer or int8 op makes it look lower-precision and a
copied manifest claims to describe it. Faithful exports pass (test_zoo_faithful below; the 10-seed
sweep over the whole zoo is benchmarks/gate_faithful.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import attn_deploy.api as ad
from tests.conftest import RunCli


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SAGAN block exported (output ``output``) with a second output ``skip`` of the same shape."""
    import torch

    from attn_deploy.zoo import SelfAttention

    torch.manual_seed(0)
    block = SelfAttention(16)
    torch.nn.init.constant_(block.gamma, 0.8)
    folder = tmp_path_factory.mktemp("faults")
    model = ad.export(block, input_shapes=[(1, 16, 8, 8)]).proto
    out = model.graph.output[0]
    _rename_output(model, out.name, "output")
    out.name = "output"
    model.graph.node.append(helper.make_node("Mul", [model.graph.input[0].name, "two"], ["skip"], name="skip"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    model.graph.output.append(helper.make_tensor_value_info("skip", out.type.tensor_type.elem_type, [1, 16, 8, 8]))
    path, _ = ad.as_artifact(model).save(folder / "ref.onnx")
    return path


def _rename_output(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
        node.input[:] = [new if n == old else n for n in node.input]


def _masked(model: onnx.ModelProto, mask: np.ndarray) -> None:
    """``output`` becomes ``output * mask``."""
    _rename_output(model, "output", "unmasked")
    model.graph.initializer.append(numpy_helper.from_array(mask.astype(np.float32), "fault_mask"))
    model.graph.node.append(helper.make_node("Mul", ["unmasked", "fault_mask"], ["output"], name="fault"))


def _weight_1pct(model: onnx.ModelProto) -> None:
    weight = next(i for i in model.graph.initializer if i.name.endswith("value.weight"))
    array = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array((array * 1.01).astype(array.dtype), weight.name))


def _zeroed(model: onnx.ModelProto) -> None:
    mask = np.ones((1, 16, 8, 8), np.float32)
    mask.flat[np.random.default_rng(0).choice(mask.size, 6, replace=False)] = 0.0  # 0.6% of the elements
    _masked(model, mask)


def _nan(model: onnx.ModelProto) -> None:
    mask = np.ones((1, 16, 8, 8), np.float32)
    mask.flat[[3, 500]] = np.nan
    _masked(model, mask)


def _swapped(model: onnx.ModelProto) -> None:
    _rename_output(model, "output", "tmp")
    _rename_output(model, "skip", "output")
    _rename_output(model, "tmp", "skip")


def _decoy(model: onnx.ModelProto, decoy: str) -> None:
    if decoy == "fp16":
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.float16), "decoy"))
    elif decoy == "int8":
        model.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float32), "decoy_x"))
        model.graph.node.append(helper.make_node("DynamicQuantizeLinear", ["decoy_x"], ["dq", "ds", "dz"], name="decoy"))


FAULTS: dict[str, Callable[[onnx.ModelProto], None]] = {"weight-1pct": _weight_1pct, "zeroed": _zeroed, "swapped": _swapped, "nan": _nan}


@pytest.mark.parametrize("decoy", ["none", "fp16", "int8"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_wrong_model_fails(run_cli: RunCli, reference: Path, tmp_path: Path, fault: str, decoy: str) -> None:
    model = onnx.load(reference)
    FAULTS[fault](model)
    _decoy(model, decoy)
    onnx.checker.check_model(model)
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, wrong)
    shutil.copy(reference.with_suffix(".json"), wrong.with_suffix(".json"))  # a manifest that claims to describe it
    code, stdout, stderr = run_cli("check", reference, wrong, "--backends", "ort")
    assert code == 1, stdout + stderr
    assert "FAIL" in stdout and "error:" not in stderr


def test_the_faithful_model_passes(run_cli: RunCli, reference: Path) -> None:
    code, stdout, stderr = run_cli("check", reference, reference, "--backends", "ort")
    assert code == 0, stdout + stderr


# Small shapes keep CI fast; the detectors (minutes each on 2 cores) are in benchmarks/gate_faithful.py.
ZOO = {
    "sagan-256": (1, 256, 16, 16), "sagan-2048": (1, 2048, 5, 6), "dynamic-256": (1, 256, 16, 16), "cross-region-256": (1, 256, 16, 16),
    "fpn-multiscale": (1, 3, 64, 64), "fpn-small-object": (1, 3, 64, 64), "mha-encoder": (1, 49, 256), "sdpa-vit": (1, 3, 224, 224),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_faithful(name: str) -> None:
    """Each zoo entry's own export passes PyTorch-vs-ONNX-Runtime parity at two weight and input seeds."""
    from attn_deploy.export.loading import _from_entry
    from attn_deploy.zoo.registry import get_entry

    entry = get_entry(name)
    for seed in (1, 2):
        loaded = _from_entry(entry, entry.build(seed), f"zoo:{name}")
        report = ad.check(loaded, seed=seed, backends=("torch", "ort"), input_shapes={"": ZOO[name]})
        assert report.passed, (name, seed, [(v.stats, v.reason) for c in report.comparisons for v in c.outputs if not v.passed])
